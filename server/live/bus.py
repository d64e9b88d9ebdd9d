"""How events reach their consumers: a small EventBus contract and its in-process form.

Consumers subscribe to one session's events or to every session's; publishing
awaits every subscriber, in a fixed order: subscribers to every session
first (the stores: what must be on disk before a client hears of it), then
the session's own (the broadcaster, the media director), each in the order
it subscribed. A subscriber that raises is logged and skipped; the others
and the publisher carry on.

A subscriber whose work must finish before the publisher answers the client
but should not hold the room meanwhile (attendance writes a join to the
database before the client is welcomed, in group commits) returns an
awaitable from its handler: ``publish`` returns a :class:`Delivery` that
collects them, and the publisher awaits ``delivery.settled()`` after
releasing its lock.

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

# A handler may return an awaitable: work it has queued that the publisher waits for (see Delivery).
Handler = Callable[[Event], Awaitable[Awaitable[Any] | None]]
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

    async def publish(self, events: Iterable[Event]) -> Delivery:
        """Deliver ``events`` (one change) in order to every subscriber; returns when all have handled them.

        The returned delivery holds what subscribers queued to finish later.
        """
        ...


class Delivery:
    """What the subscribers of one published change still have under way (e.g. a durable write)."""

    def __init__(self) -> None:
        self._pending: list[Awaitable[Any]] = []

    def add(self, pending: Awaitable[Any]) -> None:
        self._pending.append(pending)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def settled(self) -> bool:
        """Wait for all of it; False if any of it failed (logged, not raised).

        A publisher that promised something on the strength of it (a join
        on record before the welcome) must not make the promise then.
        """
        pending, self._pending = self._pending, []
        ok = True
        for awaitable in pending:
            try:
                await awaitable
            except Exception:
                ok = False
                log.exception("an event subscriber's queued work failed")
        return ok


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

    async def publish(self, events: Iterable[Event]) -> Delivery:
        delivery = Delivery()
        reached: dict[_Subscriber, None] = {}  # in order of first delivery
        for event in events:
            session = self._by_session.get(event.session_id, []) if event.session_id is not None else []
            # Copies: a subscriber may cancel itself (or another) while handling.
            for subscriber in (*self._everything, *session):
                if subscriber.bus is None:
                    continue
                reached[subscriber] = None
                try:
                    pending = await subscriber.handler(event)
                    if pending is not None:
                        delivery.add(pending)
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
        return delivery


def dispatcher(table: Mapping[type[Event], Callable[[Any], Awaitable[Any]]],
               fallback: Callable[[Event], Awaitable[None]] | None = None) -> Handler:
    """One handler from a table of event type -> coroutine (a base class matches its subclasses).

    ``fallback`` runs after the table's entry (or alone) for every event, e.g.
    "the state changed: refresh the boards". What the table's entry returns
    (an awaitable of queued work, or None) is the handler's result.
    """
    resolved: dict[type[Event], Callable[[Any], Awaitable[Any]] | None] = {}

    def lookup(kind: type[Event]) -> Callable[[Any], Awaitable[Any]] | None:
        if kind not in resolved:
            resolved[kind] = next((table[base] for base in kind.__mro__ if base in table), None)
        return resolved[kind]

    async def handle(event: Event) -> Any:
        entry = lookup(type(event))
        result = await entry(event) if entry is not None else None
        if fallback is not None:
            await fallback(event)
        return result

    return handle
