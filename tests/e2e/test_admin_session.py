"""An administrator signs in, schedules a session through the pages and finds it listed."""

from typing import Any

from tests.e2e.conftest import Server


async def test_admin_creates_a_session_and_sees_it_listed(server: Server, page: Any) -> None:
    await page.goto(f"{server.url}/")
    assert "/login" in page.url  # signed out: the dashboard sends you to sign in
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", server.logins["admin"])
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_url(f"{server.url}/")

    await page.goto(f"{server.url}/sessions/new")
    title = "Hội nghị trực tuyến quý IV — kiểm thử"
    await page.fill("input[name=title]", title)
    await page.fill("textarea[name=description]", "Kiểm thử đầu cuối bằng Chromium")
    speaker = page.locator("select[name=speaker_id] option", has_text="Báo cáo viên Trung ương")
    await page.select_option("select[name=speaker_id]", value=await speaker.get_attribute("value"))
    await page.fill("input[name=scheduled_start]", "2026-12-15T08:00")
    await page.fill("input[name=scheduled_end]", "2026-12-15T11:00")
    chosen = []
    for index in (0, 4):
        box = page.locator("input[name=invited_point_ids]").nth(index)
        await box.check()
        value = await box.get_attribute("value")
        chosen.append((await page.locator(f"label:has(input[value='{value}'])").inner_text()).strip().split("\n")[0])
    await page.click("form[action='/sessions/new'] button[type=submit]")
    await page.wait_for_url("**/sessions/*?done=created")
    assert (await page.locator("h1").inner_text()).strip() == title
    detail = await page.locator("main").inner_text()
    for name in chosen:
        assert name in detail

    await page.goto(f"{server.url}/sessions")
    row = page.locator("table tr", has_text=title)
    assert await row.count() == 1
    text = await row.inner_text()
    assert "15/12/2026" in text and "08:00" in text
    await page.screenshot(path=str(server.data_dir / "sessions.png"), full_page=True)

    # On a phone every list stays within the screen: rows stack, nothing is cut off at the right.
    await page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/sessions", "/units", "/bridge-points", "/users", "/"):
        await page.goto(f"{server.url}{path}")
        overflow = await page.evaluate("""() => {
          const wide = (el) => el.scrollWidth > el.clientWidth + 1;
          return [document.documentElement, ...document.querySelectorAll('.table-wrap, .card')]
            .filter(wide).map((el) => el.className || el.tagName);
        }""")
        assert overflow == [], (path, overflow)
    row = page.locator("table tr", has_text=title)
    await page.goto(f"{server.url}/sessions")
    assert "15/12/2026" in await row.inner_text()
    assert await row.is_visible()
