"""The media room with real aiortc peers over loopback: frames and audio actually arrive."""

import asyncio

import pytest

from server.media.peer import LOOPBACK, IceConfig
from server.media.room import MediaRoom
from tests.media.clients import close_to, publish, view, wait_until

RED = (220, 30, 30)
GREEN = (30, 200, 60)


@pytest.fixture
async def room():
    media = MediaRoom(IceConfig(addresses=LOOPBACK))
    yield media
    await media.close()


def answerer(room: MediaRoom, kind: str, key: str):
    async def answer(offer: str) -> str:
        endpoint = await (room.publish(key, offer) if kind == "publish" else room.view(key, offer))
        return endpoint.pc.localDescription.sdp

    return answer


async def test_speaker_reaches_viewers_and_floor_switch(room: MediaRoom) -> None:
    room.show("speaker")
    speaker = await publish(answerer(room, "publish", "speaker"), RED, 440)
    viewers = [await view(answerer(room, "view", f"point:{i}")) for i in range(3)]
    try:
        await wait_until(lambda: all(v.frames >= 20 for v in viewers), timeout=15)
        for viewer in viewers:
            assert all(close_to(c, RED) for c in viewer.recent_colours())
        await wait_until(lambda: all(v.tone_energy(440) > 0.5 for v in viewers), timeout=10)

        hall = await publish(answerer(room, "publish", "point:0"), GREEN, 1000)
        room.show("point:0")
        await wait_until(lambda: room.video.on_air == "point:0", timeout=10)
        for viewer in viewers:
            viewer.clear()
        await wait_until(lambda: all(v.frames >= 15 for v in viewers), timeout=10)
        for viewer in viewers:
            assert all(close_to(c, GREEN) for c in viewer.recent_colours()), viewer.recent_colours()
        await asyncio.sleep(1.2)
        # Halls 1 and 2 hear both; hall 0 (on the floor) hears the speaker but not itself.
        assert viewers[1].tone_energy(1000) > 0.2 and viewers[1].tone_energy(440) > 0.2
        assert viewers[0].tone_energy(440) > 0.5
        assert viewers[0].tone_energy(1000) < 0.02
        await hall.close()
    finally:
        await speaker.close()
        for viewer in viewers:
            await viewer.close()
