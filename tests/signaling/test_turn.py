"""TURN for halls behind strict firewalls, against Debian's coturn (issue 13, point 6).

A real ``turnserver`` runs on 127.0.0.1 with ``use-auth-secret`` and the
server's ``ice.turn_secret``. The credentials the server hands out (in the
pages' config and in the WHEP ``Link`` header) allocate a relay; expired or
forged ones are refused; and a WHEP viewer that may use relay candidates
only (``iceTransportPolicy: relay``) receives the program through coturn,
frames counted and colours checked.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import turn
from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy
from aiohttp.test_utils import TestClient

from server import keys
from server.app import create_app
from server.config import IceSettings, Settings
from server.media.ice import browser_ice_servers
from tests.conftest import Seed, bearer, make_settings
from tests.media.clients import close_to, view, wait_until
from tests.signaling.helpers import add_session, connect

SECRET = "turn-shared-secret-for-tests"
RED = (220, 40, 40)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_stun(port: int) -> bool:
    """A STUN binding request to 127.0.0.1:port is answered (RFC 5389: a binding success response)."""
    request = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, os.urandom(12))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(request, ("127.0.0.1", port))
        try:
            reply, _ = sock.recvfrom(2048)
        except OSError:
            return False
    return len(reply) >= 20 and struct.unpack("!H", reply[:2])[0] == 0x0101 and reply[8:20] == request[8:20]


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[int]:
    """Debian's coturn on 127.0.0.1 (a port of its own), REST credentials with SECRET; its port."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("coturn is not installed: `make test` installs it (Debian package coturn)")
    port = _free_udp_port()
    relay_low = 49152 + (port % 1000) * 10
    log = tmp_path / "coturn.log"
    process = subprocess.Popen(
        [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         f"--min-port={relay_low}", f"--max-port={relay_low + 9}", "--use-auth-secret",
         f"--static-auth-secret={SECRET}", "--realm=bridgecast.test", "--fingerprint", "--no-tls", "--no-dtls",
         "--no-cli", "--no-tcp", "--allow-loopback-peers", "--no-multicast-peers", f"--pidfile={tmp_path}/coturn.pid",
         f"--userdb={tmp_path}/turndb", f"--log-file={log}", "--simple-log", "--no-stdout-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not _answers_stun(port):
            assert process.poll() is None, log.read_text() if log.exists() else "coturn exited"
            assert time.monotonic() < deadline, "coturn did not answer: " + (log.read_text()[-1500:] if log.exists() else "")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class _Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)


async def _allocate(port: int, username: str, credential: str) -> tuple[str, int]:
    transport, _ = await turn.create_turn_endpoint(_Sink, ("127.0.0.1", port), username, credential, lifetime=60)
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()


async def test_handed_out_credentials_allocate_and_expired_or_forged_ones_do_not(coturn: int) -> None:
    settings = IceSettings(turn_urls=f"turn:127.0.0.1:{coturn}?transport=udp", turn_secret=SECRET,
                           turn_ttl_seconds=600, addresses="127.0.0.1")
    (server,) = browser_ice_servers(settings, user_id=42)
    relayed = await _allocate(coturn, server["username"], server["credential"])
    assert relayed[0] == "127.0.0.1" and relayed[1] > 0

    (expired,) = browser_ice_servers(settings, user_id=42, now=time.time() - 1200)
    forged = dict(server, credential=server["credential"][:-4] + "AAA=")
    other_secret = browser_ice_servers(IceSettings(turn_urls=settings.turn_urls, turn_secret="not the secret"), 42)[0]
    for refused in (expired, forged, other_secret):
        with pytest.raises(Exception) as error:
            await _allocate(coturn, refused["username"], refused["credential"])
        assert "401" in str(error.value) or "Unauthorized" in str(error.value) or "438" in str(error.value), \
            repr(error.value)


@pytest.fixture
async def turn_client(aiohttp_client: Any, settings: Settings, seed: Seed, coturn: int) -> AsyncIterator[TestClient]:
    configured = make_settings(settings.data_dir, ice={
        "addresses": "127.0.0.1", "turn_urls": f"turn:127.0.0.1:{coturn}?transport=udp", "turn_secret": SECRET})
    yield await aiohttp_client(create_app(configured))


def _link_servers(header: str) -> list[RTCIceServer]:
    """RFC 9725's Link header of ice-servers, as aiortc's configuration."""
    servers = []
    for part in header.split(", <"):
        url = re.search(r"<?([^>]+)>", part)[1]  # type: ignore[index]
        username = re.search(r'username="([^"]+)"', part)
        credential = re.search(r'credential="([^"]+)"', part)
        servers.append(RTCIceServer(urls=url, username=username and username[1],
                                    credential=credential and credential[1]))
    return servers


async def test_a_viewer_on_relay_candidates_only_gets_the_program_through_coturn(turn_client: TestClient,
                                                                                 seed: Seed, coturn: int) -> None:
    client = turn_client
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    console = await connect(client, session_id, seed.speaker)
    await console.send("start")
    await console.expect("session", status="live")
    studio = await console.publish(RED, 440)
    headers = {**bearer(client.app, seed.operator), "Content-Type": "application/sdp"}

    # The hall's page gets the relay in its config, the WHEP answer in its Link header.
    page = await client.get(f"/sessions/{session_id}/live", headers=bearer(client.app, seed.operator))
    assert f"turn:127.0.0.1:{coturn}" in await page.text()

    relay_only: dict[str, Any] = {}

    async def answer(offer: str) -> str:
        response = await client.post(f"/whep/sessions/{session_id}", data=offer, headers=headers)
        assert response.status == 201, await response.text()
        relay_only["link"] = response.headers["Link"]
        return await response.text()

    # A first exchange only to read the Link header, as a WHEP client does (RFC 9725 4.4).
    probe = await view(answer)
    await probe.close()
    servers = _link_servers(relay_only["link"])
    assert servers and servers[0].urls == f"turn:127.0.0.1:{coturn}?transport=udp" and servers[0].credential
    config = RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY)
    player = await view(answer, configuration=config)
    try:
        offer = player.pc.localDescription.sdp
        candidates = re.findall(r"a=candidate:\S+ \d \S+ \d+ (\S+) (\d+) typ (\w+)", offer)
        assert candidates and {kind for _, _, kind in candidates} == {"relay"}, candidates
        await wait_until(lambda: player.frames >= 30, timeout=30)
        assert all(close_to(colour, RED) for colour in player.recent_colours())
        await wait_until(lambda: player.tone_energy(440) > 0.5, timeout=10)
        pair = next(iter(player.pc.getTransceivers())).receiver.transport.transport.iceGatherer._connection
        nominated = pair._nominated.get(1)
        assert nominated is not None and nominated.local_candidate.type == "relay"
        print(f"\nthrough coturn: {player.frames} frames, relay {nominated.local_candidate.host}:"
              f"{nominated.local_candidate.port}")
    finally:
        await player.close()
        await studio.close()
        await console.close()
