"""The hub's pages take their media where the hub sends them (issue 14), in one process over the real protocol.

A live relay in the node registry (the in-memory one the hub runs without
Redis, as a relay's heartbeat leaves it) serves province A. A page's ``view``
offer from province A is answered with ``redirect`` (the relay's WHEP URL and
a ticket); the speaker, province B and an offer marked ``here`` are answered
by the hub; the relay's death and the floor tell the pages it served to offer
again (``renegotiate``). The pages' own part (the offer at the relay, and back)
runs in Chromium in ``test_cascade.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp.test_utils import TestClient

from server import keys
from server.auth.tokens import verify_token
from server.live.events import user_key
from server.live.nodes import NodeInfo
from server.storage.db import Database
from server.storage.relays import create_relay
from tests.conftest import Seed, bearer
from tests.media.clients import new_client
from tests.signaling.helpers import LiveClient, add_session, connect

RELAY_URL = "http://127.0.0.1:9"


async def _relay_alive(client: TestClient, seed: Seed, session_id: int) -> None:
    info = NodeInfo(name="relay-a", kind="relay", url=RELAY_URL, unit_id=seed.province_a.id, parent=None,
                    sessions=(session_id,), beat_at=time.time())
    await client.app[keys.NODES].beat(info, 60)
    await client.app[keys.RELAY_WATCH].alive(max_age=0)


async def _offer_sdp() -> str:
    pc = new_client()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def _offer_view(live: LiveClient, sdp: str, **extra: Any) -> dict[str, Any]:
    """Offer the view; the hub's reply: ``answer``, ``redirect`` (or an error)."""
    since = live.mark()
    await live.send("offer", pc="view", sdp=sdp, **extra)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for message in live.received[since:]:
            if message.get("type") in ("answer", "redirect", "error"):
                return message
        await asyncio.sleep(0.02)
    raise AssertionError(f"no reply to the offer: {live.received[since:]}")


async def _live_with_a_relay(client: TestClient, seed: Seed, database: Database) -> tuple[int, LiveClient, str]:
    """A live session inviting points A and B, relay A alive in the registry; the speaker's socket, an offer."""
    session_id = await add_session(database, seed, [seed.point_a.id, seed.point_b.id])
    speaker = await connect(client, session_id, seed.speaker)
    await speaker.send("start")
    await speaker.expect("session", status="live")
    await _relay_alive(client, seed, session_id)
    return session_id, speaker, await _offer_sdp()


async def test_pages_of_a_relays_unit_are_sent_there_and_back_here_when_it_dies(
        client: TestClient, seed: Seed, sqlite_database: Database) -> None:
    session_id, speaker, sdp = await _live_with_a_relay(client, seed, sqlite_database)

    member_a = await connect(client, session_id, seed.member)
    sent = await _offer_view(member_a, sdp)
    assert sent["type"] == "redirect", sent
    url = urlsplit(sent["url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{RELAY_URL}/whep/sessions/{session_id}"
    # The ticket stands for the member's token: this session only, within a minute.
    claims = verify_token(client.app[keys.JWT_SECRET], parse_qs(url.query)["ticket"][0])
    assert (claims.user_id, claims.session_id) == (seed.member.id, session_id)
    assert claims.expires_at - time.time() <= 61
    # Nothing of the member's is served here meanwhile: its media is the relay's.
    room = client.app[keys.LIVE].existing(session_id)
    assert room is not None and not room.media.endpoints(user_key(seed.member.id))

    # The speaker, a member of another province and a page the relay failed are answered here.
    assert (await _offer_view(speaker, sdp))["type"] == "answer"
    member_b = await connect(client, session_id, seed.member_b)
    assert (await _offer_view(member_b, sdp))["type"] == "answer"
    assert (await _offer_view(member_a, sdp, here=True))["type"] == "answer"
    assert room.media.endpoints(user_key(seed.member.id))

    # Sent to the relay again; the relay dies (its key gone from the registry): the page is told to offer again.
    assert (await _offer_view(member_a, sdp))["type"] == "redirect"
    await client.app[keys.NODES].forget("relay-a")
    mark_a, mark_b = member_a.mark(), member_b.mark()
    await client.app[keys.RELAY_WATCH].check()
    told = await member_a.expect("renegotiate", since=mark_a)
    assert told == {"type": "renegotiate", "pc": "view", "reason": "relay_lost"}
    assert not [m for m in member_b.received[mark_b:] if m["type"] == "renegotiate"]
    assert (await _offer_view(member_a, sdp))["type"] == "answer"


async def test_the_hall_given_the_floor_is_told_to_view_here(client: TestClient, seed: Seed,
                                                            sqlite_database: Database) -> None:
    session_id, speaker, sdp = await _live_with_a_relay(client, seed, sqlite_database)
    hall = await connect(client, session_id, seed.operator)
    assert (await _offer_view(hall, sdp))["type"] == "redirect"
    mark = hall.mark()
    await speaker.send("grant_floor", point_id=seed.point_a.id)
    await hall.expect("floor_granted", since=mark)
    told = await hall.expect("renegotiate", since=mark)
    assert told["reason"] == "floor"
    # While it holds the floor it views here: its mix leaves its own voice out only here.
    assert (await _offer_view(hall, sdp))["type"] == "answer"


async def test_a_live_page_may_reach_the_relays_of_its_units_chain_only(client: TestClient, seed: Seed,
                                                                       sqlite_database: Database) -> None:
    session_id = await add_session(sqlite_database, seed, [seed.point_a.id, seed.point_b.id])
    async with sqlite_database.session() as db:
        await create_relay(db, name="relay-a", unit_slug=seed.province_a.slug, url="https://relay-a.example:8443")
    policies = {}
    for user in (seed.member, seed.member_b, seed.speaker):
        page = await client.get(f"/sessions/{session_id}/live", headers=bearer(client.app, user))
        assert page.status == 200, await page.text()
        policies[user.username] = next(part for part in page.headers["Content-Security-Policy"].split(";")
                                       if part.strip().startswith("connect-src"))
    assert "https://relay-a.example:8443" in policies["member-a"]
    assert "relay-a.example" not in policies["member-b"] and "relay-a.example" not in policies["speaker"]


async def test_a_relays_uplink_keeps_the_full_picture_whatever_its_reports_say(
        client: TestClient, seed: Seed, sqlite_database: Database) -> None:
    """A viewer on a poor link is moved to the low layer by its reports; a relay's uplink never is: it
    carries the picture of every viewer behind it (and its moving down would start a transcode at the hub)."""
    session_id = await add_session(sqlite_database, seed, [seed.point_a.id, seed.point_b.id])
    async with sqlite_database.session() as db:
        _, relay_token = await create_relay(db, name="relay-a", unit_slug=seed.province_a.slug, url=RELAY_URL)
    speaker = await connect(client, session_id, seed.speaker)
    await speaker.send("start")
    await speaker.expect("session", status="live")
    sdp = await _offer_sdp()
    uplink = await client.post(f"/api/v1/relay/sessions/{session_id}/feed", data=sdp,
                               headers={"Authorization": f"Bearer {relay_token}", "Content-Type": "application/sdp"})
    assert uplink.status == 201, await uplink.text()
    member_b = await connect(client, session_id, seed.member_b)
    assert (await _offer_view(member_b, sdp))["type"] == "answer"
    room = client.app[keys.LIVE].existing(session_id)
    assert room is not None
    endpoint = uplink.headers["Location"].rsplit("/", 1)[1]
    assert room.media.layer_policy(endpoint) is None
    viewer = room.media.endpoints(user_key(seed.member_b.id))[0]
    assert room.media.layer_policy(viewer.id) is not None
    assert room.uplinks() == {"relay-a": 1}
