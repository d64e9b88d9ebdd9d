"""Clients whose clocks are 10 minutes off, fast or slow: nothing changes.

Every time that counts is the server's: attendance, check-in windows, token
expiry, roster and question times. What a client's clock touches is its
own arithmetic: the ping's ``t`` is the browser's ``Date.now()``, echoed by
the server, and the page subtracts it from its own clock again, so an offset
cancels out.

* On the wire (the in-process server): a skewed ping ``t`` comes back as sent
  and gives a normal round trip in the client's own clock; a client that
  even states its skewed clock (a ``Date`` header) changes no time the server
  records or sends; the check-in code's window comes from the server
  (``seconds_left`` is relative) and the code is accepted; the server's
  tokens are accepted and say how long they last in seconds (``expires_in``),
  and its cookies expire by ``Max-Age``, never by a date a wrong clock would
  misread.
* In Chromium, with the page's clock moved 10 minutes (an init script
  shifting ``Date``): the hall's screen shows a normal round trip and
  quality and the server's current check-in code, and a phone 10 minutes
  fast checks in from the hall's QR link.
* The speaker's console "live for" clock was the one place a client clock
  showed (the browser's clock minus the server's ``actual_start``): it now
  counts from the server's ``live_seconds`` with the page's monotonic
  clock, and the test holds it to the right time with the clock 10 minutes
  off either way.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from yarl import URL

from server import keys
from server.app import create_app
from server.auth.tokens import verify_token
from server.storage.db import Database
from server.storage.models import Checkin, PresenceEvent
from tests.conftest import TEST_PASSWORD, Seed, bearer, make_settings
from tests.media.browsers import CHROMIUM, CHROMIUM_ARGS
from tests.signaling.helpers import OPENED, LiveClient, add_session, connect

SKEW = 600.0  # seconds
SKEWS = (SKEW, -SKEW)
NEAR = timedelta(seconds=5)  # a server time "now" within this of the test's clock (the same machine's)


def _skewed_date(skew: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=skew), usegmt=True)


def _near_now(value: datetime | str) -> bool:
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return abs(at - datetime.now(UTC)) < NEAR


async def _live_client(aiohttp_client: Any, settings: Any, seed: Seed) -> tuple[TestClient, int]:
    client = await aiohttp_client(create_app(make_settings(settings.data_dir, ice={"addresses": "127.0.0.1"})))
    session_id = await add_session(client.app[keys.DATABASE], seed, [seed.point_a.id])
    started = await client.post(f"/api/v1/sessions/{session_id}/start", headers=bearer(client.app, seed.speaker))
    assert started.status == 200
    return client, session_id


async def test_on_the_wire_a_client_clock_10_minutes_off_changes_nothing(
        aiohttp_client: Any, settings: Any, seed: Seed, sqlite_database: Database) -> None:
    client, session_id = await _live_client(aiohttp_client, settings, seed)
    app = client.app
    speaker = await connect(client, session_id, seed.speaker)
    window = app[keys.SETTINGS].attendance.checkin_window_seconds
    for skew in SKEWS:
        # The member's socket: its "Date.now()" is the skewed clock; it even says so in a Date header.
        headers = {**bearer(app, seed.member), "Date": _skewed_date(skew)}
        ws = await client.ws_connect(f"/ws/sessions/{session_id}", headers=headers)
        member = LiveClient(ws)
        OPENED.append(member)
        await member.send("join")
        await member.expect("welcome")
        for _ in range(3):
            sent = int((time.time() + skew) * 1000)
            mark = member.mark()
            await member.send("ping", t=sent)
            pong = await member.expect("pong", since=mark)
            rtt = (time.time() + skew) * 1000 - pong["t"]  # what the page computes, in its own clock
            assert pong["t"] == sent and 0 <= rtt < 400, (skew, pong, rtt)

        # Times the server sends and records are its own.
        mark = speaker.mark()
        await member.send("question", text=f"Đồng hồ lệch {skew:+.0f} s?")
        question = await speaker.expect("question", since=mark)
        assert _near_now(question["at"]), (skew, question)
        await asyncio.sleep(0.3)  # the hosts' board, refreshed at most 4 times a second
        members = (speaker.last("roster") or {}).get("members", {})
        assert members.get("connected") == 1, speaker.last("roster")

        # The hall's code: its window and expiry by the server's clock; the member's typed code is accepted.
        state = await (await client.get(f"/api/v1/sessions/{session_id}/checkin-code",
                                        headers={**bearer(app, seed.operator), "Date": _skewed_date(skew)})).json()
        assert 0 < state["seconds_left"] <= window
        rotates = datetime.fromisoformat(state["rotates_at"])
        assert abs((rotates - datetime.now(UTC)).total_seconds() - state["seconds_left"]) < 2, state
        checked = await client.post("/api/v1/checkins", json={"code": state["code"]}, headers=headers)
        assert checked.status in (200, 201), await checked.text()
        body = await checked.json()
        assert _near_now(body["checked_in_at"]), body
        await member.send("leave")
        await asyncio.sleep(0.2)

    async with sqlite_database.session() as db:
        rows = list(await db.scalars(select(PresenceEvent).where(PresenceEvent.session_id == session_id,
                                                                 PresenceEvent.user_id == seed.member.id)))
        checkins = list(await db.scalars(select(Checkin).where(Checkin.session_id == session_id)))
    assert sorted(r.kind for r in rows) == ["join", "join", "leave", "leave"]
    assert all(_near_now(r.at) for r in rows), [r.at for r in rows]
    assert checkins and all(_near_now(c.checked_in_at) for c in checkins)

    # Tokens: issued by the server's clock, said to last in seconds, accepted whatever the client's clock.
    for skew in SKEWS:
        response = await client.post("/api/v1/auth/token", json={"username": seed.member.username,
                                                             "password": TEST_PASSWORD},
                                     headers={"Date": _skewed_date(skew)})
        assert response.status == 201, await response.text()
        issued = await response.json()
        claims = verify_token(app[keys.JWT_SECRET], issued["token"])
        assert abs(claims.issued_at - time.time()) < 5
        assert issued["expires_in"] == claims.expires_at - claims.issued_at
        me = await client.get(f"/api/v1/sessions/{session_id}",
                              headers={"Authorization": f"Bearer {issued['token']}", "Date": _skewed_date(skew)})
        assert me.status == 200
    # Cookies a browser keeps: each lasts Max-Age seconds from when the browser got it, by its own clock.
    login = await client.get("/login")
    csrf = login.cookies["bc_csrf"].value
    signed = await client.post("/login", data={"username": seed.member.username, "password": TEST_PASSWORD,
                                               "csrf_token": csrf, "next": "/"}, allow_redirects=False)
    code = await (await client.get(f"/api/v1/sessions/{session_id}/checkin-code",
                                   headers=bearer(app, seed.operator))).json()
    scanned = await client.get(URL(code["url"]).path_qs, allow_redirects=False)
    set_cookies = [v for r in (login, signed, scanned) for v in r.headers.getall("Set-Cookie", [])]
    names = {c.split("=", 1)[0] for c in set_cookies}
    assert {"bc_csrf", "bc_token", "bc_checkin"} <= names, names
    for cookie in set_cookies:
        attributes = cookie.lower()
        if "max-age=0" in attributes or '=""' in attributes:
            continue  # a deletion
        assert "max-age=" in attributes and "expires=" not in attributes, cookie
    await speaker.close()


# In the browser -------------------------------------------------------------------------------------------

BROWSER_ARGS = [*CHROMIUM_ARGS[1:], "--allow-loopback-in-peer-connection", "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream"]


def _shift_clock(skew: float) -> str:
    """An init script: the page's Date (now, new Date(), Date()) runs ``skew`` seconds off, as a wrong clock does."""
    return f"""(() => {{
      const skew = {int(skew * 1000)};
      const Real = Date;
      function Skewed(...args) {{
        if (!new.target) return new Real(Real.now() + skew).toString();
        return args.length ? new Real(...args) : new Real(Real.now() + skew);
      }}
      Skewed.prototype = Real.prototype;
      Skewed.now = () => Real.now() + skew;
      Skewed.parse = Real.parse;
      Skewed.UTC = Real.UTC;
      window.Date = Skewed;
    }})();"""


async def _signed_in(browser: Any, base: str, username: str, skew: float, **context: Any) -> Any:
    ctx = await browser.new_context(locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", **context)
    await ctx.add_init_script(_shift_clock(skew))
    page = await ctx.new_page()
    page.set_default_timeout(15_000)
    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", TEST_PASSWORD)
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_url(f"{base}/")
    offset = await page.evaluate("() => Date.now()") / 1000 - time.time()
    assert abs(offset - skew) < 5, (offset, skew)  # the page's clock really is off
    return page


@pytest.fixture
async def chromium() -> Any:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        yield browser
        await browser.close()


@pytest.mark.e2e
async def test_in_the_browser_a_hall_and_a_phone_10_minutes_off_work_as_usual(
        aiohttp_client: Any, settings: Any, seed: Seed, chromium: Any) -> None:
    client, session_id = await _live_client(aiohttp_client, settings, seed)
    base = str(client.make_url("")).rstrip("/")
    live = f"{base}/sessions/{session_id}/live"
    halls = []
    for skew in SKEWS:
        hall = await _signed_in(chromium, base, seed.operator.username, skew)
        await hall.goto(live)
        halls.append((skew, hall))
    for skew, hall in halls:
        # The round trip, as the hall's connection test and its bar show it.
        await hall.wait_for_function("() => window.Bridgecast.hall.client.rtt !== null", timeout=20_000)
        rtt = await hall.evaluate("() => window.Bridgecast.hall.client.rtt")
        quality = await hall.get_attribute("#bar-conn", "data-quality")
        check = await hall.get_attribute("#check-rtt", "data-ok")
        print(f"\nhall with its clock {skew:+.0f} s off: rtt {rtt} ms, quality {quality}, check {check}")
        assert 0 <= rtt < 400 and quality in ("good", "fair") and check in ("yes", "warn"), (skew, rtt, quality)
        # The check-in code shown is the server's current one.
        state = await (await client.get(f"/api/v1/sessions/{session_id}/checkin-code",
                                        headers=bearer(client.app, seed.operator))).json()
        shown = await hall.get_attribute("#checkin-code", "data-code")
        assert shown == state["code"] or state["seconds_left"] > 44, (shown, state)  # unless it just rotated

    # A phone 10 minutes fast scans the hall's QR link and is checked in.
    _, hall = halls[0]
    link = await hall.get_attribute("#checkin-panel", "data-url")
    assert link is not None
    phone_ctx = await chromium.new_context(locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", is_mobile=True,
                                           has_touch=True, viewport={"width": 390, "height": 844})
    await phone_ctx.add_init_script(_shift_clock(SKEW))
    phone = await phone_ctx.new_page()
    phone.set_default_timeout(15_000)
    await phone.goto(link)
    await phone.wait_for_url(f"{base}/login?next=/checkin")
    await phone.fill("input[name=username]", seed.member.username)
    await phone.fill("input[name=password]", TEST_PASSWORD)
    await phone.click("form[action='/login'] button[type=submit]")
    await phone.wait_for_url(f"{base}/checkin?done=in")
    await phone_ctx.close()
    for _, hall in halls:
        await hall.context.close()


@pytest.mark.e2e
async def test_the_consoles_live_clock_does_not_follow_the_browsers_clock(
        aiohttp_client: Any, settings: Any, seed: Seed, chromium: Any) -> None:
    client, session_id = await _live_client(aiohttp_client, settings, seed)
    base = str(client.make_url("")).rstrip("/")
    shown = {}
    for skew in SKEWS:
        console = await _signed_in(chromium, base, seed.speaker.username, skew)
        await console.goto(f"{base}/sessions/{session_id}/live")
        await console.wait_for_selector("#live-clock:not([hidden])")
        await asyncio.sleep(1.2)
        shown[skew] = (await console.inner_text("#live-clock")).strip()
        await console.context.close()
    print(f"\nthe console's live clock, a few seconds after the start: {shown}")
    # Live for a few seconds, whatever the browser's clock says.
    def seconds(text: str) -> int:
        minutes, secs = text.split()[-1].split(":")[-2:]
        return int(minutes) * 60 + int(secs)

    assert all(0 < seconds(text) < 60 for text in shown.values()), shown
