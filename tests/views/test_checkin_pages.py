"""Check-in through the pages: the QR link, a sign-in in between, the phone page, the operator's list."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server import keys
from server.attendance.checkin import TICKET_SECONDS
from server.live.lifecycle import SessionAction
from server.storage.models import AttendanceAudit, Checkin
from tests.conftest import TEST_PASSWORD, Seed, bearer, csrf_of, login
from tests.views.checkin_helpers import (  # noqa: F401 (fixtures)
    WINDOW,
    Clock,
    app,
    clock,
    hall_code,
    new_session,
)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def confirm_scan(client: TestClient, csrf: str) -> Any:
    """What checkin.js does on the page: post the remembered scan."""
    return await client.post("/checkin", data={"csrf_token": csrf, "scan": "1"}, allow_redirects=False)


async def test_a_scan_before_signing_in_is_kept_through_the_login(client: TestClient, seed: Seed,
                                                                   clock: Clock) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id], action=SessionAction.START)
    shown = await hall_code(client, seed, session_id)
    scan = await client.get(path_of(shown["url"]), allow_redirects=False)
    assert scan.status == 303 and scan.headers["Location"] == "/login?next=/checkin"
    cookie = scan.cookies["bc_checkin"]
    assert cookie["httponly"] and cookie["path"] == "/checkin" and int(cookie["max-age"]) == TICKET_SECONDS
    # A slow sign-in: the screen rotates three times meanwhile.
    clock.now += 3 * WINDOW
    csrf = await csrf_of(client)
    signed_in = await client.post("/login", data={"username": "member-a", "password": TEST_PASSWORD,
                                                  "csrf_token": csrf, "next": "/checkin"}, allow_redirects=False)
    assert signed_in.headers["Location"] == "/checkin"
    page = await client.get("/checkin")
    html = await page.text()
    assert page.status == 200 and "data-autosubmit" in html and seed.point_a.name in html
    done = await confirm_scan(client, csrf)
    assert done.status == 303 and done.headers["Location"] == "/checkin?done=in"
    success = await (await client.get("/checkin?done=in")).text()
    assert "Đã điểm danh" in success and seed.point_a.name in success
    assert 'action="/checkin/' in success  # the check-out button
    async with client.app[keys.DATABASE].session() as db:
        checkin = await db.scalar(select(Checkin))
    assert checkin is not None and checkin.source.value == "qr" and checkin.user_id == seed.member.id
    # The scan is forgotten once used: a second post has nothing to confirm.
    again = await confirm_scan(client, csrf)
    assert again.status == 400 and 'data-refusal="expired_code"' in await again.text()


async def test_a_signed_in_member_scans_and_the_page_confirms(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id])
    csrf = await login(client, "member-a")
    shown = await hall_code(client, seed, session_id)
    scan = await client.get(path_of(shown["url"]), allow_redirects=False)
    assert scan.headers["Location"] == "/checkin"
    page = await client.get("/checkin")
    assert "js/checkin.js" in await page.text()
    # GET alone never checks in.
    async with client.app[keys.DATABASE].session() as db:
        assert await db.scalar(select(Checkin)) is None
    # Without the CSRF token the confirmation is refused.
    forged = await client.post("/checkin", data={"scan": "1"}, allow_redirects=False)
    assert forged.status == 403
    assert (await confirm_scan(client, csrf)).headers["Location"] == "/checkin?done=in"


async def test_an_old_scan_or_an_expired_link_is_refused_kindly(client: TestClient, seed: Seed, clock: Clock) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id])
    shown = await hall_code(client, seed, session_id)
    clock.now += 2 * WINDOW
    expired = await client.get(path_of(shown["url"]))
    html = await expired.text()
    assert expired.status == 400 and 'data-refusal="expired_code"' in html
    assert "Mã này đã hết hạn" in html  # in the member's language, not a bare error page
    # A scan kept longer than the ticket lasts.
    csrf = await login(client, "member-a")
    fresh = await hall_code(client, seed, session_id)
    await client.get(path_of(fresh["url"]), allow_redirects=False)
    clock.now += TICKET_SECONDS + 1
    page = await client.get("/checkin")
    assert page.status == 400 and 'data-refusal="expired_code"' in await page.text()
    assert (await confirm_scan(client, csrf)).status == 400
    tampered = await client.get("/checkin?t=c1.1.1.1.forged")
    assert tampered.status == 400 and 'data-refusal="wrong_code"' in await tampered.text()


async def test_the_code_form_and_its_refusals(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id])
    csrf = await login(client, "member-a")
    await client.post("/lang", data={"csrf_token": csrf, "locale": "en", "next": "/"})
    form = await client.get("/checkin")
    assert 'name="code"' in await form.text()
    wrong = await client.post("/checkin", data={"csrf_token": csrf, "code": "000000"
                              if (await hall_code(client, seed, session_id))["code"] != "000000" else "111111"})
    text = await wrong.text()
    assert wrong.status == 400 and "This code is not right" in text and 'value="' in text
    for bad in ("", "12", "x" * 2000):
        response = await client.post("/checkin", data={"csrf_token": csrf, "code": bad})
        assert 400 <= response.status < 500
    code = (await hall_code(client, seed, session_id))["code"]
    done = await client.post("/checkin", data={"csrf_token": csrf, "code": code}, allow_redirects=False)
    assert done.headers["Location"] == "/checkin?done=in"
    again = await client.post("/checkin", data={"csrf_token": csrf, "code": code}, allow_redirects=False)
    assert again.headers["Location"] == "/checkin?done=again"
    assert "You were already checked in" in await (await client.get("/checkin?done=again")).text()


async def test_too_many_wrong_codes_on_the_page(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id])
    right = (await hall_code(client, seed, session_id))["code"]
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    csrf = await login(client, "member-a")
    for _ in range(10):
        await client.post("/checkin", data={"csrf_token": csrf, "code": wrong})
    limited = await client.post("/checkin", data={"csrf_token": csrf, "code": right})
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    assert 'data-refusal="rate_limited"' in await limited.text()


async def test_other_roles_are_told_to_use_the_list(client: TestClient, seed: Seed) -> None:
    await login(client, "op-a")
    page = await client.get("/checkin")
    html = await page.text()
    assert page.status == 403 and 'data-refusal="not_member"' in html and "Chỉ học viên" in html


async def test_checking_out_from_the_phone(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id], action=SessionAction.START)
    csrf = await login(client, "member-a")
    code = (await hall_code(client, seed, session_id))["code"]
    await client.post("/checkin", data={"csrf_token": csrf, "code": code})
    async with client.app[keys.DATABASE].session() as db:
        checkin = await db.scalar(select(Checkin))
    assert checkin is not None
    out = await client.post(f"/checkin/{checkin.id}/checkout", data={"csrf_token": csrf}, allow_redirects=False)
    assert out.headers["Location"] == "/checkin?done=out"
    page = await (await client.get("/checkin?done=out")).text()
    assert "Bạn đã kết thúc điểm danh" in page and f"/checkin/{checkin.id}/checkout" not in page


async def test_the_operators_list_removes_and_marks_with_an_audit(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id, seed.point_b.id], action=SessionAction.START)
    code = (await hall_code(client, seed, session_id))["code"]
    created = await client.post("/api/v1/checkins", headers=bearer(client.app, seed.member), json={"code": code})
    checkin_id = (await created.json())["id"]
    csrf = await login(client, "op-a")
    page = await client.get(f"/sessions/{session_id}/checkins")
    html = await page.text()
    assert page.status == 200 and "Điểm danh tại Điểm cầu A" in html and 'data-username="member-a"' in html
    assert "member-b" not in html  # another point's members
    removed = await client.post(f"/sessions/{session_id}/checkins/{checkin_id}/remove",
                                data={"csrf_token": csrf, "reason": "không có mặt"}, allow_redirects=False)
    assert removed.headers["Location"] == f"/sessions/{session_id}/checkins?done=removed"
    marked = await client.post(f"/sessions/{session_id}/checkins/manual",
                               data={"csrf_token": csrf, "user_id": str(seed.member.id), "from_start": "1"},
                               allow_redirects=False)
    assert marked.headers["Location"] == f"/sessions/{session_id}/checkins?done=marked"
    after = await (await client.get(f"/sessions/{session_id}/checkins?done=marked")).text()
    assert "Kỹ thuật viên đánh dấu" in after
    async with client.app[keys.DATABASE].session() as db:
        actions = [(a.action, a.reason) for a in await db.scalars(select(AttendanceAudit).order_by(AttendanceAudit.id))]
    assert actions == [("checkin_removed", "không có mặt"), ("marked_present", "")]
    # Another point's member, another point's list, a check-in of another session: refused.
    other = await client.post(f"/sessions/{session_id}/checkins/manual",
                              data={"csrf_token": csrf, "user_id": str(seed.member_b.id)}, allow_redirects=False)
    assert other.status == 403
    assert (await client.get(f"/sessions/{session_id}/checkins?point_id={seed.point_b.id}")).status == 403
    elsewhere = await new_session(client, seed, [seed.point_a.id])
    wrong_session = await client.post(f"/sessions/{elsewhere}/checkins/{checkin_id}/remove",
                                      data={"csrf_token": csrf}, allow_redirects=False)
    assert wrong_session.status == 404
    bad = await client.post(f"/sessions/{session_id}/checkins/manual", data={"csrf_token": csrf, "user_id": "x"})
    assert bad.status == 422


async def test_members_and_uninvited_operators_cannot_open_the_list(client: TestClient, seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_b.id])
    await login(client, "member-a")
    assert (await client.get(f"/sessions/{session_id}/checkins")).status == 403
    await client.post("/logout", data={"csrf_token": await csrf_of(client)})
    await login(client, "op-a")
    refused = await client.get(f"/sessions/{session_id}/checkins")
    assert refused.status == 404  # not invited: as if there were no such session


async def test_the_hall_page_shows_the_code_and_the_session_page_links_the_list(client: TestClient,
                                                                                 seed: Seed) -> None:
    session_id = await new_session(client, seed, [seed.point_a.id])
    await login(client, "op-a")
    html = await (await client.get(f"/sessions/{session_id}/live")).text()
    shown = await hall_code(client, seed, session_id)
    assert 'id="checkin-panel"' in html and f'data-url="{shown["url"]}"' in html
    assert f'data-code="{shown["code"]}"' in html and f'href="/sessions/{session_id}/checkins"' in html
    detail = await (await client.get(f"/sessions/{session_id}")).text()
    assert f'href="/sessions/{session_id}/checkins"' in detail
