"""A live session is recorded as it goes: the speaker, then a hall given the floor, in one playable file.

The recorder is a subscriber of the program feed like a hall: what it writes
is decoded back here and must show the speaker's red picture with its 440 Hz
tone, then the hall's green one (with the hall's 1000 Hz tone in the mix), at
the times the chapters say, for as long as the session was live.
"""

import asyncio
import hashlib
import time

import pytest
from aiohttp.test_utils import TestClient

from server import keys
from server.storage.models import Session
from tests.conftest import Seed, bearer
from tests.media.clients import close_to
from tests.media.browsers import play_in_chromium
from tests.media.studio import clip, publish_studio
from tests.recording.decode import decode
from tests.signaling.helpers import add_halls, add_session, connect

RED = (220, 30, 30)
GREEN = (30, 200, 60)


async def recordings_of(client: TestClient, session_id: int, user) -> list[dict]:  # type: ignore[no-untyped-def]
    response = await client.get(f"/api/v1/sessions/{session_id}/recordings", headers=bearer(client.app, user))
    assert response.status == 200, await response.text()
    return (await response.json())["recordings"]


@pytest.mark.parametrize("speaking", ["browser", "studio"])
async def test_a_live_session_with_a_floor_change_is_recorded(client: TestClient, seed: Seed,
                                                               password_hash: str, speaking: str) -> None:
    """A browser speaker (VP8) or a studio one (OBS: H.264), then a VP8 hall on the floor.

    The studio's part is Matroska holding H.264, and the hall's VP8 reaches it
    through the one shared transcode.
    """
    database = client.app[keys.DATABASE]
    (point, operator), = await add_halls(database, seed, 1, password_hash)
    session_id = await add_session(database, seed, [point.id])

    speaker = await connect(client, session_id, seed.speaker)
    if speaking == "browser":
        camera = await speaker.publish(RED, 440)
    else:
        camera = await publish_studio(await speaker.answerer("publish"), clip(RED), 440)
    hall = await connect(client, session_id, operator)
    hall_camera = None
    try:
        await speaker.send("start")
        await speaker.expect("session", status="live")
        # Nobody watches: the recording does not depend on a hall.
        await asyncio.sleep(4.5)
        await hall.send("raise_hand")
        await speaker.expect("floor", queue=[{"point_id": point.id, "name": point.name}])
        await speaker.send("grant_floor", point_id=point.id)
        await hall.expect("floor_granted")
        hall_camera = await hall.publish(GREEN, 1000)
        await speaker.expect("floor", on_air=f"point:{point.id}", timeout=10)
        await asyncio.sleep(4.5)
        ended_at = time.monotonic()
        await speaker.send("end")
        await speaker.expect("session", status="ended")

        # Listed and playable within seconds of the end.
        async def ready() -> bool:
            found = await recordings_of(client, session_id, operator)
            return bool(found) and found[0]["status"] == "ready"
        while not await ready():
            assert time.monotonic() - ended_at < 10, await recordings_of(client, session_id, operator)
            await asyncio.sleep(0.2)
    finally:
        await camera.close()
        if hall_camera is not None:
            await hall_camera.close()
        await speaker.close()
        await hall.close()

    recording, = await recordings_of(client, session_id, operator)
    async with database.session() as db:
        session = await db.get(Session, session_id)
        assert session is not None and session.actual_start and session.actual_end
        live_seconds = (session.actual_end - session.actual_start).total_seconds()
    assert abs(recording["duration_seconds"] - live_seconds) < 1.0, (recording["duration_seconds"], live_seconds)
    assert recording["parts"] == 1

    path = client.app[keys.SETTINGS].recordings_dir / str(session_id)
    suffix, content_type = {"browser": (".webm", "video/webm"), "studio": (".mkv", "video/x-matroska")}[speaking]
    files = list(path.glob(f"part-*{suffix}"))
    assert len(files) == 1
    body = files[0].read_bytes()
    assert recording["size_bytes"] == len(body)
    assert recording["sha256"] == hashlib.sha256(body).hexdigest()

    # The chapters: the speaker from the start, then the hall.
    chapters = recording["chapters"]
    assert [c["kind"] for c in chapters] == ["speaker", "hall"], chapters
    assert chapters[0]["at_seconds"] < 1.0
    assert chapters[1]["name"] == point.name and point.name in chapters[1]["title"]

    # What the file holds: red, then green from the hall's chapter on, without a decode error.
    decoded = decode(files[0])
    assert decoded.codec == {"browser": "vp8", "studio": "h264"}[speaking]
    assert decoded.errors == 0
    assert len(decoded.pictures) > 150, len(decoded.pictures)
    first_green = decoded.first_time(lambda rgb: close_to(rgb, GREEN))
    assert first_green is not None
    assert abs(first_green - chapters[1]["at_seconds"]) < 0.5, (first_green, chapters[1]["at_seconds"])
    assert all(close_to(rgb, RED) for rgb in decoded.colours_between(0.5, first_green))
    assert all(close_to(rgb, GREEN) for rgb in decoded.colours_between(first_green, 1e9))
    assert decoded.pictures[-1][0] > live_seconds - 1.5
    # The sound: the speaker's tone throughout; the hall's joins it once it has the floor.
    assert decoded.tone_energy(440, 1.0, first_green - 0.5) > 0.5
    assert decoded.tone_energy(1000, 1.0, first_green - 0.5) < 0.05
    assert decoded.tone_energy(1000, first_green + 1.0, live_seconds - 0.5) > 0.2
    assert decoded.tone_energy(440, first_green + 1.0, live_seconds - 0.5) > 0.2

    # The download honours HTTP Range, for whoever may watch.
    url = recording["download_url"]
    whole = await client.get(url, headers=bearer(client.app, operator))
    assert whole.status == 200 and whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Type"] == content_type
    assert url.endswith(f"/file{suffix}")
    assert await whole.read() == body
    part = await client.get(url, headers={**bearer(client.app, operator), "Range": "bytes=100-199"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(body)}"
    assert await part.read() == body[100:200]
    # And Chromium plays it (a studio's part is Matroska holding H.264: the replay page's <video> takes it).
    played = await play_in_chromium(files[0], content_type)
    assert played["can"] in ("maybe", "probably") and played.get("error") is None, played
    assert (played["width"], played["height"]) == {"browser": (320, 240), "studio": (640, 480)}[speaking], played
    assert played["played"] > 1.0 and abs(played["duration"] - recording["duration_seconds"]) < 0.5, played
