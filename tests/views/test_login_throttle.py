"""Sign-in under attack (issue 12, items 2 and 3): concurrency, the lockout weapon, proxies, the password form."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import keys
from server.app import create_app
from server.config import Settings
from tests.conftest import TEST_PASSWORD, Seed, bearer, csrf_of, login, make_settings

TOKEN = "/api/v1/auth/token"


async def token_request(client: TestClient, username: str, password: str, **headers: str) -> int:
    response = await client.post(TOKEN, json={"username": username, "password": password}, headers=headers)
    await response.read()
    return response.status


def stop_the_throttles_clock(client: TestClient) -> None:
    """The throttle's clock stands still for the test: its waits (1 s, 2 s …) never run out under it.

    Each test here counts what a run of failures leads to; on a loaded machine
    a few requests take more than the first wait (1 s), and a guess arriving
    after it would rightly be let through.
    """
    frozen = time.monotonic()
    client.app[keys.LOGIN_THROTTLE]._clock = lambda: frozen


async def test_200_concurrent_wrong_passwords_for_one_account_check_only_the_free_few(
        client: TestClient, seed: Seed) -> None:
    checks = client.app[keys.PASSWORD_CHECKS]
    stop_the_throttles_clock(client)
    started = time.monotonic()
    statuses = await asyncio.gather(*(token_request(client, "speaker", f"guess {n}") for n in range(200)))
    assert set(statuses) <= {401, 429}, sorted(set(statuses))
    free = client.app[keys.SETTINGS].auth.login_free_attempts
    # Counted before hashing: exactly the free attempts reach Argon2, the rest wait without costing a hash.
    assert statuses.count(401) == free and checks.done == free
    assert checks.peak <= checks.slots
    print(f"200 concurrent guesses answered in {time.monotonic() - started:.2f} s, {checks.done} hashed")


@pytest.fixture
async def unthrottled(aiohttp_client: Any, settings: Settings, seed: Seed) -> TestClient:
    """Throttling by address out of the way, to reach the bound behind it."""
    loose = make_settings(settings.data_dir, auth={"jwt_secret": settings.auth.jwt_secret,
                                                   "login_attempts_per_ip": 100_000})
    return await aiohttp_client(create_app(loose))


async def test_a_crowd_of_sign_ins_is_bounded_and_the_rest_of_the_server_answers(
        unthrottled: TestClient, seed: Seed) -> None:
    """Many accounts at once (distinct, so the throttle lets each through): the hash queue is bounded."""
    client = unthrottled
    checks = client.app[keys.PASSWORD_CHECKS]
    admin = bearer(client.app, seed.admin)

    async def meanwhile() -> list[float]:
        # A signed-in user's ordinary requests go on while the crowd is hashed: no pool exhaustion.
        times = []
        for _ in range(5):
            began = time.monotonic()
            response = await client.get("/api/v1/me", headers=admin)
            assert response.status == 200
            times.append(time.monotonic() - began)
            await asyncio.sleep(0.05)
        return times

    crowd = asyncio.gather(*(token_request(client, f"nobody-{n}", "wrong password") for n in range(150)))
    statuses, times = await asyncio.gather(crowd, meanwhile())
    assert set(statuses) <= {401, 429}
    # At most one hash per core runs, and at most `waiting` more queue: the others are told at once.
    # (How many are hashed in all depends on how fast the first ones finish while the crowd still
    # arrives: the bound is on what is let in at any moment, not on the total.)
    assert checks.peak <= checks.slots
    assert checks.peak_queued <= checks.slots + checks.waiting
    assert statuses.count(401) == checks.done
    assert statuses.count(429) == checks.refused > 0
    print(f"crowd of 150: {statuses.count(401)} hashed, {checks.refused} busy; "
          f"/api/v1/me meanwhile max {max(times) * 1000:.0f} ms")


@pytest.fixture
def behind_proxy(settings: Settings) -> Settings:
    return make_settings(settings.data_dir, server={"trusted_proxies": "127.0.0.1/32"},
                         auth={"jwt_secret": settings.auth.jwt_secret, "login_attempts_per_account": 10})


@pytest.fixture
async def proxied(aiohttp_client: Any, behind_proxy: Settings, seed: Seed) -> TestClient:
    app: web.Application = create_app(behind_proxy)
    return await aiohttp_client(app)


async def test_a_guesser_cannot_lock_the_speaker_out(proxied: TestClient, seed: Seed) -> None:
    client = proxied
    stop_the_throttles_clock(client)
    # The speaker signed in from this browser before: it holds the account's device cookie.
    assert await token_request(client, "speaker", TEST_PASSWORD, **{"X-Forwarded-For": "203.0.113.5"}) == 201
    device = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("bc_device")
    assert device is not None
    client.session.cookie_jar.clear()
    # An attacker from thirty addresses, five guesses each (the free ones): 150 failures.
    for index in range(30):
        for guess in range(5):
            status = await token_request(client, "speaker", f"guess {guess}",
                                         **{"X-Forwarded-For": f"198.51.100.{index}"})
            assert status in (401, 429)
    # A stranger's address now waits ...
    assert await token_request(client, "speaker", TEST_PASSWORD, **{"X-Forwarded-For": "192.0.2.77"}) == 429
    # ... the speaker's own browser does not, from wherever it is ...
    assert await token_request(client, "speaker", TEST_PASSWORD, Cookie=f"bc_device={device.value}",
                               **{"X-Forwarded-For": "192.0.2.78"}) == 201
    client.session.cookie_jar.clear()
    # ... nor the address it signed in from, nor anybody else's account.
    assert await token_request(client, "speaker", TEST_PASSWORD, **{"X-Forwarded-For": "203.0.113.5"}) == 201
    assert await token_request(client, "admin", TEST_PASSWORD, **{"X-Forwarded-For": "192.0.2.77"}) == 201


async def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(client: TestClient, seed: Seed) -> None:
    stop_the_throttles_clock(client)
    # No trusted proxies: a forged header does not buy a fresh source per request.
    free = client.app[keys.SETTINGS].auth.login_free_attempts
    statuses = [await token_request(client, "member-a", "wrong", **{"X-Forwarded-For": f"192.0.2.{n}"})
                for n in range(free + 2)]
    assert statuses == [401] * free + [429] * 2


async def test_behind_a_trusted_proxy_each_client_is_counted_apart(proxied: TestClient, seed: Seed) -> None:
    stop_the_throttles_clock(proxied)
    free = proxied.app[keys.SETTINGS].auth.login_free_attempts
    for _ in range(free):
        assert await token_request(proxied, "member-a", "wrong", **{"X-Forwarded-For": "192.0.2.1"}) == 401
    assert await token_request(proxied, "member-a", "wrong", **{"X-Forwarded-For": "192.0.2.1"}) == 429
    # The proxy itself, and a client spoofing a hop in front of it, are not 192.0.2.1.
    assert await token_request(proxied, "member-a", TEST_PASSWORD,
                               **{"X-Forwarded-For": "192.0.2.1, 192.0.2.2"}) == 201
    assert await token_request(proxied, "member-a", "wrong", **{"X-Forwarded-For": "not-an-ip"}) == 401


async def test_the_password_form_is_throttled_like_sign_in(client: TestClient, seed: Seed) -> None:
    csrf = await login(client, "member-a")
    stop_the_throttles_clock(client)
    free = client.app[keys.SETTINGS].auth.login_free_attempts
    statuses = []
    for _ in range(free + 1):
        response = await client.post("/account/password", data={
            "csrf_token": csrf, "current_password": "not the password", "new_password": "a new password 1"},
            allow_redirects=False)
        statuses.append(response.status)
    assert statuses == [422] * free + [429]
    assert int(response.headers["Retry-After"]) >= 1
    # The right password waits too, from here: then it goes through.
    right = {"csrf_token": csrf, "current_password": TEST_PASSWORD, "new_password": "a new password 1"}
    assert (await client.post("/account/password", data=right, allow_redirects=False)).status == 429
    client.app[keys.LOGIN_THROTTLE]._pairs.clear()
    assert (await client.post("/account/password", data=right, allow_redirects=False)).status == 303
    assert await csrf_of(client)
