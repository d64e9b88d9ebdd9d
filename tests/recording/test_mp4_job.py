"""The MP4 job: a finished recording gets an H.264 + AAC copy (faststart) and a poster, in a low-priority
child process that reports its progress; a failed job is retried, then reported as failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from server import keys
from server.config import RecordingSettings
from server.recording.jobs import Mp4Jobs
from server.storage.models import JobStatus, Recording
from tests.conftest import Seed, bearer
from tests.media.clients import close_to
from tests.recording.decode import decode
from tests.recording.synthetic import make_recording, write_webm
from tests.signaling.helpers import add_session

RED, GREEN = (220, 30, 30), (30, 200, 60)


def _boxes(path: Path) -> list[str]:
    """The top-level MP4 boxes, in file order."""
    data, names, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        names.append(data[offset + 4:offset + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        if size < 8:
            break
        offset += size
    return names


async def test_a_finished_recording_gets_its_mp4_and_poster(client: TestClient, seed: Seed) -> None:
    database = client.app[keys.DATABASE]
    root = client.app[keys.SETTINGS].recordings_dir
    session_id = await add_session(database, seed, [seed.point_a.id])
    recording_id = await make_recording(database, root, session_id, seconds=6.0, colours=[RED, GREEN])
    jobs = Mp4Jobs(database, root, RecordingSettings(mp4_nice=10))
    assert await jobs.run(recording_id)

    async with database.session() as db:
        recording = await db.get(Recording, recording_id)
    assert recording is not None and recording.mp4_status is JobStatus.DONE and recording.mp4_progress == 100
    mp4 = root / recording.mp4_file
    with av.open(str(mp4)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
    boxes = _boxes(mp4)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart: playable while downloading
    decoded = decode(mp4)
    assert decoded.errors == 0 and 170 <= len(decoded.pictures) <= 181
    assert all(close_to(rgb, RED) for rgb in decoded.colours_between(0.2, 2.8))
    assert all(close_to(rgb, GREEN) for rgb in decoded.colours_between(3.2, 6.0))
    assert decoded.tone_energy(440, 0.5, 5.5) > 0.8
    poster = root / recording.poster_file
    assert poster.read_bytes()[:2] == b"\xff\xd8"
    with av.open(str(poster)) as image:
        frame = next(image.decode(video=0))
        assert close_to(tuple(int(c) for c in frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)), RED)

    # The API gives the MP4's address; the file is served like the original.
    listed = await (await client.get(f"/api/v1/recordings/{recording_id}", headers=bearer(client.app, seed.member))).json()
    assert listed["mp4_url"] == f"/recordings/{recording_id}/file.mp4" and listed["poster_url"]
    response = await client.get(listed["mp4_url"], headers={**bearer(client.app, seed.member), "Range": "bytes=0-7"})
    assert response.status == 206 and response.headers["Content-Type"] == "video/mp4"


def test_the_transcoder_reports_its_progress_as_it_goes(tmp_path: Path) -> None:
    source = tmp_path / "long.webm"
    write_webm(source, 20.0, [RED, GREEN])
    done = subprocess.run([sys.executable, "-m", "server.recording.transcode", str(source), str(tmp_path / "o.mp4"),
                           str(tmp_path / "p.jpg")], capture_output=True, text=True, timeout=120, check=True)
    lines = done.stdout.split()
    figures = [float(value) for word, value in zip(lines, lines[1:]) if word == "progress"]
    assert len(figures) >= 3 and figures == sorted(figures) and figures[-1] == 100.0
    assert 0 < figures[1] < 100 and lines[-1] == "done"


async def test_a_failing_job_is_retried_then_reported(client: TestClient, seed: Seed) -> None:
    database = client.app[keys.DATABASE]
    root = client.app[keys.SETTINGS].recordings_dir
    session_id = await add_session(database, seed, [seed.point_a.id])
    recording_id = await make_recording(database, root, session_id, seconds=2.0)
    (root / f"{session_id}/part-1.webm").write_bytes(np.random.default_rng(1).bytes(50_000))
    jobs = Mp4Jobs(database, root, RecordingSettings(mp4_attempts=2, mp4_retry_seconds=60))
    assert not await jobs.run(recording_id)
    async with database.session() as db:
        recording = await db.get(Recording, recording_id)
        assert recording is not None
        assert recording.mp4_status is JobStatus.PENDING and recording.mp4_attempts == 1 and recording.mp4_error
        assert recording.mp4_not_before is not None
        # Not picked again before its pause is over.
    assert await jobs._next() is None
    async with database.session() as db:
        await db.execute(update(Recording).values(mp4_not_before=None))
    assert await jobs._next() == recording_id
    assert not await jobs.run(recording_id)
    async with database.session() as db:
        recording = await db.get(Recording, recording_id)
    assert recording is not None and recording.mp4_status is JobStatus.FAILED and recording.mp4_attempts == 2
    assert jobs.failed == 1 and not any(root.glob(f"{session_id}/*.mp4"))
    listed = await (await client.get(f"/api/v1/recordings/{recording_id}", headers=bearer(client.app, seed.admin))).json()
    assert listed["mp4_status"] == "failed" and listed["mp4_error"]
