"""The in-memory event bus: order, isolation of a failing subscriber, per-session subscriptions."""

from __future__ import annotations

import logging

import pytest

from server.live import events as ev
from server.live.bus import InMemoryEventBus, dispatcher


def hand(session_id: int, point_id: int) -> ev.HandRaised:
    return ev.make(ev.HandRaised, session_id=session_id, point_id=point_id)


async def test_everyone_subscribers_first_then_the_sessions_in_order() -> None:
    bus = InMemoryEventBus()
    seen: list[tuple[str, int]] = []

    def recorder(name: str):  # type: ignore[no-untyped-def]
        async def handle(event: ev.Event) -> None:
            seen.append((name, event.point_id))  # type: ignore[attr-defined]
        return handle

    bus.subscribe(recorder("room-7"), session_id=7)
    bus.subscribe(recorder("store"))
    bus.subscribe(recorder("room-8"), session_id=8)
    await bus.publish([hand(7, 1), hand(8, 2), hand(7, 3)])
    assert seen == [("store", 1), ("room-7", 1), ("store", 2), ("room-8", 2), ("store", 3), ("room-7", 3)]


async def test_a_failing_subscriber_is_logged_and_never_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    bus = InMemoryEventBus()
    delivered: list[str] = []

    async def broken(event: ev.Event) -> None:
        raise RuntimeError("database is locked")

    async def fine(event: ev.Event) -> None:
        delivered.append(event.id)

    bus.subscribe(broken, session_id=1, name="broken-store")
    bus.subscribe(fine, session_id=1)
    events = [hand(1, 1), hand(1, 2)]
    with caplog.at_level(logging.ERROR):
        await bus.publish(events)
    assert delivered == [e.id for e in events]
    assert bus.failures == 2
    assert "broken-store" in caplog.text and "hand_raised" in caplog.text


async def test_cancelled_subscriptions_receive_nothing_even_mid_delivery() -> None:
    bus = InMemoryEventBus()
    got: list[str] = []
    second = None

    async def first(event: ev.Event) -> None:
        assert second is not None
        second.cancel()
        second.cancel()  # twice is harmless

    async def other(event: ev.Event) -> None:
        got.append(event.id)

    bus.subscribe(first, session_id=3)
    second = bus.subscribe(other, session_id=3)
    await bus.publish([hand(3, 1)])
    await bus.publish([hand(3, 2)])
    # Cancelled while the first event was on its way: it gets neither.
    assert got == []


async def test_dispatcher_matches_base_classes_and_runs_the_fallback_for_all() -> None:
    calls: list[str] = []

    async def ended(event: ev.FloorEnded) -> None:
        calls.append(f"ended:{event.reason}")

    async def anything(event: ev.Event) -> None:
        calls.append(f"changed:{event.kind}")

    handle = dispatcher({ev.FloorEnded: ended}, fallback=anything)
    await handle(ev.make(ev.FloorEnded, session_id=1, point_id=2, grant_id="g", reason="dropped"))
    await handle(hand(1, 2))
    assert calls == ["ended:dropped", "changed:floor_ended", "changed:hand_raised"]


async def test_batch_done_runs_once_per_batch_for_those_it_reached() -> None:
    bus = InMemoryEventBus()
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
