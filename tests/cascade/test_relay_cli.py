"""``bridgecast relay add`` and ``relay list``, as real processes on a real SQLite file, and what a relay token opens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server import keys
from server.storage.db import Database
from server.storage.relays import create_relay
from tests.conftest import Seed, bearer
from tests.test_cli import bridgecast


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("relay-cli") / "data"
    assert bridgecast(data_dir, "db", "upgrade").returncode == 0
    assert bridgecast(data_dir, "demo").returncode == 0
    return data_dir


def test_relay_add_prints_the_token_last_and_list_shows_it(demo_dir: Path) -> None:
    added = bridgecast(demo_dir, "relay", "add", "hai-phong", "--unit", "hai-phong", "--url", "http://10.1.0.2:8081/")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("bcr_") and len(token) > 30
    assert "hai-phong" in added.stdout and "the hub" in added.stdout

    listing = bridgecast(demo_dir, "relay", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    relays = json.loads(listing.stdout)
    assert [(r["name"], r["unit"], r["url"], r["parent"], r["state"], r["last_heartbeat"]) for r in relays] == [
        ("hai-phong", "hai-phong", "http://10.1.0.2:8081", None, "never seen", None)]
    assert token not in listing.stdout  # only its digest is kept

    text = bridgecast(demo_dir, "relay", "list")
    assert text.returncode == 0 and "hai-phong" in text.stdout and "never seen" in text.stdout


REFUSALS = [
    (["Bad Name", "--unit", "hai-phong", "--url", "http://x:1"], 2, "lowercase letters"),
    (["r1", "--unit", "no-such-unit", "--url", "http://x:1"], 2, "no unit with slug"),
    (["r2", "--unit", "hai-phong", "--url", "ftp://x"], 2, "must start with http"),
    (["r3", "--unit", "hai-phong", "--url", "http://u:p@x:1"], 2, "credentials"),
    (["r4", "--unit", "hai-phong", "--url", "http://x:99999"], 2, "is not a URL"),
    (["r5", "--unit", "hai-phong", "--url", "http://x:1", "--parent", "nobody"], 2, "no relay named"),
    # The URL goes into headers (a redirect's Location, a live page's Content-Security-Policy).
    (["r8", "--unit", "hai-phong", "--url", "http://x:1/a;script-src"], 2, "semicolons"),
    (["r9", "--unit", "hai-phong", "--url", "http://x:1/a b"], 2, "spaces"),
    # A relay below another serves a unit below the other's: not a sibling province, not its own.
    (["r6", "--unit", "thai-nguyen", "--url", "http://x:1", "--parent", "can-tho"], 2, "does not serve a unit above"),
    (["r7", "--unit", "can-tho", "--url", "http://x:1", "--parent", "can-tho"], 2, "does not serve a unit above"),
    (["can-tho", "--unit", "can-tho", "--url", "http://10.1.0.9:8081"], 1, "exists"),
]

# Every refusal in one process: the real command line, without a process start (seconds here) per case.
_MANY = """
import contextlib, io, json, sys
from server.cli import main
results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def test_relay_add_refuses_bad_input(demo_dir: Path) -> None:
    first = bridgecast(demo_dir, "relay", "add", "can-tho", "--unit", "can-tho", "--url", "http://10.1.0.9:8081")
    assert first.returncode == 0, first.stderr
    ran = bridgecast(demo_dir, "-c", _MANY, json.dumps([["relay", "add", *args] for args, _, _ in REFUSALS]),
                     python=True)
    assert ran.returncode == 0, ran.stderr
    results = json.loads(ran.stdout.strip().splitlines()[-1])
    for (args, code, message), (got, out, err) in zip(REFUSALS, results, strict=True):
        assert (got, message in err, out) == (code, True, ""), (args, got, out, err)
    listing = json.loads(bridgecast(demo_dir, "relay", "list", "--json").stdout)
    assert "can-tho" in [r["name"] for r in listing] and not {"r1", "r6", "r7"} & {r["name"] for r in listing}


def test_relay_serve_refuses_a_token_that_is_not_a_relays(demo_dir: Path) -> None:
    refused = bridgecast(demo_dir, "relay", "serve", "--hub", "http://127.0.0.1:9", "--token", "eyJhbGciOi.x.y")
    assert refused.returncode == 2 and "not a relay token" in refused.stderr


# What a relay token opens, and what it does not ------------------------------------------------

async def _relay_token(database: Database, seed: Seed) -> str:
    async with database.session() as db:
        _, token = await create_relay(db, name="relay-a", unit_slug=seed.province_a.slug,
                                      url="http://127.0.0.1:9")
    return token


async def test_a_relay_token_opens_the_relay_api_and_nothing_else(client: TestClient, seed: Seed,
                                                                   sqlite_database: Database) -> None:
    token = await _relay_token(sqlite_database, seed)
    relay = {"Authorization": f"Bearer {token}"}
    beat = await client.post("/api/v1/relay/heartbeat", json={"sessions": [], "viewers": 0}, headers=relay)
    assert beat.status == 200
    body = await beat.json()
    assert body["relay"] == "relay-a" and body["sessions"] == [] and body["parent_url"] is None
    for path in ("/api/v1/me", "/api/v1/sessions", "/api/v1/units"):
        refused = await client.get(path, headers=relay)
        assert refused.status == 401, (path, refused.status)
    # A user's token, an admin's included, opens no relay route.
    for user in (seed.admin, seed.member):
        refused = await client.post("/api/v1/relay/heartbeat", json={}, headers=bearer(client.app, user))
        assert refused.status == 401
        assert (await refused.json())["error"]["code"] == "relay_token"
    # A token that looks like a relay's but is none.
    forged = await client.post("/api/v1/relay/heartbeat", json={},
                               headers={"Authorization": f"Bearer bcr_{'x' * 40}"})
    assert forged.status == 401 and (await forged.json())["error"]["code"] == "invalid_token"


async def test_a_heartbeat_answers_the_sessions_of_the_moment_though_the_hub_reads_them_once(
        client: TestClient, seed: Seed, sqlite_database: Database) -> None:
    """The sessions a relay carries are read once, not at every heartbeat, and again as soon as one starts or ends."""
    from tests.signaling.helpers import add_session

    token = await _relay_token(sqlite_database, seed)
    relay = {"Authorization": f"Bearer {token}"}

    async def carried() -> list[int]:
        beat = await client.post("/api/v1/relay/heartbeat", json={"sessions": [], "viewers": 0}, headers=relay)
        assert beat.status == 200
        return [session["id"] for session in (await beat.json())["sessions"]]

    session_id = await add_session(sqlite_database, seed, [seed.point_a.id])
    assert await carried() == []
    speaker = bearer(client.app, seed.speaker)
    started = await client.post(f"/api/v1/sessions/{session_id}/start", headers=speaker)
    assert started.status == 200, await started.text()
    assert await carried() == [session_id]  # went live: the next heartbeat carries it
    loads = 0
    watch = client.app[keys.RELAY_WATCH]
    carried_by_watch = watch.carried

    async def counting(unit_id: int, load: Any) -> Any:
        async def counted(unit: int) -> Any:
            nonlocal loads
            loads += 1
            return await load(unit)
        return await carried_by_watch(unit_id, counted)

    watch.carried = counting
    for _ in range(3):
        assert await carried() == [session_id]
    assert loads == 0  # read once, when it went live
    # A second session of province A goes live, then the first ends: each is read again at once.
    second = await add_session(sqlite_database, seed, [seed.point_a.id, seed.point_b.id])
    assert (await client.post(f"/api/v1/sessions/{second}/start", headers=speaker)).status == 200
    assert await carried() == [session_id, second] and loads == 1
    ended = await client.post(f"/api/v1/sessions/{session_id}/end", headers=speaker)
    assert ended.status == 200, await ended.text()
    assert await carried() == [second] and loads == 2
    assert await carried() == [second] and loads == 2


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/v1/relay/heartbeat", {"sessions": "x"}),
    ("POST", "/api/v1/relay/heartbeat", {"sessions": [1], "viewers": -1}),
    ("POST", "/api/v1/relay/heartbeat", {"unknown": 1}),
    ("POST", "/api/v1/relay/heartbeat", "[" * 100_000),
    ("POST", "/api/v1/relay/children", {"token": 5}),
    ("POST", "/api/v1/relay/children", {"token": "bcr_" + "x" * 40}),  # no relay below this one: 404
    ("POST", "/api/v1/relay/sessions/1/viewers", {"endpoint": "x", "token": "y"}),
    ("POST", "/api/v1/relay/sessions/1/viewers", {"endpoint": "a" * 32}),
    ("POST", "/api/v1/relay/sessions/99999999999999999999999/viewers", {"endpoint": "a" * 32, "token": "y"}),
    ("PATCH", f"/api/v1/relay/sessions/1/viewers/{'a' * 32}", {"receiving": "yes"}),
    ("DELETE", f"/api/v1/relay/sessions/1/viewers/{'a' * 32}", None),
    ("POST", "/api/v1/relay/sessions/1/feed", None),
    ("DELETE", f"/api/v1/relay/sessions/1/feed/{'a' * 32}", None),
])
async def test_bad_relay_requests_get_a_4xx(client: TestClient, seed: Seed, sqlite_database: Database,
                                            method: str, path: str, body: Any) -> None:
    token = await _relay_token(sqlite_database, seed)
    kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {token}"}}
    if isinstance(body, str):
        kwargs["data"] = body
        kwargs["headers"]["Content-Type"] = "application/json"
    elif body is not None:
        kwargs["json"] = body
    response = await client.request(method, path, **kwargs)
    assert 400 <= response.status < 500, (response.status, await response.text())
    assert "error" in await response.json()


# A relay's own routes: every bad request a 4xx (or 503 while it cannot serve), never a 500 ---------------

@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "code"), [
    ("POST", "/whep/sessions/1", {}, "v=0\r\n", 401, "unauthorized"),
    ("POST", "/whep/sessions/1?ticket=x", {"Content-Type": "text/plain"}, "v=0\r\n", 415, "unsupported_media_type"),
    ("POST", "/whep/sessions/1?ticket=x", {"Content-Type": "application/sdp"}, b"\xff\xfe", 400, "bad_sdp"),
    ("POST", "/whep/sessions/1?ticket=x", {"Content-Type": "application/sdp"}, "v=" + "x" * 300_000, 413, None),
    # Not carried (the hub is away here): ask the hub again, in 2 s.
    ("POST", "/whep/sessions/1?ticket=x", {"Content-Type": "application/sdp"}, "v=0\r\n", 503, "not_carried"),
    ("POST", "/whep/sessions/99999999999999999999999", {"Authorization": "Bearer x"}, "v=0\r\n", 404, "not_found"),
    ("DELETE", f"/whep/sessions/1/{'a' * 32}", {}, None, 404, "not_found"),
    ("PATCH", f"/whep/sessions/1/{'a' * 32}", {}, None, 405, "method_not_allowed"),
    ("POST", "/api/v1/relay/sessions/1/feed", {}, None, 401, "relay_token"),
    # A child's token is checked with the hub, which does not answer here.
    ("POST", "/api/v1/relay/sessions/1/feed", {"Authorization": "Bearer bcr_x"}, None, 503, "hub_unavailable"),
    ("GET", "/nowhere", {}, None, 404, "not_found"),
])
async def test_a_relays_bad_requests_get_a_4xx(aiohttp_client: Any, method: str, path: str, headers: dict[str, str],
                                                body: Any, status: int, code: str | None) -> None:
    from server.cascade.relay_app import create_relay_app
    from server.media.peer import LOOPBACK, IceConfig

    relay = await aiohttp_client(create_relay_app("http://127.0.0.1:9", "bcr_" + "t" * 40,
                                                  IceConfig(addresses=LOOPBACK)))
    response = await relay.request(method, path, headers=headers, data=body)
    assert response.status == status, (response.status, await response.text())
    error = (await response.json())["error"]
    assert code is None or error["code"] == code, error
    if status == 503:
        assert int(response.headers["Retry-After"]) >= 1
    health = await (await relay.get("/healthz")).json()
    assert health["status"] == "starting" and health["sessions"] == {}


async def test_a_relays_whep_answers_cors_for_the_hubs_pages(aiohttp_client: Any) -> None:
    """A hub's page offers its view at the relay from the hub's origin: the preflight is answered, and every
    answer (the errors too) is readable by the page, with its Location."""
    from server.cascade.relay_app import create_relay_app
    from server.media.peer import LOOPBACK, IceConfig

    relay = await aiohttp_client(create_relay_app("http://127.0.0.1:9", "bcr_" + "t" * 40,
                                                  IceConfig(addresses=LOOPBACK)))
    page = {"Origin": "https://hub.example"}
    for path, method in (("/whep/sessions/1", "POST"), (f"/whep/sessions/1/{'a' * 32}", "DELETE")):
        preflight = await relay.options(path, headers={**page, "Access-Control-Request-Method": method,
                                                       "Access-Control-Request-Headers": "content-type"})
        assert preflight.status == 204, await preflight.text()
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"
        assert method in preflight.headers["Access-Control-Allow-Methods"]
        assert "content-type" in preflight.headers["Access-Control-Allow-Headers"].lower()
        assert "Access-Control-Allow-Private-Network" not in preflight.headers
    # A public hub's page, a relay on a private network: Chromium's Private Network Access asks first.
    private = await relay.options("/whep/sessions/1", headers={**page, "Access-Control-Request-Method": "POST",
                                                               "Access-Control-Request-Private-Network": "true"})
    assert private.status == 204 and private.headers["Access-Control-Allow-Private-Network"] == "true"
    refused = await relay.post("/whep/sessions/1", headers={**page, "Content-Type": "application/sdp"}, data="v=0")
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == "*"
    assert "Location" in refused.headers["Access-Control-Expose-Headers"]
    # A plain OPTIONS (no preflight) is WHEP's own; the relay's other routes answer no CORS.
    plain = await relay.options("/whep/sessions/1")
    assert plain.status == 204 and plain.headers["Accept-Post"] == "application/sdp"
    health = await relay.get("/healthz", headers=page)
    assert "Access-Control-Allow-Origin" not in health.headers


async def test_a_sessions_read_that_a_change_overtakes_is_not_kept() -> None:
    """A heartbeat's read of the sessions begun before a session started is answered, not kept for 30 s."""
    import asyncio

    from server.live import events as ev
    from server.live.nodes import InMemoryNodeRegistry
    from server.signaling.cascade import RelayWatch

    watch = RelayWatch(InMemoryNodeRegistry(), None)  # type: ignore[arg-type]  # carried() needs no room
    reading, release = asyncio.Event(), asyncio.Event()
    loads: list[int] = []

    async def slow(unit_id: int) -> list[dict[str, object]]:
        loads.append(unit_id)
        reading.set()
        await release.wait()
        return []  # what the database said before the start

    stale = asyncio.create_task(watch.carried(7, slow))
    await reading.wait()
    await watch._forget_carried(ev.make(ev.SessionStarted, session_id=1))  # the session goes live meanwhile
    release.set()
    assert await stale == []

    async def fresh(unit_id: int) -> list[dict[str, object]]:
        loads.append(unit_id)
        return [{"id": 1, "title": "Live"}]

    assert await watch.carried(7, fresh) == [{"id": 1, "title": "Live"}] and loads == [7, 7]
    assert await watch.carried(7, fresh) == [{"id": 1, "title": "Live"}] and loads == [7, 7]  # kept now
