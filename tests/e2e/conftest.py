"""A real server process and headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@dataclass
class Server:
    url: str
    data_dir: Path
    logins: dict[str, str]
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "server", *args], env=env, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`bridgecast serve` with the demo data, on loopback, stopped at the end."""
    data_dir = tmp_path_factory.mktemp("e2e") / "data"
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("BRIDGECAST_")}
    env.update({"BRIDGECAST_DATA_DIR": str(data_dir), "BRIDGECAST_SERVER_PORT": str(port),
                "BRIDGECAST_ICE_ADDRESSES": "127.0.0.1",
                # Recordings stay in the test's folder, never in the checkout's recordings/.
                "BRIDGECAST_RECORDINGS_DIR": str(data_dir / "recordings")})
    _run(env, "db", "upgrade")
    _run(env, "demo")
    # The server's output goes to a file, never to a pipe nobody reads: once a
    # pipe's 64 KiB fill up, every log line blocks the server's event loop.
    log_path = data_dir.parent / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen([sys.executable, "-m", "server", "serve"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start: {log_path.read_text()[-4000:]}")
            time.sleep(0.1)
    logins = json.loads((data_dir / "demo-logins.json").read_text())
    yield Server(url, data_dir, logins, log_path)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Chromium per test, on the test's own event loop (Playwright's async API:
    its sync API would leave a loop running under every later asyncio test)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        await browser.close()


def solid_colour_y4m(path: Path, yuv: tuple[int, int, int], width: int = 320, height: int = 240,
                     frames: int = 5) -> Path:
    """A tiny Y4M clip of one colour, for Chromium's --use-file-for-fake-video-capture."""
    y, u, v = yuv
    frame = b"FRAME\n" + bytes([y]) * (width * height) + bytes([u]) * (width * height // 4) + bytes(
        [v]) * (width * height // 4)
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode() + frame * frames)
    return path


@pytest.fixture
async def red_camera_browser(tmp_path: Path) -> AsyncIterator[Any]:
    """A second Chromium whose fake camera shows solid red (the default fake camera is green)."""
    from playwright.async_api import async_playwright

    clip = solid_colour_y4m(tmp_path / "red.y4m", (81, 90, 240))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={clip}"])
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1366, "height": 900}, locale="vi-VN")
    page = await context.new_page()
    page.set_default_timeout(15_000)
    yield page
    await context.close()


async def signed_in(browser: Any, server: Server, username: str, password: str,
                    viewport: dict[str, int] | None = None, timezone: str = "Asia/Ho_Chi_Minh") -> Any:
    """A new browser context signed in through the login form, on the dashboard."""
    context = await browser.new_context(viewport=viewport or {"width": 1280, "height": 720}, locale="vi-VN",
                                        timezone_id=timezone)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    await page.goto(f"{server.url}/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_url(f"{server.url}/")
    return page


async def csrf_cookie(page: Any) -> str:
    """The page's CSRF token (API writes with the session cookie carry it in X-CSRF-Token)."""
    return next(c["value"] for c in await page.context.cookies() if c["name"] == "bc_csrf")


async def api_post(page: Any, server: Server, path: str, data: dict[str, Any] | None = None) -> Any:
    """POST to the API as the signed-in page would; the response must be a success."""
    response = await page.request.post(f"{server.url}{path}", headers={"X-CSRF-Token": await csrf_cookie(page)},
                                       data=data or {})
    assert response.ok, await response.text()
    return response
