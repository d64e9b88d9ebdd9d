"""Every admin route refuses members and operators (403) and anonymous callers (401 or the login page).

The cases come from the route table itself, so a new admin route is covered
the day it is added.
"""

import re

import pytest
from aiohttp.test_utils import TestClient

from server.auth.roles import Role
from server.views.routes import ROUTES, Route
from tests.conftest import Seed, bearer, csrf_of, login

ADMIN_ROUTES = [route for route in ROUTES if getattr(route.handler, "required_roles", None) == (Role.ADMIN,)]
SIGNED_IN_ROUTES = [route for route in ROUTES if getattr(route.handler, "required_roles", None) == ()]


def _path(route: Route) -> str:
    path = re.sub(r"\{resource:[^/]*\}$", "0" * 32, route.path)
    return re.sub(r"\{id:[^/]*\}", "1", path)


def test_the_table_finds_the_admin_routes() -> None:
    paths = {(route.method, route.path.split("{")[0]) for route in ADMIN_ROUTES}
    assert ("POST", "/api/v1/sessions") in paths
    assert ("GET", "/users") in paths
    assert ("POST", "/users/import") in paths
    assert len(ADMIN_ROUTES) >= 30
    # Every route is either public, signed-in or role-limited: none forgot its decorator.
    for route in ROUTES:
        assert route.public or hasattr(route.handler, "required_roles"), route.path


async def _call(client: TestClient, route: Route, headers: dict[str, str], csrf: str | None = None) -> tuple[int, str]:
    data = {"csrf_token": csrf} if csrf and not route.is_api else None
    json_body = {} if route.is_api and route.method in ("POST", "PATCH") and route.body is not None else None
    response = await client.request(route.method, _path(route), headers=headers, data=data, json=json_body,
                                    allow_redirects=False)
    return response.status, response.headers.get("Location", "")


@pytest.mark.parametrize("role", ["member", "operator", "speaker"])
@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_non_admins_get_403(client: TestClient, seed: Seed, route: Route, role: str) -> None:
    user = seed.user(role)
    if route.is_api:
        status, _ = await _call(client, route, bearer(client.app, user))
    else:
        csrf = await login(client, user.username)
        status, _ = await _call(client, route, {}, csrf)
    assert status == 403


@pytest.mark.parametrize("route", ADMIN_ROUTES + SIGNED_IN_ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_anonymous_gets_401_or_the_login_page(client: TestClient, seed: Seed, route: Route) -> None:
    csrf = await csrf_of(client)
    status, location = await _call(client, route, {}, csrf)
    if route.is_api:
        assert status == 401
    else:
        assert status == 303
        assert location.startswith("/login?next=")


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_admin_is_let_through(client: TestClient, seed: Seed, route: Route) -> None:
    # The same calls as the admin get past the role check (whatever the data says).
    if route.is_api:
        status, _ = await _call(client, route, bearer(client.app, seed.admin))
    else:
        csrf = await login(client, "admin")
        status, _ = await _call(client, route, {}, csrf)
    assert status not in (401, 403, 500)
