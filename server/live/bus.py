"""How events reach their consumers: a small EventBus contract and its in-process form.

Consumers subscribe to one session's events or to every session's; publishing
awaits every subscriber, in a fixed order: subscribers to every session
first (the stores: what must be on disk before a client hears of it), then
the session's own (the broadcaster, the media director), each in the order
it subscribed. A subscriber that raises is logged and skipped; the others
and the publisher carry on.

Per session, events are published one batch at a time (the live room holds
its lock while it publishes), so every subscriber sees a session's events in
the order they happened. A Redis implementation for several nodes keeps the
same contract (issue: relays).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from server.live.events import Event

log = logging.getLogger(__name__)

Handler = Callable[[Event], Awaitable[None]]
BatchDone = Callable[[], Awaitable[None]]


class Subscription(Protocol):
    def cancel(self) -> None:
        """Stop receiving events; cancelling twice is harmless."""
        ...


class EventBus(Protocol):
    def subscribe(self, handler: Handler, *, session_id: int | None = None, name: str = "",
                  batch_done: BatchDone | None = None) -> Subscription:
        """Call ``handler`` with every event of ``session_id`` (None: of every session).

        ``batch_done``, if given, is called once after each published batch
        that gave the subscriber at least one event: the events of one change
        arrive as one batch (a grant that ends another is two events), so a
        subscriber that sums up the state acts once per change.
        """
        ...

    async def publish(self, events: Iterable[Event]) -> None:
        """Deliver ``events`` (one change) in order to every subscriber; returns when all have handled them."""
        ...


@dataclass(eq=False)
class _Subscriber:
    handler: Handler
    session_id: int | None
    name: str
    batch_done: BatchDone | None = None
    bus: InMemoryEventBus | None = field(default=None, repr=False)

    def cancel(self) -> None:
        if self.bus is not None:
            self.bus._remove(self)
            self.bus = None


class InMemoryEventBus:
    """The embedded default: subscribers in this process, called directly."""

    def __init__(self) -> None:
        self._everything: list[_Subscriber] = []
        self._by_session: dict[int, list[_Subscriber]] = {}
        self.failures = 0

    def subscribe(self, handler: Handler, *, session_id: int | None = None, name: str = "",
                  batch_done: BatchDone | None = None) -> Subscription:
        subscriber = _Subscriber(handler, session_id, name or getattr(handler, "__qualname__", "subscriber"),
                                 batch_done, self)
        if session_id is None:
            self._everything.append(subscriber)
        else:
            self._by_session.setdefault(session_id, []).append(subscriber)
        return subscriber

    def _remove(self, subscriber: _Subscriber) -> None:
        if subscriber.session_id is None:
            if subscriber in self._everything:
                self._everything.remove(subscriber)
            return
        same = self._by_session.get(subscriber.session_id, [])
        if subscriber in same:
            same.remove(subscriber)
        if not same:
            self._by_session.pop(subscriber.session_id, None)

    async def publish(self, events: Iterable[Event]) -> None:
        reached: dict[_Subscriber, None] = {}  # in order of first delivery
        for event in events:
            session = self._by_session.get(event.session_id, []) if event.session_id is not None else []
            # Copies: a subscriber may cancel itself (or another) while handling.
            for subscriber in (*self._everything, *session):
                if subscriber.bus is None:
                    continue
                reached[subscriber] = None
                try:
                    await subscriber.handler(event)
                except Exception:
                    self.failures += 1
                    log.exception("event subscriber %s failed on %s %s", subscriber.name, event.kind, event.id)
        for subscriber in reached:
            if subscriber.batch_done is None or subscriber.bus is None:
                continue
            try:
                await subscriber.batch_done()
            except Exception:
                self.failures += 1
                log.exception("event subscriber %s failed at the end of a batch", subscriber.name)


def dispatcher(table: Mapping[type[Event], Callable[[Any], Awaitable[None]]],
               fallback: Callable[[Event], Awaitable[None]] | None = None) -> Handler:
    """One handler from a table of event type -> coroutine (a base class matches its subclasses).

    ``fallback`` runs after the table's entry (or alone) for every event, e.g.
    "the state changed: refresh the boards".
    """
    resolved: dict[type[Event], Callable[[Any], Awaitable[None]] | None] = {}

    def lookup(kind: type[Event]) -> Callable[[Any], Awaitable[None]] | None:
        if kind not in resolved:
            resolved[kind] = next((table[base] for base in kind.__mro__ if base in table), None)
        return resolved[kind]

    async def handle(event: Event) -> None:
        entry = lookup(type(event))
        if entry is not None:
            await entry(event)
        if fallback is not None:
            await fallback(event)

    return handle
