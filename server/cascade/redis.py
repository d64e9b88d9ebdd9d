"""The event bus and the node registry shared between nodes, on Redis.

**The bus.** :class:`RedisEventBus` keeps the in-memory bus's contract for
the node's own subscribers (it composes an :class:`InMemoryEventBus`:
subscribing is local, a publish is delivered here first, with the same
order, isolation and ``batch_done``), then appends the batch to one Redis
stream, ``{prefix}events``, as one entry (``node``, ``batch``: the events'
JSON). Every node reads that stream from where it joined and hands each
batch of another node to its subscribers as one publish, so a change that
is two events is still one batch there. Streams rather than pub/sub because
a node whose connection blips resumes from the last entry it saw instead of
losing what was said meanwhile; the stream is trimmed (approximately) to
``stream_maxlen`` entries, far more than an outage of a few seconds needs.

Events have unique ids, so a node delivers each id once: a relay that
reconnects and republishes what it had, or an entry read twice, reaches the
subscribers once (a bounded set of recent ids). An entry that cannot be
read is logged, counted and skipped; the reader never dies of one, nor of a
lost connection (retried with a growing pause, from the last id seen).

Redis being away must not stop a lecture: a publish that cannot reach Redis
within ``send_timeout`` is logged and counted, and the events stay local
(the room publishes under its lock, so it must not wait long). After such a
failure, sends pause for ``send_pause`` seconds, so a storm of joins during
an outage does not wait on Redis one by one.

**The registry.** :class:`RedisNodeRegistry` keeps each node as one key
holding its :class:`NodeInfo` as JSON with a TTL: expiry is Redis's job, so
a node that dies drops out on its own and no clock needs to agree with
another's.

The client is the caller's (one per node, shared by its bus and registry):
``close()`` here stops what this module started, never the client. Use
:func:`connect` for it: bytes, not decoded strings, so that one corrupt
entry is this module's to skip rather than a decoding error inside the
client on every read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from server.live import events as ev
from server.live.bus import BatchDone, Delivery, Handler, InMemoryEventBus, Subscription
from server.live.nodes import NodeInfo, check_ttl

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "bridgecast:"
# Longer than any XREAD BLOCK below: a blocked read is not a dead connection.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
# The reader's pause after a failure: doubling from the first to the last.
RETRY_FIRST = 0.5
RETRY_MAX = 5.0


def connect(url: str, *, client_name: str | None = None) -> Redis:
    """A client for ``url`` (``redis://host:port/db``) as this module expects it: replies as bytes.

    Short timeouts and few retries: the bus and the registry have their own
    (the reader's backoff, the publisher's timeout), the client's default
    backoff of seconds would only add to them. Close it with ``await client.aclose()``.
    """
    return Redis.from_url(url, decode_responses=False, socket_timeout=SOCKET_TIMEOUT,
                          socket_connect_timeout=CONNECT_TIMEOUT,
                          retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
                          client_name=client_name)


def _text(value: Any) -> str:
    """A reply as text, whether the client decodes replies or not; ValueError if it is not UTF-8."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {type(value).__name__}")


def _glob_escape(text: str) -> str:
    """``text`` matched literally by SCAN MATCH (a prefix may hold ``*``, ``?``, ``[``)."""
    return "".join("\\" + char if char in "\\*?[]" else char for char in text)


class _MalformedEntry(ValueError):
    pass


class RedisEventBus:
    """An :class:`~server.live.bus.EventBus` whose publishes reach the subscribers of every node on ``prefix``.

    ``node`` names this node in the stream (its own entries are not
    delivered to it twice). Call :meth:`start` to receive other nodes'
    events and :meth:`close` to stop; publishing works without either (it
    then only sends).
    """

    def __init__(self, client: Redis, node: str, *, prefix: str = DEFAULT_PREFIX, stream_maxlen: int = 10_000,
                 seen_limit: int = 50_000, block_ms: int = 1_000, read_count: int = 100,
                 send_timeout: float = 1.0, send_pause: float = 1.0) -> None:
        if not node:
            raise ValueError("a node needs a name")
        if block_ms <= 0 or block_ms >= SOCKET_TIMEOUT * 1000:
            raise ValueError(f"block_ms must be positive and below the socket timeout ({SOCKET_TIMEOUT} s)")
        self._client = client
        self.node = node
        self.stream = f"{prefix}events"
        self._maxlen = stream_maxlen
        self._seen_limit = seen_limit
        self._block_ms = block_ms
        self._read_count = read_count
        self._send_timeout = send_timeout
        self._send_pause = send_pause
        self._local = InMemoryEventBus()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._last_id: bytes | str | None = None  # None: not joined yet (take the stream's end)
        self._task: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        self._send_down = False
        # Counters, for metrics and tests.
        self.sent = 0  # batches appended to the stream
        self.send_failures = 0  # batches that stayed local (Redis away, or paused after a failure)
        self.delivered_remote = 0  # events of other nodes handed to the subscribers here
        self.duplicates = 0  # events of other nodes not handed on again (an id seen already)
        self.malformed = 0  # stream entries skipped as unreadable
        self.read_failures = 0  # reads that failed (a lost connection), each retried

    # The local half: exactly the in-memory bus -------------------------------------------

    @property
    def failures(self) -> int:
        """Subscribers that raised (as :attr:`InMemoryEventBus.failures`)."""
        return self._local.failures

    def subscribe(self, handler: Handler, *, session_id: int | None = None, name: str = "",
                  batch_done: BatchDone | None = None) -> Subscription:
        return self._local.subscribe(handler, session_id=session_id, name=name, batch_done=batch_done)

    async def publish(self, events: Iterable[ev.Event]) -> Delivery:
        batch = list(events)
        for event in batch:
            # Ours: if another node hands it back (it republishes what it heard), it is not new here.
            self._remember(event.id)
        delivery = await self._local.publish(batch)
        if batch:
            await self._send(batch)
        return delivery

    async def _send(self, batch: list[ev.Event]) -> None:
        now = time.monotonic()
        if now < self._paused_until:
            self.send_failures += 1
            return
        try:
            payload = json.dumps([ev.to_dict(event) for event in batch], separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            self.send_failures += 1
            log.exception("cascade: a batch of %s could not be written as JSON; delivered on this node only",
                          ", ".join(event.kind for event in batch))
            return
        try:
            await asyncio.wait_for(
                self._client.xadd(self.stream, {"node": self.node, "batch": payload}, maxlen=self._maxlen,
                                  approximate=True),
                self._send_timeout)
        except Exception as exc:
            self.send_failures += 1
            self._paused_until = time.monotonic() + self._send_pause
            if not self._send_down:
                log.warning("cascade: %s: events not sent to the other nodes (%s: %s); they are delivered on "
                            "this node only until Redis answers again", self.node, type(exc).__name__, exc)
            self._send_down = True
            return
        self.sent += 1
        if self._send_down:
            log.info("cascade: %s: sending events to the other nodes again (%d batches stayed local so far)",
                     self.node, self.send_failures)
            self._send_down = False

    def _remember(self, event_id: str) -> bool:
        """True if ``event_id`` is new (and now remembered); False if seen recently."""
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self._seen_limit:
            self._seen.popitem(last=False)
        return True

    # The remote half: a reader of the stream ---------------------------------------------

    async def start(self) -> None:
        """Receive the other nodes' events from now on.

        "Now" is the stream's last entry when this returns (not when the
        reader's first read happens to reach Redis): what another node
        publishes after ``start()`` returns is delivered here. If Redis does
        not answer, the reader keeps trying and starts from the stream's end
        when it does.
        """
        if self._task is not None:
            return
        if self._last_id is None:
            try:
                self._last_id = await asyncio.wait_for(self._tail(), SOCKET_TIMEOUT)
            except Exception as exc:
                log.warning("cascade: %s: Redis did not answer at start (%s: %s); reading the event stream "
                            "once it does", self.node, type(exc).__name__, exc)
        self._task = asyncio.create_task(self._read(), name=f"cascade-reader-{self.node}")

    async def close(self) -> None:
        """Stop the reader (the client stays open: it is the caller's). Closing twice is harmless."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    @property
    def reading(self) -> bool:
        """The reader runs (it was started, not closed, and has not died)."""
        return self._task is not None and not self._task.done()

    async def _tail(self) -> bytes | str:
        last = await self._client.xrevrange(self.stream, count=1)
        return last[0][0] if last else "0-0"

    async def _read(self) -> None:
        delay = RETRY_FIRST
        failing = False
        while True:
            try:
                if self._last_id is None:
                    self._last_id = await self._tail()
                reply = await self._client.xread({self.stream: self._last_id}, count=self._read_count,
                                                 block=self._block_ms)
            except Exception as exc:
                self.read_failures += 1
                if not failing:
                    log.warning("cascade: %s: reading the event stream failed (%s: %s); retrying from %r",
                                self.node, type(exc).__name__, exc, self._last_id)
                else:
                    log.debug("cascade: the event stream is still unreadable", exc_info=True)
                failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            if failing:
                log.info("cascade: %s: reading the event stream again, from %r", self.node, self._last_id)
                failing = False
                delay = RETRY_FIRST
            try:
                entries = list(self._entries(reply))
            except Exception:
                # Not what XREAD returns: nothing to skip past, so read again from the same id.
                self.malformed += 1
                log.exception("cascade: %s: an unreadable reply from XREAD", self.node)
                await asyncio.sleep(delay)
                continue
            for entry_id, fields in entries:
                self._last_id = entry_id
                try:
                    await self._receive(fields)
                except _MalformedEntry as exc:
                    self.malformed += 1
                    log.warning("cascade: %s skipped the unreadable stream entry %r: %s", self.node, entry_id, exc)
                except Exception:
                    self.malformed += 1
                    log.exception("cascade: %s skipped the stream entry %r", self.node, entry_id)

    def _entries(self, reply: Any) -> Iterator[tuple[bytes | str, Any]]:
        # RESP2 (connect()'s): [[stream, [(id, fields), ...]]]; RESP3: {stream: [[(id, fields), ...]]}.
        if not reply:
            return
        if isinstance(reply, dict):
            for lists in reply.values():
                for entries in lists:
                    yield from entries
            return
        for _, entries in reply:
            yield from entries

    async def _receive(self, fields: Any) -> None:
        events = self._parse(fields)
        if events is None:
            return  # our own
        fresh = [event for event in events if self._remember(event.id)]
        self.duplicates += len(events) - len(fresh)
        if not fresh:
            return
        self.delivered_remote += len(fresh)
        # One entry, one publish: the subscribers' batch_done sees the change whole.
        delivery = await self._local.publish(fresh)
        # Work the subscribers queued (a durable write) is awaited here: the next batch waits for it, as
        # a room's next change does for its publisher; a failure is logged by the delivery.
        await delivery.settled()

    def _parse(self, fields: Any) -> list[ev.Event] | None:
        """The entry's events, or None if this node wrote it; _MalformedEntry if it cannot be read."""
        try:
            named = {_text(key): value for key, value in dict(fields).items()}
            node = _text(named["node"])
            raw = named["batch"]
        except KeyError as exc:
            raise _MalformedEntry(f"no {exc.args[0]} field") from None
        except (TypeError, ValueError) as exc:
            raise _MalformedEntry(f"a field name or the node is not text ({exc})") from None
        if node == self.node:
            return None
        try:
            body = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise _MalformedEntry(f"from {node!r}: the batch is not JSON ({exc})") from None
        if not isinstance(body, list) or not body or not all(isinstance(item, dict) for item in body):
            raise _MalformedEntry(f"from {node!r}: the batch is not a list of events")
        try:
            return [ev.from_dict(item) for item in body]
        except Exception as exc:
            # A batch is one change: half of it would be a change that never happened.
            raise _MalformedEntry(f"from {node!r}: {type(exc).__name__}: {exc}") from None


class RedisNodeRegistry:
    """A :class:`~server.live.nodes.NodeRegistry` shared by every node on ``prefix``: one key per node, with a TTL.

    Redis errors propagate: the node's heartbeat loop (or the page asking
    who is alive) decides what an unreachable Redis means to it.
    """

    def __init__(self, client: Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._keys = f"{prefix}node:"
        self._malformed_keys: set[str] = set()  # logged once each, until they hold a good beat again
        self.malformed = 0

    def _key(self, name: str) -> str:
        return self._keys + name

    async def beat(self, info: NodeInfo, ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
        payload = json.dumps(info.to_dict(), separators=(",", ":"), allow_nan=False)
        await self._client.set(self._key(info.name), payload, px=max(1, math.ceil(ttl_seconds * 1000)))

    async def alive(self) -> dict[str, NodeInfo]:
        keys = list(dict.fromkeys([key async for key in self._client.scan_iter(
            match=_glob_escape(self._keys) + "*", count=500)]))  # SCAN may return a key twice
        found: dict[str, NodeInfo] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            for key, raw in zip(chunk, await self._client.mget(chunk)):
                if raw is None:
                    continue  # expired (or forgotten) between SCAN and MGET
                info = self._parse(_text(key), raw)
                if info is not None:
                    found[info.name] = info
        return dict(sorted(found.items()))

    async def get(self, name: str) -> NodeInfo | None:
        key = self._key(name)
        raw = await self._client.get(key)
        return self._parse(key, raw) if raw is not None else None

    async def forget(self, name: str) -> None:
        await self._client.delete(self._key(name))

    async def close(self) -> None:
        """Nothing to stop: the beats stay until their TTL (forget a node that stops), the client is the caller's."""

    def _parse(self, key: str, raw: bytes | str) -> NodeInfo | None:
        try:
            info = NodeInfo.from_dict(json.loads(raw))
            if self._key(info.name) != key:
                raise ValueError(f"it names the node {info.name!r}")
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            self.malformed += 1
            if key not in self._malformed_keys:
                if len(self._malformed_keys) >= 10_000:
                    self._malformed_keys.clear()
                self._malformed_keys.add(key)
                log.warning("cascade: the node key %s does not hold a node's beat (%s); skipped", key, exc)
            return None
        self._malformed_keys.discard(key)
        return info
