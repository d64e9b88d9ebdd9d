"""The media room with real aiortc peers over loopback: frames and audio actually arrive."""

from server.media import hooks
from server.media.room import MediaRoom
from tests.media.clients import clean_cut, close_to, decode_failures, publish, view, wait_until

RED = (220, 30, 30)
GREEN = (30, 200, 60)


def answerer(room: MediaRoom, kind: str, key: str):
    async def answer(offer: str) -> str:
        answer = await (room.publish(key, offer) if kind == "publish" else room.view(key, offer))
        return answer.sdp

    return answer


async def test_speaker_reaches_viewers_and_floor_switch(room: MediaRoom) -> None:
    room.show("speaker")
    speaker = await publish(answerer(room, "publish", "speaker"), RED, 440, steady=True)
    viewers = [await view(answerer(room, "view", f"point:{i}")) for i in range(3)]
    hall = None
    try:
        with decode_failures() as failures:
            await wait_until(lambda: all(v.frames >= 20 for v in viewers), timeout=15)
            for viewer in viewers:
                assert all(close_to(c, RED) for c in viewer.colours), viewer.colours
            await wait_until(lambda: all(v.tone_energy(440) > 0.5 for v in viewers), timeout=10)

            # The hall publishes (long enough that its first keyframe is past), then goes on air.
            hall = await publish(answerer(room, "publish", "point:0"), GREEN, 1000, steady=True)
            await wait_until(lambda: hall.video.sent >= 30, timeout=10)
            asked = hall.plis
            marks = [viewer.frames for viewer in viewers]
            room.show("point:0")
            for viewer, mark in zip(viewers, marks, strict=True):
                await clean_cut(viewer, RED, GREEN, since=mark)
            assert room.on_air == "point:0"
            # The cut was on a keyframe the server asked for (a steady publisher sends no other).
            assert hall.plis > asked
            assert failures.count == 0

        # Halls 1 and 2 hear both; hall 0 (on the floor) hears the speaker but not itself.
        await wait_until(lambda: all(v.tone_energy(1000) > 0.2 and v.tone_energy(440) > 0.2 for v in viewers[1:]),
                         timeout=10)
        await wait_until(lambda: viewers[0].tone_energy(440) > 0.5, timeout=10)
        assert viewers[0].tone_energy(1000) < 0.02
    finally:
        if hall is not None:
            await hall.close()
        await speaker.close()
        for viewer in viewers:
            await viewer.close()


async def test_a_viewers_keyframe_request_reaches_the_source_on_air(room: MediaRoom) -> None:
    room.show("speaker")
    speaker = await publish(answerer(room, "publish", "speaker"), RED, 440, steady=True)
    viewer = await view(answerer(room, "view", "user:1"))
    try:
        await wait_until(lambda: viewer.frames >= 30, timeout=15)
        asked = speaker.plis
        # The viewer lost its picture and says so, as a browser does (RTCP PLI).
        receiver = next(t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video")
        ssrc = hooks.remote_media_ssrc(viewer.pc, "video")
        assert ssrc is not None
        await hooks.send_pli(receiver, ssrc)
        await wait_until(lambda: speaker.plis > asked, timeout=5)
    finally:
        await speaker.close()
        await viewer.close()


async def test_a_muted_publisher_leaves_the_mix_and_comes_back(room: MediaRoom) -> None:
    room.show("speaker")
    speaker = await publish(answerer(room, "publish", "speaker"), RED, 440)
    hall = await publish(answerer(room, "publish", "point:1"), GREEN, 1000)
    viewer = await view(answerer(room, "view", "user:1"))
    try:
        await wait_until(lambda: viewer.tone_energy(1000, 0.5) > 0.2 and viewer.tone_energy(440, 0.5) > 0.2,
                         timeout=15)
        room.mute("point:1", True)
        # Half a second of audio without the hall's tone: its energy is gone, the speaker's stays.
        await wait_until(lambda: viewer.tone_energy(1000, 0.5) < 0.01, timeout=5)
        assert viewer.tone_energy(440, 0.5) > 0.5
        room.mute("point:1", False)
        await wait_until(lambda: viewer.tone_energy(1000, 0.5) > 0.2, timeout=5)
    finally:
        await speaker.close()
        await hall.close()
        await viewer.close()
