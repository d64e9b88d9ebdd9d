"""A websocket client of the live protocol, for tests: aiortc media over the real signaling."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from server.live.lifecycle import SessionStatus
from server.signaling.outgoing import SERVER_MESSAGES
from server.storage.db import Database
from server.auth.roles import Role
from server.storage.models import BridgePoint, Session, SessionInvite, User
from tests.conftest import Seed, bearer
from tests.media.clients import Publisher, Viewer, publish, view


_VALIDATORS = {kind: jsonschema.Draft202012Validator(schema) for kind, schema in SERVER_MESSAGES.items()}


def check_server_message(message: dict[str, Any]) -> None:
    """Fail unless ``message`` is one of the server's message types and matches its schema."""
    validator = _VALIDATORS.get(message.get("type"))  # type: ignore[arg-type]
    assert validator is not None, f"the server sent an undocumented message type: {message!r}"
    errors = sorted(validator.iter_errors(message), key=str)
    assert not errors, f"{message.get('type')} does not match its schema: {errors[0].message} in {message!r}"


class LiveClient:
    """One endpoint's websocket: sends typed messages, keeps everything received."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        # Messages that did not match their schema (checked by the fixture at the end of each test).
        self.invalid: list[str] = []
        self._changed = asyncio.Condition()
        self.closed_code: int | None = None
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == WSMsgType.TEXT:
                body = message.json()
                try:
                    check_server_message(body)
                except AssertionError as problem:
                    self.invalid.append(str(problem))
                async with self._changed:
                    self.received.append(body)
                    self._changed.notify_all()
        self.closed_code = self.ws.close_code
        async with self._changed:
            self._changed.notify_all()

    async def send(self, kind: str, **values: Any) -> None:
        await self.ws.send_json({"type": kind, **values})

    async def expect(self, kind: str, timeout: float = 10.0, since: int = 0, **match: Any) -> dict[str, Any]:
        """The first message of ``kind`` (from index ``since``) whose fields match."""
        def find() -> dict[str, Any] | None:
            for message in self.received[since:]:
                if message.get("type") == kind and all(message.get(k) == v for k, v in match.items()):
                    return message
            return None

        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: find() is not None or self.ws.closed), timeout)
        except TimeoutError:
            raise AssertionError(f"no {kind} {match} within {timeout} s; got {self.received[since:][-5:]}") from None
        found = find()
        assert found is not None, f"no {kind} message; got {[m.get('type') for m in self.received]}"
        return found

    def mark(self) -> int:
        return len(self.received)

    def last(self, kind: str) -> dict[str, Any] | None:
        return next((m for m in reversed(self.received) if m.get("type") == kind), None)

    async def answerer(self, pc: str) -> Any:
        async def answer(offer: str) -> str:
            since = self.mark()
            await self.send("offer", pc=pc, sdp=offer)
            reply = await self.expect("answer", since=since, pc=pc)
            return reply["sdp"]

        return answer

    async def publish(self, rgb: tuple[int, int, int], tone: float, *, steady: bool = True) -> Publisher:
        return await publish(await self.answerer("publish"), rgb, tone, steady=steady)

    async def view(self) -> Viewer:
        return await view(await self.answerer("view"))

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


OPENED: list[LiveClient] = []


async def connect(client: TestClient, session_id: int, user: User, **join: Any) -> LiveClient:
    ws = await client.ws_connect(f"/ws/sessions/{session_id}", headers=bearer(client.app, user))
    live = LiveClient(ws)
    OPENED.append(live)
    await live.send("join", **join)
    await live.expect("welcome")
    return live


async def live_speaker(http: Any, url: str, session_id: int, bearer_token: str) -> LiveClient:
    """The speaker's socket on a server in a process of its own (``url``), joined, the session live."""
    ws = await http.ws_connect(f"{url}/ws/sessions/{session_id}", headers={"Authorization": f"Bearer {bearer_token}"})
    speaker = LiveClient(ws)
    OPENED.append(speaker)
    await speaker.send("join")
    await speaker.expect("welcome")
    await speaker.send("start")
    await speaker.expect("session", status="live")
    return speaker


async def add_halls(database: Database, seed: Seed, count: int, password_hash: str) -> list[tuple[BridgePoint, User]]:
    """``count`` extra bridge points with an operator each, in province A."""
    halls = []
    async with database.session() as db:
        for index in range(count):
            point = BridgePoint(name=f"Hall {index}", slug=f"hall-{index}", unit_id=seed.province_a.id)
            db.add(point)
            await db.flush()
            operator = User(username=f"op-hall-{index}", full_name=f"Operator {index}", role=Role.OPERATOR,
                            unit_id=seed.province_a.id, bridge_point_id=point.id, password_hash=password_hash)
            db.add(operator)
            await db.flush()
            halls.append((point, operator))
    return halls


async def add_session(database: Database, seed: Seed, point_ids: list[int],
                      status: SessionStatus = SessionStatus.SCHEDULED) -> int:
    start = datetime.now(UTC) + timedelta(minutes=5)
    async with database.session() as db:
        session = Session(title="Live test", speaker_id=seed.speaker.id, scheduled_start=start,
                          scheduled_end=start + timedelta(hours=1), status=status)
        session.invites = [SessionInvite(bridge_point_id=pid) for pid in point_ids]
        db.add(session)
        await db.flush()
        return session.id


@pytest.fixture(autouse=True)
def server_messages_match_their_schemas() -> Iterator[None]:
    """Every message any test client received must match the server's schema for its type.

    Imported by the conftest of each folder whose tests open live sockets.
    """
    OPENED.clear()
    yield
    invalid = [problem for live in OPENED for problem in live.invalid]
    OPENED.clear()
    assert not invalid, invalid[:3]
