"""State shared between nodes: one contract for the event bus and the node registry, run on memory and on Redis.

The contract tests take the ``bus`` and ``registry`` fixtures, each once in
memory and once on the real Redis at ``BRIDGECAST_TEST_REDIS_URL``
(127.0.0.1:6379 by default). The Redis-only tests below them run several
nodes on one prefix: what one publishes reaches the others once, in order,
as one batch, whatever is re-sent, written badly or cut off meanwhile.

Without Redis the Redis cases skip, unless ``BRIDGECAST_TEST_REQUIRE_REDIS=1``
(then they fail), as the PostgreSQL cases do with ``BRIDGECAST_TEST_REQUIRE_PG``.
Every test uses a prefix of its own and deletes its keys at the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.cascade.redis import RedisEventBus, RedisNodeRegistry, connect
from server.live import events as ev
from server.live.bus import InMemoryEventBus
from server.live.nodes import InMemoryNodeRegistry, NodeInfo

REDIS_URL = os.environ.get("BRIDGECAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Every wait is bounded by this.
WAIT = 5.0

Bus = InMemoryEventBus | RedisEventBus
Registry = InMemoryNodeRegistry | RedisNodeRegistry


def _redis_required() -> bool:
    return os.environ.get("BRIDGECAST_TEST_REQUIRE_REDIS") == "1"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis, once it answered PING; skips (or fails, if required) when it does not."""
    client = sync_redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2,
                                       retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except (OSError, sync_redis.RedisError) as exc:
        if _redis_required():
            pytest.fail(f"Redis is required (BRIDGECAST_TEST_REQUIRE_REDIS=1) but did not answer at {REDIS_URL}: "
                        f"{exc}")
        pytest.skip(f"Redis not reachable at {REDIS_URL} ({exc}); the cascade ran in memory only")
    finally:
        client.close()
    return REDIS_URL


class RedisWorld:
    """The Redis side of one test: a prefix of its own, the clients, buses and registries made on it.

    :meth:`aclose` stops the buses, deletes every key under the prefix and
    closes the clients.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"bridgecast-test:{uuid.uuid4().hex}:"
        self.admin = connect(url)  # for the test's own looks at Redis, and the clean-up
        self._clients: list[Redis] = [self.admin]
        self._buses: list[RedisEventBus] = []

    @property
    def stream(self) -> str:
        return f"{self.prefix}events"

    def client(self, url: str | None = None) -> Redis:
        client = connect(url or self.url)
        self._clients.append(client)
        return client

    async def bus(self, node: str, *, client: Redis | None = None, start: bool = True,
                  **options: Any) -> RedisEventBus:
        """A node's bus on its own client (as a node on its own machine has)."""
        bus = RedisEventBus(client or self.client(), node, prefix=self.prefix, **options)
        self._buses.append(bus)
        if start:
            await bus.start()
        return bus

    def registry(self) -> RedisNodeRegistry:
        return RedisNodeRegistry(self.client(), prefix=self.prefix)

    async def keys(self) -> list[bytes]:
        return [key async for key in self.admin.scan_iter(match=self.prefix + "*")]

    async def aclose(self) -> None:
        for bus in self._buses:
            await bus.close()
        try:
            keys = await self.keys()
            if keys:
                await self.admin.delete(*keys)
        finally:
            for client in self._clients:
                await client.aclose()


@pytest.fixture
async def world(redis_url: str) -> AsyncIterator[RedisWorld]:
    world = RedisWorld(redis_url)
    yield world
    await world.aclose()


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        yield InMemoryEventBus()
        return
    world = RedisWorld(request.getfixturevalue("redis_url"))
    try:
        yield await world.bus("node-a")
    finally:
        await world.aclose()


@pytest.fixture(params=["memory", "redis"])
async def registry(request: pytest.FixtureRequest) -> AsyncIterator[Registry]:
    if request.param == "memory":
        memory = InMemoryNodeRegistry()
        yield memory
        await memory.close()
        return
    world = RedisWorld(request.getfixturevalue("redis_url"))
    shared = world.registry()
    try:
        yield shared
    finally:
        await shared.close()
        await world.aclose()


async def until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        pytest.fail(f"waited {timeout} s for {what}")


def hand(session_id: int, point_id: int) -> ev.HandRaised:
    return ev.make(ev.HandRaised, session_id=session_id, point_id=point_id)


def marker() -> ev.SessionChanged:
    return ev.make(ev.SessionChanged, session_id=999)


class Inbox:
    """Every event one subscriber got, and how many batches ended for it."""

    def __init__(self, bus: Bus, *, session_id: int | None = None, name: str = "inbox") -> None:
        self.events: list[ev.Event] = []
        self.batches = 0
        bus.subscribe(self._handle, session_id=session_id, name=name, batch_done=self._done)

    async def _handle(self, event: ev.Event) -> None:
        self.events.append(event)

    async def _done(self) -> None:
        self.batches += 1

    @property
    def ids(self) -> list[str]:
        return [event.id for event in self.events]

    async def wait_for(self, event: ev.Event) -> None:
        await until(lambda: event.id in self.ids, f"{event.kind} {event.id}")


async def flushed(sender: RedisEventBus, inbox: Inbox) -> ev.Event:
    """Publish a marker on ``sender`` and wait until ``inbox`` has it: all sent before it has arrived too.

    (The stream is ordered: "nothing more came" is checked without sleeping.)
    """
    last = marker()
    await sender.publish([last])
    await inbox.wait_for(last)
    return last


# The bus: one contract --------------------------------------------------------------------------------


async def test_every_session_subscribers_first_then_the_sessions_own_in_subscription_order(bus: Bus) -> None:
    seen: list[tuple[str, int]] = []

    def recorder(name: str) -> Callable[[ev.Event], Awaitable[None]]:
        async def handle(event: ev.Event) -> None:
            assert isinstance(event, ev.HandRaised)
            seen.append((name, event.point_id))
        return handle

    bus.subscribe(recorder("room-7"), session_id=7)
    bus.subscribe(recorder("store"))
    bus.subscribe(recorder("room-8"), session_id=8)
    bus.subscribe(recorder("room-7b"), session_id=7)
    bus.subscribe(recorder("audit"))
    await bus.publish([hand(7, 1), hand(8, 2), hand(7, 3)])
    assert seen == [("store", 1), ("audit", 1), ("room-7", 1), ("room-7b", 1),
                    ("store", 2), ("audit", 2), ("room-8", 2),
                    ("store", 3), ("audit", 3), ("room-7", 3), ("room-7b", 3)]


async def test_a_raising_subscriber_is_logged_counted_and_skipped(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    delivered: list[str] = []
    finished: list[str] = []

    async def broken(event: ev.Event) -> None:
        raise RuntimeError("database is locked")

    async def fine(event: ev.Event) -> None:
        delivered.append(event.id)

    async def broken_done() -> None:
        raise RuntimeError("board is gone")

    async def fine_done() -> None:
        finished.append("fine")

    bus.subscribe(broken, session_id=1, name="broken-store", batch_done=broken_done)
    bus.subscribe(fine, session_id=1, batch_done=fine_done)
    events = [hand(1, 1), hand(1, 2)]
    with caplog.at_level(logging.ERROR):
        delivery = await bus.publish(events)
    assert delivered == [e.id for e in events]
    assert finished == ["fine"]
    assert bus.failures == 3  # two events, one end of batch
    assert await delivery.settled()  # the subscriber's failure is not the delivery's
    assert "broken-store" in caplog.text and "hand_raised" in caplog.text and "end of a batch" in caplog.text


async def test_batch_done_runs_once_per_batch_for_the_subscribers_it_reached(bus: Bus) -> None:
    log: list[str] = []

    async def room_seven(event: ev.Event) -> None:
        log.append(event.kind)

    async def seven_done() -> None:
        log.append("done")

    async def eight_done() -> None:
        log.append("eight done")

    async def ignore(event: ev.Event) -> None:
        pass

    bus.subscribe(room_seven, session_id=7, batch_done=seven_done)
    bus.subscribe(ignore, session_id=8, batch_done=eight_done)
    ended = ev.make(ev.FloorEnded, session_id=7, point_id=1, grant_id="a", reason="revoked")
    granted = ev.make(ev.FloorGranted, session_id=7, point_id=2, grant_id="b", limit_seconds=None)
    await bus.publish([ended, granted])
    assert log == ["floor_ended", "floor_granted", "done"]  # session 8's subscriber was not reached
    await bus.publish([])
    assert log == ["floor_ended", "floor_granted", "done"]  # an empty batch reached no one
    await bus.publish([hand(8, 1)])
    assert log == ["floor_ended", "floor_granted", "done", "eight done"]


async def test_cancelling_is_idempotent_and_holds_even_mid_delivery(bus: Bus) -> None:
    got: list[str] = []
    second = None

    async def first(event: ev.Event) -> None:
        assert second is not None
        second.cancel()
        second.cancel()  # twice is harmless

    async def other(event: ev.Event) -> None:
        got.append(event.id)

    async def other_done() -> None:
        got.append("done")

    mine = bus.subscribe(first, session_id=3)
    second = bus.subscribe(other, session_id=3, batch_done=other_done)
    await bus.publish([hand(3, 1)])
    await bus.publish([hand(3, 2)])
    assert got == []  # cancelled while the first event was on its way: it gets neither, nor an end of batch
    mine.cancel()
    mine.cancel()
    late = Inbox(bus, session_id=3)
    event = hand(3, 3)
    await bus.publish([event])
    assert late.ids == [event.id] and got == []


async def test_a_delivery_collects_queued_work_and_settled_says_whether_it_all_succeeded(bus: Bus) -> None:
    done: list[str] = []

    async def write(event_id: str) -> None:
        await asyncio.sleep(0)
        done.append(event_id)

    async def lost_write() -> None:
        raise OSError("disk full")

    async def durable(event: ev.Event) -> Awaitable[None]:
        return write(event.id)

    async def flaky(event: ev.Event) -> Awaitable[None] | None:
        return lost_write() if event.session_id == 2 else None

    bus.subscribe(durable)
    bus.subscribe(flaky)
    first, second = hand(1, 1), hand(1, 2)
    delivery = await bus.publish([first, second])
    assert delivery.pending == 2 and done == []  # queued, not done: the publisher waits for it later
    assert await asyncio.wait_for(delivery.settled(), WAIT) is True
    assert done == [first.id, second.id] and delivery.pending == 0

    failing = await bus.publish([hand(2, 1)])
    assert failing.pending == 2
    assert await asyncio.wait_for(failing.settled(), WAIT) is False


# The bus between nodes (Redis only) ----------------------------------------------------------------------


async def test_a_batch_published_on_one_node_reaches_the_others_once_in_order_as_one_batch(world: RedisWorld) -> None:
    a, b, c = await world.bus("hub"), await world.bus("relay-b"), await world.bus("relay-c")
    b_store, b_room, c_store = Inbox(b, name="store"), Inbox(b, session_id=7, name="room"), Inbox(c)
    order: list[str] = []

    async def note_store(event: ev.Event) -> None:
        order.append(f"store:{event.id}")

    async def note_room(event: ev.Event) -> None:
        order.append(f"room:{event.id}")

    b.subscribe(note_room, session_id=7)
    b.subscribe(note_store)
    ended = ev.make(ev.FloorEnded, session_id=7, point_id=1, grant_id="a", reason="revoked")
    granted = ev.make(ev.FloorGranted, session_id=7, point_id=2, grant_id="b", limit_seconds=30.0)
    elsewhere = hand(8, 4)
    batch: list[ev.Event] = [ended, granted, elsewhere]
    await a.publish(batch)
    await until(lambda: b_room.batches == 1 and c_store.batches == 1, "the batch on both other nodes")

    last = await flushed(a, b_store)
    await c_store.wait_for(last)
    assert b_store.events == [*batch, last]  # the same events (ids, times, fields), in order, once
    assert c_store.events == [*batch, last]
    assert b_room.events == [ended, granted]
    assert b_store.batches == 2 and b_room.batches == 1  # the change as one batch, and the marker
    assert order == [f"store:{ended.id}", f"room:{ended.id}", f"store:{granted.id}", f"room:{granted.id}",
                     f"store:{elsewhere.id}", f"store:{last.id}"]
    assert (b.delivered_remote, b.duplicates, b.malformed) == (4, 0, 0)
    assert a.sent == 2 and a.delivered_remote == 0


async def test_a_nodes_own_publishes_are_not_delivered_to_it_again(world: RedisWorld) -> None:
    a, b = await world.bus("hub"), await world.bus("relay-b")
    a_inbox, b_inbox = Inbox(a), Inbox(b)
    own = hand(1, 1)
    await b.publish([own])
    assert b_inbox.ids == [own.id]  # delivered here at once, as in memory
    await a_inbox.wait_for(own)  # and it went out

    last = await flushed(a, b_inbox)
    assert b_inbox.ids == [own.id, last.id]
    assert b.delivered_remote == 1 and b.duplicates == 0  # its own entry was passed over, not deduplicated

    # Another node handing it back (a relay republishing what it heard) does not bring it twice either.
    await a.publish([own])
    last_again = await flushed(a, b_inbox)
    assert b_inbox.ids == [own.id, last.id, last_again.id]
    assert b.duplicates == 1


async def test_an_event_republished_is_delivered_once(world: RedisWorld) -> None:
    a, b = await world.bus("relay-a"), await world.bus("hub")
    inbox = Inbox(b)
    first, second = hand(1, 1), hand(1, 2)
    await a.publish([first])
    await a.publish([first])  # the relay reconnected and sent again what it had
    await a.publish([first, second])
    last = await flushed(a, inbox)
    assert inbox.ids == [first.id, second.id, last.id]
    assert inbox.batches == 3  # a batch of nothing new reaches no one
    assert b.duplicates == 2 and b.delivered_remote == 3


async def test_the_memory_of_seen_ids_is_bounded(world: RedisWorld) -> None:
    a, b = await world.bus("relay-a"), await world.bus("hub", seen_limit=2)
    inbox = Inbox(b)
    events = [hand(1, n) for n in range(3)]
    for event in events:
        await a.publish([event])
    await a.publish([events[2]])  # recent: dropped
    await a.publish([events[0]])  # pushed out of the memory by the two after it: delivered again
    await until(lambda: len(inbox.ids) == 4, "four deliveries")
    assert inbox.ids == [events[0].id, events[1].id, events[2].id, events[0].id]
    assert b.duplicates == 1


async def test_malformed_stream_entries_are_skipped_and_later_ones_still_arrive(
        world: RedisWorld, caplog: pytest.LogCaptureFixture) -> None:
    a, b = await world.bus("hub"), await world.bus("relay-b")
    inbox = Inbox(b)
    good = hand(1, 1)
    good_json = json.dumps([ev.to_dict(good)])
    bad_participant = {**ev.to_dict(ev.make(ev.ParticipantLost, session_id=1, participant=ev.ParticipantRef(
        key="user:1", role=ev.LiveRole.MEMBER, user_id=1, point_id=None, display_name="M"))), "participant": "x"}
    garbage: list[dict[Any, Any]] = [
        {"something": "else"},
        {"node": "evil"},
        {"node": "evil", "batch": "not json"},
        {"node": "evil", "batch": "{}"},
        {"node": "evil", "batch": "[]"},
        {"node": "evil", "batch": "[1, 2]"},
        {"node": "evil", "batch": json.dumps([{"kind": "no_such_event"}])},
        {"node": "evil", "batch": json.dumps([{"kind": "hand_raised", "id": "x"}])},
        {"node": "evil", "batch": json.dumps([bad_participant])},
        # Half of a change is no change: the good event in it is not delivered.
        {"node": "evil", "batch": json.dumps([ev.to_dict(good), {"kind": "hand_raised"}])},
        {"node": b"\xff\xfe", "batch": good_json},
        {"node": "evil", "batch": b"\xff\xfe["},
    ]
    with caplog.at_level(logging.WARNING, logger="server.cascade.redis"):
        for fields in garbage:
            await world.admin.xadd(world.stream, fields)
        last = await flushed(a, inbox)
    assert inbox.ids == [last.id]
    assert b.malformed == len(garbage) and b.reading
    assert a.malformed == len(garbage) and a.reading  # the hub reads the stream too
    assert caplog.text.count("relay-b skipped the unreadable stream entry") == len(garbage)

    # The event of the half-good batch was not taken as seen: sent whole, it arrives.
    await a.publish([good])
    await inbox.wait_for(good)
    assert inbox.ids == [last.id, good.id]


async def test_the_reader_resumes_after_a_lost_connection_from_the_last_entry_it_saw(
        world: RedisWorld, caplog: pytest.LogCaptureFixture) -> None:
    proxy = await CuttableProxy.start(world.url)
    try:
        a = await world.bus("hub")
        b = await world.bus("relay-b", client=world.client(proxy.url))
        inbox = Inbox(b)
        before = hand(1, 1)
        await a.publish([before])
        await inbox.wait_for(before)

        with caplog.at_level(logging.INFO, logger="server.cascade.redis"):
            proxy.cut()
            await until(lambda: b.read_failures >= 1, "the reader to notice the cut")
            during = [hand(1, 2), hand(1, 3)]
            for event in during:
                await a.publish([event])  # b is cut off: these wait in the stream
            assert inbox.ids == [before.id]
            proxy.restore()
            await until(lambda: len(inbox.ids) == 3, "the events sent while cut off", timeout=3 * WAIT)
        assert inbox.ids == [before.id, *(event.id for event in during)]
        assert b.reading and b.malformed == 0
        assert "reading the event stream failed" in caplog.text and "reading the event stream again" in caplog.text
    finally:
        await proxy.close()


async def test_a_publish_while_redis_is_away_stays_local_and_does_not_wait(
        world: RedisWorld, caplog: pytest.LogCaptureFixture) -> None:
    proxy = await CuttableProxy.start(world.url)
    try:
        proxy.cut()
        with caplog.at_level(logging.WARNING, logger="server.cascade.redis"):
            # Starting while Redis is away is not an error: the reader keeps trying.
            a = await world.bus("hub", client=world.client(proxy.url), send_pause=30.0)
            inbox = Inbox(a)
            first, second = hand(1, 1), hand(1, 2)
            await asyncio.wait_for(a.publish([first]), WAIT)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await a.publish([second])  # paused after the failure: Redis is not asked
            paused_for = loop.time() - started
        assert inbox.ids == [first.id, second.id]
        assert a.send_failures == 2 and a.sent == 0 and a.reading
        assert paused_for < 0.5
        assert caplog.text.count("events not sent to the other nodes") == 1
        assert await world.admin.exists(world.stream) == 0
    finally:
        await proxy.close()


async def test_the_stream_is_trimmed_to_about_its_maximum_length(world: RedisWorld) -> None:
    a = await world.bus("hub", stream_maxlen=10, start=False)
    for n in range(300):
        await a.publish([hand(1, n)])
    assert a.sent == 300
    # Approximate trimming drops whole nodes of the stream (100 entries by default): about 10, never 300.
    assert 10 <= await world.admin.xlen(world.stream) <= 200


# The node registry: one contract ------------------------------------------------------------------------


def node(name: str = "relay-a", **changes: Any) -> NodeInfo:
    fields: dict[str, Any] = {"name": name, "kind": "relay", "url": f"https://{name}.example.org", "unit_id": 3,
                              "parent": "hub", "sessions": (12, 15), "viewers": 41, "beat_at": 1_760_000_000.25,
                              "health": {"cpu": 0.37, "rss": 183_500_800, "uplink": "connected"}}
    return NodeInfo(**{**fields, **changes})


async def test_a_beat_makes_a_node_alive_and_gettable(registry: Registry) -> None:
    hub = node("hub", kind="hub", unit_id=1, parent=None, sessions=(), viewers=0, health={})
    relay = node("relay-a")
    assert await registry.alive() == {}
    await registry.beat(relay, 30)
    await registry.beat(hub, 30)
    alive = await registry.alive()
    assert alive == {"hub": hub, "relay-a": relay} and list(alive) == ["hub", "relay-a"]
    assert await registry.get("relay-a") == relay
    assert await registry.get("relay-z") is None


async def test_a_beat_replaces_the_last_one_and_extends_its_ttl(registry: Registry) -> None:
    await registry.beat(node(viewers=1), 0.3)
    later = node(viewers=2, sessions=(12,), beat_at=1_760_000_005.0, health={"uplink": "reconnecting"})
    await registry.beat(later, 30)
    await asyncio.sleep(0.6)  # past the first beat's TTL
    assert await registry.get("relay-a") == later
    assert await registry.alive() == {"relay-a": later}


async def test_a_node_that_stops_beating_expires_after_its_ttl(registry: Registry) -> None:
    await registry.beat(node("relay-a"), 0.3)
    await registry.beat(node("relay-b"), 30)
    assert set(await registry.alive()) == {"relay-a", "relay-b"}
    await asyncio.sleep(0.6)
    assert set(await registry.alive()) == {"relay-b"}
    assert await registry.get("relay-a") is None


async def test_a_node_that_stops_cleanly_is_forgotten_at_once(registry: Registry) -> None:
    await registry.beat(node("relay-a"), 30)
    await registry.beat(node("relay-b"), 30)
    await registry.forget("relay-a")
    await registry.forget("relay-a")  # twice, and unknown names, are harmless
    await registry.forget("never-seen")
    assert set(await registry.alive()) == {"relay-b"}
    assert await registry.get("relay-a") is None


async def test_a_nodes_info_round_trips_exactly(registry: Registry) -> None:
    info = node("relay-đà-nẵng", unit_id=None, parent="relay-huế", sessions=(3, 1, 2), viewers=0,
                beat_at=1_760_000_000.123456, health={"cpu": 1.5, "rss": 7, "uplink": "ổn", "zero": 0.0})
    await registry.beat(info, 30)
    back = await registry.get(info.name)
    assert back == info
    assert back is not None and back.sessions == (3, 1, 2) and isinstance(back.sessions, tuple)
    assert type(back.health["rss"]) is int and type(back.health["zero"]) is float and back.beat_at == info.beat_at
    assert (await registry.alive())[info.name] == info


async def test_a_beat_needs_a_positive_ttl(registry: Registry) -> None:
    for ttl in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError):
            await registry.beat(node(), ttl)
    assert await registry.alive() == {}


async def test_the_in_memory_registry_expires_by_its_injected_clock() -> None:
    now = [100.0]
    registry = InMemoryNodeRegistry(clock=lambda: now[0])
    await registry.beat(node(), 10)
    now[0] = 109.9
    assert set(await registry.alive()) == {"relay-a"}
    now[0] = 110.0
    assert await registry.alive() == {} and await registry.get("relay-a") is None


# The node registry on Redis -------------------------------------------------------------------------------


async def test_each_beat_is_one_key_whose_ttl_redis_keeps(world: RedisWorld) -> None:
    registry = world.registry()
    info = node()
    await registry.beat(info, 30)
    key = f"{world.prefix}node:relay-a"
    assert await world.keys() == [key.encode()]
    assert 0 < await world.admin.pttl(key) <= 30_000
    raw = await world.admin.get(key)
    assert raw is not None and json.loads(raw) == info.to_dict()
    await registry.forget("relay-a")
    assert await world.keys() == []


async def test_keys_that_hold_no_beat_are_skipped_and_logged_once(
        world: RedisWorld, caplog: pytest.LogCaptureFixture) -> None:
    registry = world.registry()
    good = node("relay-a")
    await registry.beat(good, 30)
    bad = {
        "not-json": b"{nope",
        "not-utf8": b"\xff\xfe",
        "a-list": b"[]",
        "half": json.dumps({"name": "half", "kind": "relay"}).encode(),
        "liar": json.dumps(node("someone-else").to_dict()).encode(),  # names another node
    }
    for name, raw in bad.items():
        await world.admin.set(f"{world.prefix}node:{name}", raw, px=30_000)
    with caplog.at_level(logging.WARNING, logger="server.cascade.redis"):
        assert await registry.alive() == {"relay-a": good}
        assert await registry.alive() == {"relay-a": good}
        assert await registry.get("not-json") is None and await registry.get("liar") is None
    for name in bad:
        assert caplog.text.count(f"node:{name} ") == 1, name
    assert registry.malformed == 2 * len(bad) + 2


async def test_registries_on_other_prefixes_do_not_see_each_other(world: RedisWorld) -> None:
    ours, other_prefix = world.registry(), f"{world.prefix}other:"
    theirs = RedisNodeRegistry(world.client(), prefix=other_prefix)
    await ours.beat(node("relay-a"), 30)
    await theirs.beat(node("relay-b"), 30)
    assert set(await ours.alive()) == {"relay-a"} and set(await theirs.alive()) == {"relay-b"}


# NodeInfo's JSON form ---------------------------------------------------------------------------------------


def test_node_info_is_json_ready_and_comes_back_equal() -> None:
    info = node()
    text = json.dumps(info.to_dict(), allow_nan=False)
    assert NodeInfo.from_dict(json.loads(text)) == info
    assert NodeInfo.from_dict({**info.to_dict(), "added_later": True}) == info  # a newer node's extra field
    assert hash(info) == hash(node())


def test_node_info_keeps_its_own_read_only_health() -> None:
    health: dict[str, float | int | str] = {"cpu": 0.5}
    info = node(health=health, sessions=[1, 2])  # type: ignore[arg-type]
    health["cpu"] = 9.0
    assert info.health == {"cpu": 0.5} and info.sessions == (1, 2)
    with pytest.raises(TypeError):
        info.health["cpu"] = 1.0  # type: ignore[index]


def _broken_node_dicts() -> Iterator[Any]:
    good = node().to_dict()
    yield from ([], "relay-a", None)
    for key in good:
        yield {k: v for k, v in good.items() if k != key}
    for key, value in [("name", 3), ("name", ""), ("kind", "edge"), ("kind", None), ("url", None),
                       ("unit_id", "3"), ("unit_id", True), ("unit_id", 3.0), ("parent", 4),
                       ("sessions", "12"), ("sessions", [1, "2"]), ("sessions", [True]), ("sessions", None),
                       ("viewers", True), ("viewers", 1.5), ("viewers", -1), ("viewers", None),
                       ("beat_at", "now"), ("beat_at", None), ("beat_at", math.nan), ("beat_at", False),
                       ("health", []), ("health", {"cpu": None}), ("health", {"cpu": [1]}),
                       ("health", {"cpu": {"user": 1}}), ("health", {"cpu": math.inf})]:
        yield {**good, key: value}


@pytest.mark.parametrize("body", list(_broken_node_dicts()))
def test_a_malformed_node_dict_is_a_value_error(body: Any) -> None:
    with pytest.raises(ValueError):
        NodeInfo.from_dict(body)


# A connection to Redis that the test can cut ---------------------------------------------------------------


class CuttableProxy:
    """A TCP relay on 127.0.0.1 in front of the test Redis: :meth:`cut` drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = True
        self.url = ""
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[Any]] = set()
        self._transports: set[asyncio.BaseTransport] = set()

    @classmethod
    async def start(cls, redis_url: str) -> CuttableProxy:
        host, port = redis_url.removeprefix("redis://").split("/", 1)[0].rsplit(":", 1)
        proxy = cls((host, int(port)))
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        proxy.url = f"redis://127.0.0.1:{proxy._server.sockets[0].getsockname()[1]}/0"
        return proxy

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._transports |= {writer.transport, up_writer.transport}
        links = {asyncio.create_task(self._pipe(reader, up_writer)), asyncio.create_task(self._pipe(up_reader, writer))}
        self._links |= links
        await asyncio.gather(*links, return_exceptions=True)
        self._links -= links

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()

    def cut(self) -> None:
        self.open = False
        for transport in self._transports:
            transport.abort()
        self._transports.clear()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await asyncio.wait_for(asyncio.gather(*self._links, return_exceptions=True), WAIT)
        await asyncio.wait_for(self._server.wait_closed(), WAIT)
