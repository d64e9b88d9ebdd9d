"""One lecture through two relays on loopback: the hub and each relay a process of its own (issue 14).

The speaker publishes to the hub over WHIP-like signaling (its socket);
viewers of province A and of province B ask the hub for the program
(``POST /whep/sessions/{id}``) and are sent on with a 307 to their
province's relay, which takes the program from the hub once. Pictures and
tones are decoded at every viewer; the hub's roll call shows one uplink per
relay whatever the number of viewers behind it, and who serves whom. Then a
relay is killed (SIGKILL): within 10 s the hub serves that province itself,
and the killed relay's viewers are on record as dropped, not as leaving.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy import select

from server.storage.db import Database
from server.auth.roles import Role
from server.storage.models import BridgePoint, PresenceEvent, Unit, UnitLevel, User
from server.storage.relays import create_relay
from tests.conftest import Seed
from tests.faults.agents import token
from tests.media.clients import Publisher, Viewer, close_to, view, wait_until
from tests.processes import RelayProcess, ServerProcess, _free_port
from tests.signaling.helpers import OPENED, LiveClient, add_session, live_speaker

RED = (200, 40, 40)
GREEN = (40, 200, 40)
TONE = 440.0
HALL_TONE = 1000.0
KILL_BOUND = 10.0


class Redirected:
    """A viewer's WHEP through the hub: the 307 it got, and its resource at the relay."""

    def __init__(self) -> None:
        self.redirected_to: str | None = None
        self.resource: str | None = None


def via_hub(http: aiohttp.ClientSession, hub: str, session_id: int, bearer: str,
            seen: Redirected) -> Callable[[str], Awaitable[str]]:
    async def answer(offer: str) -> str:
        headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/sdp"}
        async with http.post(f"{hub}/whep/sessions/{session_id}", data=offer, headers=headers,
                             allow_redirects=False) as response:
            if response.status == 201:
                seen.resource = hub + response.headers["Location"]
                return await response.text()
            assert response.status == 307, (response.status, await response.text())
            seen.redirected_to = response.headers["Location"]
        # The ticket in the URL stands for the token: a client drops Authorization on another origin.
        async with http.post(seen.redirected_to, data=offer, headers={"Content-Type": "application/sdp"}) as response:
            assert response.status == 201, (response.status, await response.text())
            relay = seen.redirected_to.split("/whep/", 1)[0]
            seen.resource = relay + response.headers["Location"]
            return await response.text()

    return answer


async def join_hub(http: aiohttp.ClientSession, hub: str, session_id: int, bearer: str) -> LiveClient:
    ws = await http.ws_connect(f"{hub}/ws/sessions/{session_id}", headers={"Authorization": f"Bearer {bearer}"})
    live = LiveClient(ws)
    OPENED.append(live)
    await live.send("join")
    await live.expect("welcome")
    return live


async def roll_call(http: aiohttp.ClientSession, hub: str, session_id: int, bearer: str) -> dict[str, Any]:
    async with http.get(f"{hub}/api/v1/sessions/{session_id}/roll-call",
                        headers={"Authorization": f"Bearer {bearer}"}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def presence(database: Database, session_id: int, user_id: int) -> list[str]:
    async with database.session() as db:
        rows = await db.scalars(select(PresenceEvent.kind).where(PresenceEvent.session_id == session_id,
                                                                 PresenceEvent.user_id == user_id,
                                                                 PresenceEvent.endpoint_kind == "whep")
                                .order_by(PresenceEvent.at, PresenceEvent.id))
        return list(rows)


async def hub_redirects(http: aiohttp.ClientSession, hub: str, session_id: int, bearer: str) -> bool:
    """Whether the hub still sends this viewer to a relay: an offer it cannot use, 307 or 400."""
    headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/sdp"}
    async with http.post(f"{hub}/whep/sessions/{session_id}", data="v=0\r\n", headers=headers,
                         allow_redirects=False) as response:
        assert response.status in (307, 400), (response.status, await response.text())
        return response.status == 307


def sees_the_program(viewer: Viewer) -> bool:
    return viewer.frames >= 30 and close_to(viewer.colours[-1], RED) and viewer.tone_energy(TONE) > 0.5


@dataclass
class Cascade:
    """A hub and its relays as processes, the speaker live and publishing, the viewers the test opens."""

    hub: ServerProcess
    relays: dict[str, RelayProcess]
    http: aiohttp.ClientSession
    speaker: LiveClient
    viewers: list[Viewer] = field(default_factory=list)


@contextlib.asynccontextmanager
async def cascade(settings: Any, database: Database, seed: Seed, session_id: int,
                  relays: list[tuple[str, str, str | None]]) -> AsyncIterator[Cascade]:
    """``relays``: (name, unit slug, parent) registered, started, and carrying the session by the hub's word."""
    ports = {name: _free_port() for name, _, _ in relays}
    tokens = {}
    for name, unit, parent in relays:
        async with database.session() as db:
            _, tokens[name] = await create_relay(db, name=name, unit_slug=unit, url=f"http://127.0.0.1:{ports[name]}",
                                                 parent_name=parent)
    hub = ServerProcess(settings.data_dir, settings.effective_database_url,
                        BRIDGECAST_CASCADE_HEARTBEAT_SECONDS="0.5", BRIDGECAST_CASCADE_TTL_SECONDS="2")
    processes = {name: RelayProcess(settings.data_dir / name, hub.url, tokens[name], port=ports[name])
                 for name, _, _ in relays}
    http = aiohttp.ClientSession()
    publisher: Publisher | None = None
    world: Cascade | None = None
    try:
        await hub.start()
        speaker = await live_speaker(http, hub.url, session_id, token(seed.speaker))
        publisher = await speaker.publish(RED, TONE)
        for process in processes.values():
            await process.start()
        deadline = time.monotonic() + 30
        while True:
            board = await roll_call(http, hub.url, session_id, token(seed.speaker))
            if {r["name"]: r["carrying"] for r in board["relays"]} == dict.fromkeys(processes, True):
                break
            assert time.monotonic() < deadline, [await r.health() for r in processes.values()]
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.6)  # the hub reads the registry at most every 0.5 s (RelayWatch.alive)
        world = Cascade(hub, processes, http, speaker)
        yield world
    finally:
        for viewer in world.viewers if world is not None else []:
            await viewer.close()
        if publisher is not None:
            await publisher.close()
        for live in list(OPENED):
            live._reader.cancel()
        await http.close()
        for process in processes.values():
            process.stop()
        hub.stop()


async def test_a_lecture_through_two_relays_one_uplink_each_and_a_killed_relay_costs_seconds(
        settings: Any, seed: Seed, sqlite_database: Database) -> None:
    database = sqlite_database
    session_id = await add_session(database, seed, [seed.point_a.id, seed.point_b.id])
    async with cascade(settings, database, seed, session_id, [("relay-a", "tinh-a", None),
                                                              ("relay-b", "tinh-b", None)]) as world:
        hub, http, speaker, viewers = world.hub, world.http, world.speaker, world.viewers
        relays = {"a": world.relays["relay-a"], "b": world.relays["relay-b"]}
        # Two viewers of province A (a member, the hall), one of province B.
        seen = {"member-a": Redirected(), "hall-a": Redirected(), "member-b": Redirected()}
        users = {"member-a": seed.member, "hall-a": seed.operator, "member-b": seed.member_b}
        for who, user in users.items():
            viewers.append(await view(via_hub(http, hub.url, session_id, token(user), seen[who])))
        assert seen["member-a"].redirected_to and seen["member-a"].redirected_to.startswith(relays["a"].url)
        assert seen["hall-a"].redirected_to and seen["hall-a"].redirected_to.startswith(relays["a"].url)
        assert seen["member-b"].redirected_to and seen["member-b"].redirected_to.startswith(relays["b"].url)
        try:
            await wait_until(lambda: all(sees_the_program(v) for v in viewers), timeout=30, step=0.1)
        except AssertionError:
            raise AssertionError([(v.frames, v.colours[-1:], round(v.tone_energy(TONE), 2)) for v in viewers]
                                 + [hub.log.read_text()[-3000:]]) from None

        # The hub: one uplink per relay, and who serves whom.
        board = await roll_call(http, hub.url, session_id, token(seed.speaker))
        uplinks = {r["name"]: r["uplinks"] for r in board["relays"]}
        assert uplinks == {"relay-a": 1, "relay-b": 1}, board["relays"]
        served = {p["bridge_point"]: p["served_by"] for p in board["points"]}
        assert served[seed.point_a.id] == "relay-a" and served[seed.point_b.id] == "hub", served
        for relay in relays.values():
            health = (await relay.health())["sessions"][str(session_id)]
            assert health["uplinks_made"] == 1 and health["uplink_video_frames"] > 0, health
        assert (await relays["a"].health())["sessions"][str(session_id)]["viewers"] == 2
        print(f"\ncascade: 3 viewers on 2 relays, {[v.frames for v in viewers]} frames decoded; the hub holds "
              f"{uplinks} uplinks")

        # The floor to hall A: viewers behind relay A see and hear it; the hall itself, which watched
        # through the relay, is sent back to the hub, where it hears the speaker without its own voice.
        hall = await join_hub(http, hub.url, session_id, token(seed.operator))
        mark = hall.mark()
        await speaker.send("grant_floor", point_id=seed.point_a.id)
        await hall.expect("floor_granted", since=mark)
        hall_camera = await hall.publish(GREEN, HALL_TONE)
        await wait_until(lambda: close_to(viewers[0].colours[-1], GREEN) and viewers[0].tone_energy(HALL_TONE) > 0.2
                         and viewers[0].tone_energy(TONE) > 0.2, timeout=20, step=0.1)
        deadline = time.monotonic() + 10
        while (await relays["a"].health())["sessions"][str(session_id)]["viewers"] != 1:
            assert time.monotonic() < deadline, "the floor holder's view through its relay was not ended"
            await asyncio.sleep(0.1)
        at_the_hub = Redirected()
        viewers.append(await view(via_hub(http, hub.url, session_id, token(seed.operator), at_the_hub)))
        assert at_the_hub.redirected_to is None, "the floor holder was sent to a relay"
        await wait_until(lambda: viewers[-1].frames >= 15 and viewers[-1].tone_energy(TONE) > 0.5, timeout=20)
        assert viewers[-1].tone_energy(HALL_TONE) < 0.02, "the floor holder hears itself"
        print(f"cascade: the floor to hall A reached relay A's viewers (green, {HALL_TONE:.0f} Hz heard); the hall "
              f"watches at the hub, its own voice {viewers[-1].tone_energy(HALL_TONE):.3f} of its mix")
        await hall_camera.close()
        await speaker.send("revoke_floor")

        # A viewer that leaves at its relay leaves at the hub (a leave, not a drop).
        member_b = seen["member-b"].resource
        assert member_b is not None
        async with http.delete(member_b) as response:
            assert response.status == 200
        deadline = time.monotonic() + 10
        while "leave" not in await presence(database, session_id, seed.member_b.id):
            assert time.monotonic() < deadline, await presence(database, session_id, seed.member_b.id)
            await asyncio.sleep(0.2)

        # Relay A killed: within 10 s the hub serves province A itself; its viewers are on record as dropped.
        relays["a"].kill()
        killed = time.monotonic()
        while await hub_redirects(http, hub.url, session_id, token(seed.member)):
            assert time.monotonic() - killed < KILL_BOUND + 5, "the hub still sends province A to a dead relay"
            await asyncio.sleep(0.1)
        redirected_for = time.monotonic() - killed
        direct = Redirected()
        viewers.append(await view(via_hub(http, hub.url, session_id, token(seed.member), direct)))
        assert direct.redirected_to is None and direct.resource and direct.resource.startswith(hub.url)
        await wait_until(lambda: sees_the_program(viewers[-1]), timeout=20, step=0.1)
        print(f"cascade: relay A killed; the hub serves province A itself {redirected_for:.1f} s later "
              f"(bound {KILL_BOUND:.0f} s)")
        assert redirected_for <= KILL_BOUND
        # Member A watched through relay A until it died: a drop (the gap), then its view at the hub.
        deadline = time.monotonic() + 10
        while "drop" not in await presence(database, session_id, seed.member.id):
            assert time.monotonic() < deadline, await presence(database, session_id, seed.member.id)
            await asyncio.sleep(0.2)
        kinds = await presence(database, session_id, seed.member.id)
        assert kinds[:2] == ["join", "drop"], kinds
        # Hall A's view through the relay ended when it took the floor (it moved to the hub), not with the relay.
        assert (await presence(database, session_id, seed.operator.id))[:3] == ["join", "leave", "join"]
        # Province B's relay never noticed: the same uplink, still carrying.
        health = (await relays["b"].health())["sessions"][str(session_id)]
        assert health["carrying"] and health["uplinks_made"] == 1, health
        board = await roll_call(http, hub.url, session_id, token(seed.speaker))
        assert [r["name"] for r in board["relays"]] == ["relay-b"], board["relays"]
        assert {p["bridge_point"]: p["served_by"] for p in board["points"]}[seed.point_a.id] == "hub"


async def test_three_tiers_a_commune_watches_through_its_relay_below_the_provinces(
        settings: Any, seed: Seed, sqlite_database: Database, password_hash: str) -> None:
    """Hub → relay of province A → relay of a commune of A: the commune's member is sent to its own relay,
    which takes its uplink from the province's relay; the hub holds one uplink, the province's."""
    database = sqlite_database
    async with database.session() as db:
        commune = Unit(name="Xã C", slug="xa-c", level=UnitLevel.COMMUNE, parent_id=seed.province_a.id)
        db.add(commune)
        await db.flush()
        point = BridgePoint(name="Điểm cầu xã C", slug="diem-xa-c", unit_id=commune.id)
        db.add(point)
        await db.flush()
        member = User(username="member-c", full_name="Member C", role=Role.MEMBER, unit_id=commune.id,
                      password_hash=password_hash)
        db.add(member)
        await db.commit()
        point_id = point.id
    session_id = await add_session(database, seed, [seed.point_a.id, point_id])
    async with cascade(settings, database, seed, session_id, [("relay-a", "tinh-a", None),
                                                              ("relay-c", "xa-c", "relay-a")]) as world:
        hub, http, viewers = world.hub, world.http, world.viewers
        relays = {"a": world.relays["relay-a"], "c": world.relays["relay-c"]}
        seen = {"c": Redirected(), "a": Redirected()}
        viewers.append(await view(via_hub(http, hub.url, session_id, token(member), seen["c"])))
        viewers.append(await view(via_hub(http, hub.url, session_id, token(seed.member), seen["a"])))
        # The nearest relay up the viewer's chain: the commune's own, then the province's.
        assert seen["c"].redirected_to and seen["c"].redirected_to.startswith(relays["c"].url)
        assert seen["a"].redirected_to and seen["a"].redirected_to.startswith(relays["a"].url)
        try:
            await wait_until(lambda: all(sees_the_program(v) for v in viewers), timeout=30, step=0.1)
        except AssertionError:
            raise AssertionError([(v.frames, v.colours[-1:], round(v.tone_energy(TONE), 2)) for v in viewers]
                                 ) from None
        board = await roll_call(http, hub.url, session_id, token(seed.speaker))
        # The hub feeds the province's relay only; the commune's takes its uplink there.
        assert {r["name"]: r["uplinks"] for r in board["relays"]} == {"relay-a": 1, "relay-c": 0}, board["relays"]
        province = (await relays["a"].health())["sessions"][str(session_id)]
        assert province["children"] == ["relay-c"], province
        commune_health = (await relays["c"].health())["sessions"][str(session_id)]
        assert commune_health["uplinks_made"] == 1 and commune_health["viewers"] == 1, commune_health
        print(f"\ncascade, three tiers: the commune's member decoded {viewers[0].frames} frames through two relays")

        # The commune's relay loses its parent (SIGKILL): it remakes its uplink with backoff, and its viewer
        # keeps its connection, and gets the program back on it when the parent returns.
        relays["a"].kill()
        lost_at = time.monotonic()
        while (await relays["c"].health())["sessions"][str(session_id)]["carrying"]:
            assert time.monotonic() - lost_at < 15, "the commune's relay did not notice its parent was gone"
            await asyncio.sleep(0.2)
        noticed = time.monotonic() - lost_at
        await relays["a"].start()
        back_at = time.monotonic()
        frames_before = viewers[0].frames
        await wait_until(lambda: viewers[0].frames > frames_before + 30 and sees_the_program(viewers[0]),
                         timeout=30, step=0.1)
        back = time.monotonic() - back_at
        commune_health = (await relays["c"].health())["sessions"][str(session_id)]
        assert commune_health["uplinks_made"] == 2 and commune_health["viewers"] == 1, commune_health
        assert viewers[0].pc.connectionState == "connected"
        print(f"cascade: the commune's relay noticed its parent's loss in {noticed:.1f} s; its viewer, on the same "
              f"connection, had the program back {back:.1f} s after the parent restarted")


# The hub's pages: the socket at the hub, the program from the relay ------------------------------------

SERVED_BY = "() => { const l = window.Bridgecast && Bridgecast.hall && Bridgecast.hall.client.peers.view; " \
            "return l && l.state === 'connected' ? l.servedBy : null; }"
# The program's centre pixel is the speaker's red (the relay forwards the hub's picture untouched).
SHOWS_RED = "() => { const v = document.querySelector('#program'); if (!v || !v.videoWidth) return false; " \
            "const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight; " \
            "const g = c.getContext('2d'); g.drawImage(v, 0, 0); " \
            "const d = g.getImageData(c.width >> 1, c.height >> 1, 1, 1).data; " \
            "return d[0] > 150 && d[1] < 100 && d[2] < 100; }"


async def _served_by(page: Any, expected: str, timeout: float) -> float:
    """Wait until the hall page's view is connected to ``expected`` ("hub" or a relay's origin) and shows red."""
    started = time.monotonic()
    await page.wait_for_function(f"() => ({SERVED_BY})() === {expected!r}", timeout=timeout * 1000)
    await page.wait_for_function(SHOWS_RED, timeout=timeout * 1000)
    return time.monotonic() - started


async def test_a_hall_page_views_at_its_relay_and_at_the_hub_when_the_relay_dies(
        settings: Any, seed: Seed, sqlite_database: Database) -> None:
    """Headless Chromium, the hall of province A: its socket at the hub, its program from relay A; the floor
    brings its view to the hub (mix-minus); relay A killed, the page views at the hub by itself within 10 s."""
    from playwright.async_api import async_playwright

    from tests.conftest import TEST_PASSWORD
    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

    database = sqlite_database
    session_id = await add_session(database, seed, [seed.point_a.id, seed.point_b.id])
    async with cascade(settings, database, seed, session_id, [("relay-a", "tinh-a", None)]) as world, \
            async_playwright() as playwright:
        hub, http, speaker, relay = world.hub, world.http, world.speaker, world.relays["relay-a"]
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 720}, locale="vi-VN")
            page = await context.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            await page.goto(f"{hub.url}/login")
            await page.fill("input[name=username]", seed.operator.username)
            await page.fill("input[name=password]", TEST_PASSWORD)
            await page.click("form[action='/login'] button[type=submit]")
            await page.wait_for_url(f"{hub.url}/")
            live = f"{hub.url}/sessions/{session_id}/live"
            await page.goto(live)

            # The program comes from the relay; the hub holds the hall's socket, not its media.
            try:
                await _served_by(page, relay.url, 30)
            except Exception:
                raise AssertionError(console[-20:]) from None
            health = (await relay.health())["sessions"][str(session_id)]
            assert health["viewers"] == 1, health
            # The board: served by relay A, with the link figures the page reports over its socket at the hub.
            deadline = time.monotonic() + 15
            while True:
                board = await roll_call(http, hub.url, session_id, token(seed.speaker))
                point = next(p for p in board["points"] if p["bridge_point"] == seed.point_a.id)
                if point["served_by"] == "relay-a" and (point["frames_decoded"] or 0) > 0 and point["fps"]:
                    break
                assert time.monotonic() < deadline, point
                await asyncio.sleep(0.5)
            await page.screenshot(path=str(settings.data_dir / "hall-through-relay.png"))

            # The floor: the hall's view comes to the hub, where its mix leaves its own voice out.
            await speaker.send("grant_floor", point_id=seed.point_a.id)
            moved = await _served_by(page, "hub", 15)
            deadline = time.monotonic() + 10
            while (await relay.health())["sessions"][str(session_id)]["viewers"] != 0:
                assert time.monotonic() < deadline, "the floor holder's view at its relay was not ended"
                await asyncio.sleep(0.2)
            print(f"\ncascade, hall page: viewed at relay A; given the floor, at the hub {moved:.1f} s later")
            await speaker.send("revoke_floor")

            # Back on its relay after a reload; then the relay is killed: the page views at the hub by itself.
            await page.reload()
            await _served_by(page, relay.url, 30)
            relay.kill()
            back = await _served_by(page, "hub", KILL_BOUND + 5)
            print(f"cascade, hall page: relay A killed; the page viewed at the hub {back:.1f} s later "
                  f"(bound {KILL_BOUND:.0f} s)")
            assert back <= KILL_BOUND
            board = await roll_call(http, hub.url, session_id, token(seed.speaker))
            point = next(p for p in board["points"] if p["bridge_point"] == seed.point_a.id)
            assert point["served_by"] == "hub" and point["roll_call"] == "receiving", point
            await context.close()
        finally:
            await browser.close()
