"""Studio publishers (OBS over WHIP sends H.264) and halls (VP8) in one program, with real aiortc peers."""

import pytest

from server.media.peer import LOOPBACK, IceConfig
from server.media.room import MediaRoom
from tests.media.clients import clean_cut, close_to, decode_failures, publish, view, wait_until
from tests.media.studio import clip, publish_studio

RED = (220, 30, 30)
GREEN = (30, 200, 60)


@pytest.fixture
async def room():
    media = MediaRoom(IceConfig(addresses=LOOPBACK))
    yield media
    await media.close()


def answerer(room: MediaRoom, kind: str, key: str):
    async def answer(offer: str) -> str:
        answer = await (room.publish(key, offer) if kind == "publish" else room.view(key, offer))
        return answer.sdp

    return answer


async def test_an_h264_speaker_a_vp8_hall_and_back_for_every_kind_of_viewer(room: MediaRoom) -> None:
    room.show("speaker")
    speaker = await publish_studio(answerer(room, "publish", "speaker"), clip(RED), 440)
    both = await view(answerer(room, "view", "point:1"))
    vp8_only = await view(answerer(room, "view", "point:2"), only="vp8")
    h264_only = await view(answerer(room, "view", "point:3"), only="h264")
    viewers = [both, vp8_only, h264_only]
    hall = None
    try:
        with decode_failures() as failures:
            await wait_until(lambda: all(v.frames >= 20 for v in viewers), timeout=15)
            for viewer in viewers:
                assert all(close_to(c, RED) for c in viewer.colours), viewer.colours
            hall = await publish(answerer(room, "publish", "point:0"), GREEN, 1000, steady=True)
            await wait_until(lambda: hall.video.sent >= 30, timeout=10)
            marks = [v.frames for v in viewers]
            room.show("point:0")
            for viewer, mark in zip(viewers, marks, strict=True):
                await clean_cut(viewer, RED, GREEN, since=mark)
            marks = [v.frames for v in viewers]
            room.show("speaker")
            for viewer, mark in zip(viewers, marks, strict=True):
                await clean_cut(viewer, GREEN, RED, since=mark, timeout=15)
            assert failures.count == 0
        # Each source sent its own codec; the viewer of both followed it by payload type, and
        # each one-codec viewer got the shared transcode while the other codec was on air.
        assert {"h264", "vp8"} == {s.codec for s in room.feed._sources.values()}
        assert "H264/90000" in both.pc.remoteDescription.sdp and "VP8/90000" in both.pc.remoteDescription.sdp
        assert room.feed.video.only["vp8"].transcode.frames_out > 0
        assert room.feed.video.only["h264"].transcode.frames_out > 0
        await wait_until(lambda: all(v.tone_energy(440) > 0.2 for v in viewers), timeout=10)
    finally:
        for v in viewers:
            await v.close()
        await speaker.close()
        if hall is not None:
            await hall.close()
