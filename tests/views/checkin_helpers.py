"""Shared by the check-in API and page tests: an app whose check-in clock moves by hand, and sessions."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import keys
from server.app import CHECKIN_FAILURE_WINDOW, CHECKIN_FAILURES, create_app
from server.attendance.checkin import CheckinCodes
from server.auth.ratelimit import SlidingWindowLimiter
from server.config import Settings
from server.live.lifecycle import SessionAction
from server.storage import sessions as session_store
from tests.conftest import Seed, bearer

WINDOW = 45
START = "2026-12-01T08:00:00+07:00"
END = "2026-12-01T11:00:00+07:00"


class Clock:
    """The check-in codes' wall clock and the limiter's, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000 // WINDOW * WINDOW + 5.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(settings: Settings, clock: Clock) -> web.Application:
    app = create_app(settings)
    app[keys.CHECKIN_CODES] = CheckinCodes(app[keys.JWT_SECRET], WINDOW, clock=clock)
    app[keys.CHECKIN_LIMITER] = SlidingWindowLimiter(CHECKIN_FAILURES, CHECKIN_FAILURE_WINDOW, clock=clock)
    return app


def error_code(body: dict[str, Any]) -> str:
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]["code"]


async def new_session(client: TestClient, seed: Seed, point_ids: list[int], *, action: SessionAction | None = None
                      ) -> int:
    """A session through the API, moved to live (START), ended (START then END) or cancelled in the database."""
    response = await client.post("/api/v1/sessions", headers=bearer(client.app, seed.admin), json={
        "title": "Học tập Nghị quyết", "speaker_id": seed.speaker.id, "scheduled_start": START,
        "scheduled_end": END, "invited_point_ids": point_ids})
    assert response.status == 201, await response.text()
    session_id = (await response.json())["id"]
    if action is not None:
        async with client.app[keys.DATABASE].session() as db:
            if action in (SessionAction.START, SessionAction.END):
                await session_store.apply_action(db, session_id, SessionAction.START)
            if action is not SessionAction.START:
                await session_store.apply_action(db, session_id, action)
    return session_id


async def hall_code(client: TestClient, seed: Seed, session_id: int, operator: Any = None) -> dict[str, Any]:
    """What the hall's screen shows (as its operator sees it)."""
    response = await client.get(f"/api/v1/sessions/{session_id}/checkin-code",
                                headers=bearer(client.app, operator or seed.operator))
    assert response.status == 200, await response.text()
    return await response.json()


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["t"][0]
