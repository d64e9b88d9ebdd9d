"""Input nobody should send gets a 4xx with the usual error body, never a 500 (issue 12, item 5).

Each case failed with a 500 before its fix: "²" passes str.isdigit() but not int(), an id past
the database's 32-bit INTEGER reached PostgreSQL, json.loads raised RecursionError or the
4,300-digit ValueError, and aiortc's SDP parser asserts on what it does not understand.
"""

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server import keys
from server.validation import DB_INT_MAX, digits
from tests.conftest import Seed, bearer
from tests.signaling.helpers import add_session


def test_digits_takes_ascii_digits_within_the_databases_integer_only() -> None:
    assert digits("42") == 42 and digits(str(DB_INT_MAX)) == DB_INT_MAX
    for raw in ("", "²", "١٢", "-1", "1e3", " 1", str(DB_INT_MAX + 1), "9" * 5000):
        assert digits(raw) is None, raw


NUMBER_PATHS = [
    "/api/v1/sessions?limit=²", "/api/v1/sessions?limit=" + "9" * 5000,
    f"/api/v1/sessions/{10**30}", f"/api/v1/sessions/{DB_INT_MAX + 1}", "/api/v1/sessions/²",
    f"/api/v1/recordings/{DB_INT_MAX + 1}", "/recordings?unit=²", f"/recordings?unit={DB_INT_MAX + 1}",
    f"/api/v1/users/{DB_INT_MAX + 1}", f"/api/v1/units/{DB_INT_MAX + 1}", f"/api/v1/points/{DB_INT_MAX + 1}",
    f"/sessions/{DB_INT_MAX}/attendance", f"/users/{DB_INT_MAX + 1}/attendance",
]


@pytest.mark.parametrize("path", NUMBER_PATHS)
async def test_numbers_in_urls_are_never_a_500(client: TestClient, seed: Seed, path: str) -> None:
    response = await client.get(path, headers=bearer(client.app, seed.admin))
    assert response.status < 500, (path, response.status, await response.text())


@pytest.mark.parametrize("body", [
    "[" * 100_000,
    '{"title": "x", "speaker_id": ' + "9" * 5000 + "}",
    '{"title": "x", "speaker_id": ' + str(10**30) + ', "invited_point_ids": [1]}',
    '{"title": "x", "speaker_id": 1, "invited_point_ids": [' + str(10**30) + "]}",
])
async def test_json_bodies_nobody_should_send_are_4xx(client: TestClient, seed: Seed, body: str) -> None:
    response = await client.post("/api/v1/sessions", data=body, headers={
        **bearer(client.app, seed.admin), "Content-Type": "application/json"})
    assert 400 <= response.status < 500, (response.status, await response.text())
    assert "error" in await response.json()


@pytest.mark.parametrize("line", ["m=video 9 UDP/TLS/RTP/SAVPF 300", "c=IN X y"])
async def test_an_sdp_aiortc_cannot_parse_is_a_400_and_leaves_nothing(client: TestClient, seed: Seed,
                                                                      line: str) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    offer = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
             "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
             f"{line}\r\na=mid:1\r\n")
    response = await client.post(f"/whep/sessions/{session_id}", data=offer, headers={
        **bearer(client.app, seed.member), "Content-Type": "application/sdp"})
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == "bad_sdp"
    room = client.app[keys.LIVE].rooms.get(session_id)
    assert room is None or room.media.endpoints() == []


async def test_a_browsers_clock_in_a_ping_is_not_a_database_integer(client: TestClient, seed: Seed) -> None:
    # Bounding schema integers by the database's INTEGER must not refuse what never goes there:
    # the hall page pings with Date.now() and shows the round trip from the pong.
    from tests.signaling.helpers import connect

    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    live = await connect(client, session_id, seed.admin)
    try:
        await live.send("ping", t=1_764_700_000_000)
        await live.expect("pong", t=1_764_700_000_000)
    finally:
        await live.close()


@pytest.mark.parametrize("candidate", [
    "1 1 udp 1 1.2.3.4", "candidate:1 1 udp 1 1.2.3.4", "candidate:1 1 udp 99999999999999999999 1.2.3.4 9 typ host",
    "candidate:1 1 udp 1 1.2.3.4 70000 typ host", "candidate:1 x udp 1 1.2.3.4 9 typ host",
    "candidate:1 1 udp 1 not-an-address 9 typ host", "candidate:1 1 udp 1 1.2.3.4 9 typ", "\u202e" * 10,
])
async def test_a_candidate_nobody_should_send_is_a_protocol_error_and_one_line_at_most(
        client: TestClient, seed: Seed, candidate: str, caplog: pytest.LogCaptureFixture) -> None:
    from tests.media.clients import new_client
    from tests.signaling.helpers import connect

    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    live = await connect(client, session_id, seed.member)
    pc = new_client()
    try:
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        await live.send("offer", pc="view", sdp=pc.localDescription.sdp)
        await live.expect("answer")
        since = live.mark()
        await live.send("candidate", pc="view", candidate=candidate, sdpMid="0", sdpMLineIndex=0)
        refused = await live.expect("error", since=since)
        assert refused["code"] in ("bad_candidate", "invalid_message"), refused
        # The socket goes on, and the log holds no traceback and no error.
        await live.send("ping", t=1)
        await live.expect("pong", since=since)
        assert not [r for r in caplog.records if r.exc_info or r.levelname in ("ERROR", "CRITICAL")]
    finally:
        await live.close()
        await pc.close()


@pytest.mark.parametrize("title", ["Báo cáo\u202efdp.exe", "Hội\u200bnghị", "Tiêu đề\u2066ẩn\u2069", "A\u0007B",
                                   "Hai\ndòng", "\ufeffBOM"])
async def test_names_and_titles_refuse_control_bidi_and_invisible_characters(
        client: TestClient, seed: Seed, title: str) -> None:
    admin = bearer(client.app, seed.admin)
    body = {"title": title, "scheduled_start": "2026-12-20T08:00:00+07:00",
            "scheduled_end": "2026-12-20T10:00:00+07:00", "invited_point_ids": [seed.point_a.id]}
    response = await client.post("/api/v1/sessions", json=body, headers=admin)
    assert response.status == 422, await response.text()
    errors = (await response.json())["error"]["details"]
    assert {"field": "title", "code": "invalid_characters"}.items() <= errors[0].items()
    renamed = await client.patch(f"/api/v1/users/{seed.member.id}", json={"full_name": title}, headers=admin)
    assert renamed.status == 422
    # A description keeps its line breaks; a Vietnamese title (precomposed or combining) is fine.
    fine = await client.post("/api/v1/sessions", headers=admin, json={
        **body, "title": "Quán triệt Nghị quyết", "description": "Dòng một\nDòng hai\tcột"})
    assert fine.status == 201, await fine.text()


async def test_a_question_with_a_bidi_override_is_refused_on_the_socket(client: TestClient, seed: Seed) -> None:
    from tests.signaling.helpers import connect

    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    live = await connect(client, session_id, seed.member)
    try:
        await live.send("question", text="Câu hỏi \u202egnaht")
        refused = await live.expect("error")
        assert refused["code"] == "invalid_message"
        await live.send("question", text="Câu hỏi\nhai dòng")
        await live.expect("question_received")
    finally:
        await live.close()


@pytest.mark.postgres
async def test_numbers_in_urls_are_never_a_500_on_postgresql(aiohttp_client: Any, settings: Any, pg_database: str,
                                                             password_hash: str) -> None:
    """PostgreSQL's INTEGER is 32-bit (SQLite's is not): the bound matters there."""
    from sqlalchemy import text

    from server.app import create_app
    from server.storage.db import Database
    from tests.conftest import make_settings, seed_database

    database = Database(pg_database)
    try:
        seed = await seed_database(database, password_hash)
        client = await aiohttp_client(create_app(make_settings(settings.data_dir, database_url=pg_database)))
        for path in NUMBER_PATHS:
            response = await client.get(path, headers=bearer(client.app, seed.admin))
            assert response.status < 500, (path, response.status, await response.text())
    finally:
        async with database.session() as db:
            await db.execute(text("TRUNCATE units, users, sessions RESTART IDENTITY CASCADE"))
        await database.close()
