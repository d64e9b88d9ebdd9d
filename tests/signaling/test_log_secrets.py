"""A whole session's log, in JSON at DEBUG, holds no token, password or SDP secret (issue 13).

``bridgecast serve`` runs in a process of its own with ``[logging] format =
"json"`` and level DEBUG; the test signs in (right and wrong passwords),
opens the console's socket, goes live, publishes and watches over WHEP with
aiortc, sends a malformed offer and a bad token, ends the session, stops
the server and reads every line it wrote. Each line must be JSON; the
lines about the session must say so; none may contain what a caller could
use: the passwords, the tokens, the signing key, the ICE passwords and
user fragments of every offer and answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

from server.storage.db import Database
from tests.conftest import TEST_PASSWORD, TEST_SECRET, Seed
from tests.media.clients import Publisher, Viewer, publish, view, wait_until
from tests.processes import ServerProcess
from tests.signaling.helpers import OPENED, add_session, live_speaker

def ice_secrets(sdp: str) -> set[str]:
    return set(re.findall(r"a=ice-(?:pwd|ufrag):(\S+)", sdp))


async def test_a_sessions_full_log_holds_no_secret(settings: Any, seed: Seed, sqlite_database: Database) -> None:
    password = TEST_PASSWORD
    session_id = await add_session(sqlite_database, seed, [seed.point_a.id])
    server = ServerProcess(settings.data_dir, settings.effective_database_url,
                           BRIDGECAST_LOGGING_FORMAT="json", BRIDGECAST_LOGGING_LEVEL="DEBUG")
    secrets: set[str] = {TEST_SECRET, password, "a wrong password!"}
    publisher: Publisher | None = None
    viewer: Viewer | None = None
    http = aiohttp.ClientSession()
    try:
        await server.start()
        tokens = {}
        for name, username in (("speaker", "speaker"), ("operator", "op-a")):
            async with http.post(f"{server.url}/api/v1/auth/token",
                                 json={"username": username, "password": password}) as response:
                assert response.status == 201, await response.text()
                tokens[name] = (await response.json())["token"]
        async with http.post(f"{server.url}/api/v1/auth/token",
                             json={"username": "speaker", "password": "a wrong password!"}) as response:
            assert response.status == 401
        secrets |= set(tokens.values())
        auth = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
        async with http.get(f"{server.url}/api/v1/me", headers={"Authorization": "Bearer " + "x" * 40}) as response:
            assert response.status == 401

        speaker = await live_speaker(http, server.url, session_id, tokens["speaker"])

        async def over_socket(offer: str) -> str:
            secrets.update(ice_secrets(offer))
            since = speaker.mark()
            await speaker.send("offer", pc="publish", sdp=offer)
            answer = (await speaker.expect("answer", since=since, pc="publish"))["sdp"]
            secrets.update(ice_secrets(answer))
            return answer

        publisher = await publish(over_socket, (30, 140, 200), 440, steady=True)

        async def over_whep(offer: str) -> str:
            secrets.update(ice_secrets(offer))
            async with http.post(f"{server.url}/whep/sessions/{session_id}", data=offer,
                                 headers={**auth["operator"], "Content-Type": "application/sdp"}) as response:
                assert response.status == 201
                answer = await response.text()
            secrets.update(ice_secrets(answer))
            return answer

        viewer = await view(over_whep)
        await wait_until(lambda: viewer.frames >= 20, timeout=20)
        # What a broken client sends is logged as one line, never with what it carried.
        await speaker.send("offer", pc="view", sdp="v=0\r\na=ice-pwd:leakedpasswordvalue123\r\nm=x")
        await speaker.expect("error", code="bad_sdp")
        secrets.add("leakedpasswordvalue123")
        await speaker.expect("quality", timeout=5)
        await speaker.send("end")
        await wait_until(lambda: speaker.ws.closed, timeout=10)
    finally:
        if viewer is not None:
            await viewer.close()
        if publisher is not None:
            await publisher.close()
        for live in list(OPENED):
            live._reader.cancel()
        await http.close()
        server.stop()

    text = server.log.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) >= 3, text
    records = []
    for line in lines:
        if line.startswith("Bridgecast serving on"):
            continue  # the one line the command prints for a person, before logging starts
        records.append(json.loads(line))
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    about_session = [r for r in records if r.get("session") == session_id]
    assert about_session, "no line says which session it is about"
    secrets = {s for s in secrets if len(s) >= 4}
    assert len(secrets) >= 8, secrets
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:6]}…) is in the server's log"
    print(f"\n{len(records)} log lines, {len(about_session)} about the session; {len(secrets)} secrets absent")
