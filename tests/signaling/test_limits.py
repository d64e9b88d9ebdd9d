"""Peer connections and websockets are bounded per user and per session, and one that never connects is closed.

The attack (issue 12): a member posts valid WHEP offers in a loop and never
sends a candidate; each would hold a peer connection, its UDP sockets and a
polling loop forever, and keep the room from ever closing as idle.
"""

from __future__ import annotations

import asyncio
import os

import aioice.ice
import pytest
from aiohttp.test_utils import TestClient
from aiortc import RTCPeerConnection

from server import keys
from server.config import Settings
from tests.conftest import Seed, bearer, make_settings
from tests.media.clients import new_client, view, wait_until
from tests.signaling.helpers import add_session, connect
from tests.signaling.test_whip_whep import http_answerer

SDP = {"Content-Type": "application/sdp"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return make_settings(settings.data_dir, ice={"addresses": "127.0.0.1", "connect_timeout_seconds": 1.5},
                         limits={"endpoints_per_user": 3, "endpoints_per_session": 5, "sockets_per_user": 2})


def udp_sockets() -> int:
    """This process's open UDP sockets (its inodes in /proc/net/udp*)."""
    ours = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        with open(table) as handle:
            count += sum(1 for line in list(handle)[1:] if line.split()[9] in ours)
    return count


async def silent_offer() -> tuple[RTCPeerConnection, str]:
    """A valid offer from a client that will never send a candidate or answer a check."""
    pc = new_client()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    # Its candidates removed: the server has nobody to check against, and waits.
    sdp = "\r\n".join(line for line in pc.localDescription.sdp.splitlines()
                      if not line.startswith(("a=candidate", "a=end-of-candidates"))) + "\r\n"
    return pc, sdp


async def test_offers_that_never_connect_are_capped_then_closed_and_their_sockets_released(
        client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    token = bearer(client.app, seed.member)
    before = udp_sockets()
    clients, statuses, retry_after = [], [], set()
    try:
        for _ in range(12):
            pc, offer = await silent_offer()
            # The client goes away at once (its own sockets with it): only the server's are counted.
            await pc.close()
            response = await client.post(f"/whep/sessions/{session_id}", data=offer, headers={**token, **SDP})
            statuses.append(response.status)
            if response.status == 429:
                body = await response.json()
                assert body["error"]["code"] == "too_many_connections"
                retry_after.add(response.headers["Retry-After"])
        # Three per user: the rest refused at once, telling when to try again (the connect timeout).
        assert statuses == [201] * 3 + [429] * 9
        assert retry_after == {"2"}
        room = client.app[keys.LIVE].existing(session_id)
        assert room is not None and len(room.resources) == 3 and len(room.media.endpoints()) == 3
        assert udp_sockets() > before
        # None connected: each is closed by its deadline, its sockets with it, and the room may close as idle.
        await wait_until(lambda: len(room.resources) == 0 and not room.media.endpoints(), timeout=10)
        await wait_until(lambda: udp_sockets() <= before, timeout=5)
        assert room.quotas.endpoints.held_by(seed.member.id) == 0
        assert room._idle is not None
        # Given back: the member may open one again.
        pc, offer = await silent_offer()
        clients.append(pc)
        again = await client.post(f"/whep/sessions/{session_id}", data=offer, headers={**token, **SDP})
        assert again.status == 201
    finally:
        for pc in clients:
            await pc.close()


async def test_a_session_holds_at_most_its_ceiling_whoever_asks(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id, seed.point_b.id])
    users = [seed.member, seed.operator, seed.member_b]
    clients, statuses = [], []
    try:
        for index in range(7):
            pc, offer = await silent_offer()
            clients.append(pc)
            token = bearer(client.app, users[index % 3])
            response = await client.post(f"/whep/sessions/{session_id}", data=offer, headers={**token, **SDP})
            statuses.append((response.status, (await response.json())["error"]["code"]
                             if response.status != 201 else None))
        assert statuses[:5] == [(201, None)] * 5
        assert statuses[5:] == [(429, "session_full")] * 2
    finally:
        for pc in clients:
            await pc.close()


async def test_websockets_per_user_are_capped_before_the_upgrade(client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    first = await connect(client, session_id, seed.member)
    second = await connect(client, session_id, seed.member)
    try:
        refused = await client.get(f"/ws/sessions/{session_id}", headers={
            **bearer(client.app, seed.member), "Connection": "Upgrade", "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert refused.status == 429 and refused.headers["Retry-After"] == "2"
        assert (await refused.json())["error"]["code"] == "too_many_connections"
        # Another user is not affected; a socket closed gives its place back.
        other = await connect(client, session_id, seed.admin)
        await other.close()
        await first.close()
        await wait_until(lambda: client.app[keys.LIVE].quotas.sockets.held_by(seed.member.id) == 1)
        third = await connect(client, session_id, seed.member)
        await third.close()
    finally:
        await second.close()


async def test_a_socket_over_its_users_quota_gets_a_protocol_error_and_keeps_working(
        client: TestClient, seed: Seed) -> None:
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    clients = []
    live = await connect(client, session_id, seed.member)
    try:
        for _ in range(3):
            pc, offer = await silent_offer()
            clients.append(pc)
            response = await client.post(f"/whep/sessions/{session_id}", data=offer,
                                         headers={**bearer(client.app, seed.member), **SDP})
            assert response.status == 201
        pc, offer = await silent_offer()
        clients.append(pc)
        await live.send("offer", pc="view", sdp=offer)
        refused = await live.expect("error", code="too_many_connections")
        assert refused["details"] == {"retry_after": 2}
        await live.send("ping", t=1)
        await live.expect("pong")
    finally:
        await live.close()
        for pc in clients:
            await pc.close()


async def test_a_viewer_whose_consent_expires_is_closed(client: TestClient, seed: Seed,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Connected, then gone without a word (its network cut): ICE consent (RFC 7675) ends it."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    resources: list[str] = []
    player = await view(http_answerer(client, f"/whep/sessions/{session_id}", bearer(client.app, seed.member),
                                      resources))
    room = client.app[keys.LIVE].existing(session_id)
    assert room is not None
    try:
        await wait_until(lambda: player.pc.connectionState == "connected", timeout=10)
        # Past the connect deadline: connected endpoints are not closed by it.
        await asyncio.sleep(2)
        assert len(room.resources) == 1
        # The player's sockets stop answering (as if its network went away): nothing is sent to the server.
        for transceiver in player.pc.getTransceivers():
            for protocol in transceiver.receiver.transport.transport._connection._protocols:
                protocol.transport.close()
        await wait_until(lambda: len(room.resources) == 0, timeout=15)
        assert room.quotas.endpoints.held_by(seed.member.id) == 0
    finally:
        await player.close()
