"""Fan-out and source switching on synthetic packets: queues stay bounded, switches land on keyframes."""

import asyncio
from typing import Any


from server.media.codecs import EncodedFrame
from server.media.fanout import ForwardTrack
from server.media.video import ProgramVideo


def packet(pts: int, keyframe: bool = False, size: int = 100) -> EncodedFrame:
    return EncodedFrame("vp8", bytes([0x10 if keyframe else 0x11]) + bytes(size), pts, keyframe)


class FakeSource:
    def __init__(self, key: str) -> None:
        self.key = key
        self.requests = 0

    def request_keyframe(self, *, force: bool = False) -> bool:
        self.requests += 1
        return True


async def test_a_new_viewer_starts_on_a_keyframe() -> None:
    track = ForwardTrack("video")
    for pts in range(3):
        track.push(packet(pts * 3000))
    assert track.dropped == 3
    track.push(packet(9000, keyframe=True))
    track.push(packet(12000))
    first = await asyncio.wait_for(track.recv(), 1)
    assert first.is_keyframe and first.pts == 9000
    assert (await asyncio.wait_for(track.recv(), 1)).pts == 12000


async def test_a_slow_viewer_skips_to_the_next_keyframe_and_never_grows() -> None:
    asked: list[int] = []
    track = ForwardTrack("video", on_keyframe_needed=lambda: asked.append(1), max_queue=10)
    track.push(packet(0, keyframe=True))
    for index in range(1, 40):  # nobody reads: the sender is stuck
        track.push(packet(index * 3000))
        assert len(track._queue) <= 10
    assert track.skips == 1 and asked == [1]  # one skip, one keyframe request
    assert track.waiting_for_keyframe
    track.push(packet(40 * 3000, keyframe=True))
    got = await asyncio.wait_for(track.recv(), 1)
    assert got.is_keyframe and got.pts == 40 * 3000


async def test_audio_drops_the_oldest_when_behind() -> None:
    track = ForwardTrack("audio", max_queue=5)
    for index in range(8):
        track.push(packet(index * 960))
    assert track.dropped == 3
    assert (await asyncio.wait_for(track.recv(), 1)).pts == 3 * 960


async def test_a_sender_that_sends_at_once_takes_each_packet_as_it_is_pushed_and_the_queue_keeps_order() -> None:
    firsts: list[int] = []
    track = ForwardTrack("video", on_first_packet=lambda: firsts.append(1))
    taken: list[int] = []
    can = [True]

    def deliver(shared: Any) -> bool:
        if can[0]:
            taken.append(shared.pts)
        return can[0]

    track.deliver = deliver
    track.push(packet(0))  # before a keyframe: neither sent nor queued
    track.push(packet(3000, keyframe=True))
    track.push(packet(6000))
    assert taken == [3000, 6000] and not track._queue and track.sent == 2 and firsts == [1]
    can[0] = False  # the sender cannot send at once (a TURN pair, say): its task takes them from the queue
    track.push(packet(9000))
    can[0] = True
    track.push(packet(12000))  # queued behind the one waiting, not sent before it
    assert taken == [3000, 6000] and [p.pts for p in track._queue] == [9000, 12000]
    assert [(await track.recv()).pts for _ in range(2)] == [9000, 12000]
    track.push(packet(15000))
    assert taken[-1] == 15000 and track.sent == 5 and firsts == [1]
    track.stop()
    assert track.deliver is None


async def test_a_stopped_track_ends_its_sender() -> None:
    from aiortc.mediastreams import MediaStreamError

    track = ForwardTrack("video")
    waiter = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    try:
        await asyncio.wait_for(waiter, 1)
    except MediaStreamError:
        pass
    else:
        raise AssertionError("recv() should end with MediaStreamError")


def test_switch_waits_for_the_new_sources_keyframe_and_keeps_time_monotonic() -> None:
    program = ProgramVideo()
    seen: list[Any] = []
    viewer = ForwardTrack("video", max_queue=1000)
    viewer.push = lambda p: seen.append((p.pts, p.is_keyframe))  # type: ignore[method-assign]
    program.fanout.add(viewer)
    speaker, hall = FakeSource("speaker"), FakeSource("hall")

    program.show(speaker)  # type: ignore[arg-type]
    assert speaker.requests == 1  # asked for a keyframe at once
    program.on_packet(speaker, packet(500_000))  # type: ignore[arg-type]
    assert seen == []  # not on air before its keyframe
    for index in range(5):
        program.on_packet(speaker, packet(500_000 + index * 3000, keyframe=index == 0))  # type: ignore[arg-type]
    assert program.on_air == "speaker"

    program.show(hall)  # type: ignore[arg-type]
    assert hall.requests == 1
    program.on_packet(hall, packet(7_000_000))  # type: ignore[arg-type]  (delta frame: ignored)
    program.on_packet(speaker, packet(500_000 + 5 * 3000))  # type: ignore[arg-type]  (old source stays on air)
    assert program.on_air == "speaker"
    program.on_packet(hall, packet(7_003_000, keyframe=True))  # type: ignore[arg-type]
    program.on_packet(speaker, packet(500_000 + 6 * 3000))  # type: ignore[arg-type]  (no longer on air)
    program.on_packet(hall, packet(7_006_000))  # type: ignore[arg-type]
    assert program.on_air == "hall"

    pts = [p for p, _ in seen]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)  # strictly increasing across the switch
    assert pts[6] - pts[5] == 3000  # the hall's keyframe follows one frame interval after the speaker's last
    assert seen[6][1] is True  # ...and it is the first hall frame on air
    assert program.switches == 2


def test_output_never_goes_backwards_when_a_source_restarts_its_clock() -> None:
    program = ProgramVideo()
    seen: list[int] = []
    viewer = ForwardTrack("video")
    viewer.push = lambda p: seen.append(p.pts)  # type: ignore[method-assign]
    program.fanout.add(viewer)
    source = FakeSource("speaker")
    program.show(source)  # type: ignore[arg-type]
    for pts, key in [(90_000, True), (93_000, False), (3_000, True), (6_000, False)]:
        program.on_packet(source, packet(pts, keyframe=key))  # type: ignore[arg-type]
    assert seen == sorted(seen) and len(set(seen)) == 4


async def test_a_viewer_moving_to_another_layer_drops_what_it_queued_of_the_old_one() -> None:
    track = ForwardTrack("video")
    track.push(packet(0, keyframe=True))
    for index in range(1, 10):
        track.push(packet(index * 3000))
    track.restart_at_keyframe()
    track.push(packet(30000))  # the old layer's frames stop going to it...
    track.push(packet(33000, keyframe=True, size=50))  # ...and the new one starts at its keyframe
    first = await asyncio.wait_for(track.recv(), 1)
    assert first.is_keyframe and first.pts == 33000
    assert track.dropped == 11  # the ten it held, and the old layer's frame that came after
