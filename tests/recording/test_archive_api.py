"""The catalogue API, the media files and replay credit over HTTP, with real files and a real database.

Who may list and watch (the session's visibility), HTTP Range, files served
only from inside the recordings folder, admin-only deletion that keeps
attendance and replay credit, retention, and the progress endpoint's 400s.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from server import keys
from server.recording.retention import Retention
from server.storage.models import Recording, RecordingAudit, ReplayProgress, utcnow
from tests.conftest import Seed, bearer
from tests.recording.synthetic import make_recording
from tests.signaling.helpers import add_session


@pytest.fixture
async def recorded(client: TestClient, seed: Seed) -> dict[str, Any]:
    database = client.app[keys.DATABASE]
    session_id = await add_session(database, seed, [seed.point_a.id])
    recording_id = await make_recording(database, client.app[keys.SETTINGS].recordings_dir, session_id,
                                        chapters=[(0.0, f"user:{seed.speaker.id}"), (3.0, f"point:{seed.point_a.id}")])
    return {"session_id": session_id, "recording_id": recording_id}


async def test_the_session_lists_its_recording_for_whoever_may_watch(client: TestClient, seed: Seed,
                                                                     recorded: dict[str, Any]) -> None:
    url = f"/api/v1/sessions/{recorded['session_id']}/recordings"
    for user in (seed.member, seed.operator, seed.speaker, seed.admin):
        response = await client.get(url, headers=bearer(client.app, user))
        assert response.status == 200, (user.username, await response.text())
        recording, = (await response.json())["recordings"]
        assert recording["id"] == recorded["recording_id"] and recording["status"] == "ready"
        assert recording["duration_seconds"] == 6.0 and recording["parts"] == 1
        assert [c["at_seconds"] for c in recording["chapters"]] == [0.0, 3.0]
        assert recording["chapters"][1]["title"] == "Điểm cầu A phát biểu"
        assert recording["download_url"] == f"/recordings/{recording['id']}/file.webm"
        assert recording["mp4_url"] is None and recording["mp4_status"] == "pending"
        assert ("mp4_error" in recording) is (user is seed.admin)
    # A member of a unit not invited, and nobody signed in, see nothing of it.
    assert (await client.get(url, headers=bearer(client.app, seed.member_b))).status == 404
    assert (await client.get(url)).status == 401
    file_url = f"/recordings/{recorded['recording_id']}/file.webm"
    assert (await client.get(file_url, headers=bearer(client.app, seed.member_b))).status == 404
    assert (await client.get(file_url, allow_redirects=False)).status in (302, 303)


async def test_the_file_is_served_with_range_and_only_from_inside_the_folder(
        client: TestClient, seed: Seed, recorded: dict[str, Any], tmp_path: Any) -> None:
    database = client.app[keys.DATABASE]
    root = client.app[keys.SETTINGS].recordings_dir
    url = f"/recordings/{recorded['recording_id']}/file.webm"
    headers = bearer(client.app, seed.member)
    body = (root / f"{recorded['session_id']}/part-1.webm").read_bytes()
    tail = await client.get(url, headers={**headers, "Range": f"bytes={len(body) - 10}-"})
    assert tail.status == 206 and tail.headers["Content-Range"] == f"bytes {len(body) - 10}-{len(body) - 1}/{len(body)}"
    assert await tail.read() == body[-10:]
    beyond = await client.get(url, headers={**headers, "Range": f"bytes={len(body) + 5}-"})
    assert beyond.status == 416
    download = await client.get(url + "?download=1", headers=headers)
    assert "attachment" in download.headers["Content-Disposition"]

    secret = tmp_path / "secret.txt"
    secret.write_text("not a recording")
    os.symlink(secret, root / f"{recorded['session_id']}/link.webm")
    for stored in ["../secret.txt", f"{recorded['session_id']}/../../secret.txt", "%2e%2e/secret.txt",
                   str(secret), f"{recorded['session_id']}/link.webm", f"{recorded['session_id']}%2f..%2f..%2fx"]:
        async with database.session() as db:
            await db.execute(update(Recording).where(Recording.id == recorded["recording_id"]).values(file=stored))
        response = await client.get(url, headers=headers)
        assert response.status == 404, stored
        assert b"not a recording" not in await response.read()
    # Nor does a path in the URL reach a file: only ids route.
    for path in ["/recordings/..%2f..%2fetc%2fpasswd", "/recordings/%2e%2e/secret.txt", "/recordings/1/../../x"]:
        assert (await client.get(path, headers=headers)).status == 404, path


async def test_only_an_admin_deletes_the_media_and_attendance_and_credit_stay(
        client: TestClient, seed: Seed, recorded: dict[str, Any]) -> None:
    database = client.app[keys.DATABASE]
    root = client.app[keys.SETTINGS].recordings_dir
    recording_id = recorded["recording_id"]
    member = bearer(client.app, seed.member)
    progress = f"/api/v1/recordings/{recording_id}/progress"
    assert (await client.post(progress, json={"ranges": []}, headers=member)).status == 200
    async with database.session() as db:  # the member's clock started 10 s ago
        await db.execute(update(ReplayProgress).values(last_report_at=utcnow() - timedelta(seconds=10)))
    credited = await client.post(progress, json={"ranges": [[0, 4]]}, headers=member)
    assert (await credited.json())["credited_seconds"] == 4.0

    url = f"/api/v1/recordings/{recording_id}"
    for user in (seed.member, seed.operator, seed.speaker):
        assert (await client.delete(url, headers=bearer(client.app, user))).status == 403
    assert (root / f"{recorded['session_id']}/part-1.webm").exists()
    response = await client.delete(url, json={"reason": "wrong lecture"}, headers=bearer(client.app, seed.admin))
    assert response.status == 204
    assert not (root / f"{recorded['session_id']}/part-1.webm").exists()
    async with database.session() as db:
        audit = list(await db.scalars(select(RecordingAudit)))
        kept = await db.scalar(select(ReplayProgress.credited_seconds))
    assert [(a.action, a.actor_id, a.reason) for a in audit] == [("delete", seed.admin.id, "wrong lecture")]
    assert kept == 4.0
    listed = await (await client.get(url, headers=member)).json()
    assert listed["status"] == "deleted" and listed["download_url"] is None
    assert (await client.get(f"/recordings/{recording_id}/file.webm", headers=member)).status == 404
    report = await client.get(f"/api/v1/sessions/{recorded['session_id']}/attendance",
                              headers=bearer(client.app, seed.admin))
    row = next(m for m in (await report.json())["members"] if m["username"] == seed.member.username)
    assert row["replay_seconds"] == 4


async def test_retention_deletes_old_media_only(client: TestClient, seed: Seed, recorded: dict[str, Any]) -> None:
    database = client.app[keys.DATABASE]
    root = client.app[keys.SETTINGS].recordings_dir
    retention = Retention(database, root, days=30)
    assert await retention.sweep() == 0
    async with database.session() as db:
        await db.execute(update(Recording).values(ended_at=utcnow() - timedelta(days=31)))
    assert await retention.sweep() == 1
    assert not any(root.glob(f"{recorded['session_id']}/*.webm"))
    async with database.session() as db:
        recording = await db.get(Recording, recorded["recording_id"])
        audit = await db.scalar(select(RecordingAudit))
    assert recording is not None and recording.status.value == "deleted"
    assert audit is not None and audit.actor_id is None and audit.action == "retention"
    assert await Retention(database, root, days=0).sweep() == 0


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"ranges": "0-10"}, 400, "bad_ranges.not_a_list"),
    ({"ranges": [[0]]}, 400, "bad_ranges.not_a_pair"),
    ({"ranges": [[0, "5"]]}, 400, "bad_ranges.not_a_number"),
    ({"ranges": [[True, 5]]}, 400, "bad_ranges.not_a_number"),
    ({"ranges": [[5, 2]]}, 400, "bad_ranges.empty_or_reversed"),
    ({"ranges": [[0, 60]]}, 400, "bad_ranges.outside_recording"),
    ({"ranges": [[-1, 2]]}, 400, "bad_ranges.outside_recording"),
    ({"ranges": [[0, 1]] * 501}, 400, "bad_ranges.too_many"),
    ({"ranges": []}, 200, None),
    ({"ranges": [], "position": -3}, 400, "bad_position"),
    ({"ranges": [], "extra": 1}, 400, "bad_ranges"),
    ({"position": 2}, 400, "bad_ranges"),
    ([], 400, "bad_ranges"),
])
async def test_malformed_or_impossible_progress_gets_400(client: TestClient, seed: Seed, recorded: dict[str, Any],
                                                        body: Any, status: int, code: str | None) -> None:
    response = await client.post(f"/api/v1/recordings/{recorded['recording_id']}/progress", json=body,
                                 headers=bearer(client.app, seed.member))
    assert response.status == status, await response.text()
    if code is not None:
        assert (await response.json())["error"]["code"] == code


async def test_progress_refuses_bad_bodies_and_strangers(client: TestClient, seed: Seed,
                                                         recorded: dict[str, Any]) -> None:
    url = f"/api/v1/recordings/{recorded['recording_id']}/progress"
    member = bearer(client.app, seed.member)
    nan = await client.post(url, data='{"ranges": [[0, NaN]]}', headers={**member, "Content-Type": "application/json"})
    assert nan.status == 400
    broken = await client.post(url, data="{", headers={**member, "Content-Type": "application/json"})
    assert broken.status == 400 and (await broken.json())["error"]["code"] == "invalid_json"
    assert (await client.post(url, data="ranges", headers=member)).status == 415
    assert (await client.post(url, json={"ranges": []}, headers=bearer(client.app, seed.member_b))).status == 404
    assert (await client.post("/api/v1/recordings/999/progress", json={"ranges": []}, headers=member)).status == 404


async def test_the_library_finds_by_folded_words_and_survives_odd_queries(client: TestClient, seed: Seed,
                                                                          recorded: dict[str, Any]) -> None:
    from tests.conftest import login

    await login(client, seed.member.username)
    found = await client.get("/recordings?q=LIVE+test")
    assert found.status == 200 and f"/recordings/{recorded['recording_id']}" in await found.text()
    missing = await client.get("/recordings?q=khong+co")
    assert f"/recordings/{recorded['recording_id']}\"" not in await missing.text()
    for query in ("unit=99999999999999999999", "from=9999-12-31&to=9999-12-31", "from=garbage&page=999999999999",
                  "speaker=%00", f"unit={seed.province_b.id}"):
        response = await client.get(f"/recordings?{query}")
        assert response.status == 200, query
    page = await client.get(f"/recordings/{recorded['recording_id']}")
    text = await page.text()
    assert page.status == 200 and "Điểm cầu A phát biểu" in text and 'id="player"' in text
