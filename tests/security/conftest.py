"""One seeded application per test module, shared by the security tests (issue 12, "Access" and "Injection").

Each module gets its own app, database and recordings folder (``world``),
seeded with the usual two provinces (tests/conftest.py) plus an operator of
province B's hall and a second speaker, so every rule can be tried against
someone of *another* province or another session. Requests carry their
credentials explicitly (a bearer header, or the ``bc_token`` and ``bc_csrf``
cookies) and the client keeps no cookies, so no case leaks into the next.
Cases that change data build their own target first (``new_session``,
``new_checkin`` ...), so the order the cases run in never matters.

Argon2 runs with the cheapest parameters in these modules (``FAST_HASHER``,
patched in for the module's lifetime): dozens of sign-ins, password changes
and accounts made here would otherwise cost a few tenths of a second each on
a busy machine, and what is tested is who gets in, not what a hash costs.
"""

from __future__ import annotations

import functools
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse, DummyCookieJar, WSServerHandshakeError
from argon2 import PasswordHasher
from aiohttp.test_utils import TestClient, TestServer

from server import keys
from server.app import create_app
from server.auth import passwords
from server.auth.roles import Role
from server.auth.tokens import issue_token
from server.live.lifecycle import SessionStatus
from server.storage.db import Database
from server.storage.models import (
    BridgePoint,
    Checkin,
    CheckinSource,
    JobStatus,
    Recording,
    Session,
    SessionInvite,
    Unit,
    UnitLevel,
    User,
)
from tests.conftest import TEST_PASSWORD, TEST_SECRET, Seed, make_settings, seed_database

CSRF = "c" * 43  # any 43 characters: the double-submit check compares the cookie and the field
API_PREFIXES = ("/api/", "/whip/", "/whep/", "/ws/")

# Who calls: anonymous, a member of province A and one of province B, the operators of hall A and
# hall B, the speaker of the sessions under test and another speaker, and an administrator.
ROLES = ("anon", "member_a", "member_b", "op_a", "op_b", "speaker", "speaker_2", "admin")
SIGNED_IN = ROLES[1:]


@dataclass
class Reply:
    status: int
    location: str
    body: bytes
    headers: dict[str, str]
    set_cookies: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class World:
    app: Any
    client: TestClient
    database: Database
    seed: Seed
    op_b: User
    speaker_2: User
    password_hash: str
    recordings_dir: Path
    # Named sessions and recordings made once per module (see ``world``).
    named: dict[str, int] = field(default_factory=dict)
    # WHIP/WHEP resources a case opened and may have left open: (location, owner's headers).
    leftovers: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def clean_up(self) -> None:
        while self.leftovers:
            location, headers = self.leftovers.pop()
            await self.client.delete(location, headers=headers)

    # who ------------------------------------------------------------------------------------

    def user(self, role: str) -> User | None:
        return {
            "anon": None, "member_a": self.seed.member, "member_b": self.seed.member_b,
            "op_a": self.seed.operator, "op_b": self.op_b, "speaker": self.seed.speaker,
            "speaker_2": self.speaker_2, "admin": self.seed.admin,
        }[role]

    def token(self, user: User, ttl: int = 3600, **kwargs: Any) -> str:
        return issue_token(self.app[keys.JWT_SECRET], user.id, user.token_version, ttl, **kwargs)

    def bearer(self, user: User | None, **kwargs: Any) -> dict[str, str]:
        return {} if user is None else {"Authorization": f"Bearer {self.token(user, **kwargs)}"}

    def cookie(self, user: User | None = None, *, token: str | None = None) -> dict[str, str]:
        """The browser's cookies: the CSRF cookie always, the sign-in cookie for a user (or ``token``)."""
        if user is not None and token is None:
            token = self.token(user)
        value = f"bc_csrf={CSRF}" + (f"; bc_token={token}" if token else "")
        return {"Cookie": value}

    def auth(self, role: str, path: str) -> dict[str, str]:
        """How a browser or a script would authenticate this path: Bearer for machines, cookies for pages."""
        user = self.user(role)
        if path.startswith(API_PREFIXES):
            return self.bearer(user)
        return self.cookie(user)

    # calls ----------------------------------------------------------------------------------

    async def call(self, method: str, path: str, *, headers: dict[str, str] | None = None, json: Any = None,
                   form: dict[str, Any] | None = None, data: Any = None,
                   content_type: str | None = None) -> Reply:
        headers = dict(headers or {})
        if form is not None:
            data = {"csrf_token": CSRF, **form}
        elif method in ("POST", "PUT", "PATCH", "DELETE") and not path.startswith(API_PREFIXES) and data is None:
            data = {"csrf_token": CSRF}
        if content_type is not None:
            headers["Content-Type"] = content_type
        response = await self.client.request(method, path, headers=headers, json=json, data=data,
                                             allow_redirects=False)
        return await _reply(response)

    async def upgrade(self, path: str, headers: dict[str, str]) -> int:
        """A websocket upgrade's status: 101 when accepted (the socket is closed again at once)."""
        try:
            ws = await self.client.ws_connect(path, headers=headers)
        except WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101

    # data -------------------------------------------------------------------------------------

    async def new_session(self, point_ids: list[int] | None = None, *, status: SessionStatus = SessionStatus.SCHEDULED,
                          speaker: User | None = None, title: str | None = None,
                          starts_in: timedelta = timedelta(minutes=5)) -> int:
        """A session of its own for one case (not recorded: nothing in these tests sends media)."""
        start = datetime.now(UTC) + starts_in
        point_ids = [self.seed.point_a.id] if point_ids is None else point_ids
        async with self.database.session() as db:
            session = Session(title=title or f"Phiên {uuid.uuid4().hex[:8]}",
                              speaker_id=(speaker or self.seed.speaker).id, scheduled_start=start,
                              scheduled_end=start + timedelta(hours=1), status=status, record=False)
            if status is SessionStatus.LIVE:
                session.actual_start = datetime.now(UTC)
            session.invites = [SessionInvite(bridge_point_id=pid) for pid in point_ids]
            db.add(session)
            await db.flush()
            return session.id

    async def new_checkin(self, session_id: int, user: User | None = None, point_id: int | None = None) -> int:
        user = user or self.seed.member
        async with self.database.session() as db:
            checkin = Checkin(session_id=session_id, user_id=user.id,
                              bridge_point_id=point_id or self.seed.point_a.id,
                              checked_in_at=datetime.now(UTC), source=CheckinSource.CODE, recorded_by_id=user.id)
            db.add(checkin)
            await db.flush()
            return checkin.id

    async def new_unit(self) -> int:
        async with self.database.session() as db:
            unit = Unit(name=f"Xã {uuid.uuid4().hex[:6]}", slug=f"xa-{uuid.uuid4().hex[:10]}",
                        level=UnitLevel.COMMUNE, parent_id=self.seed.province_a.id)
            db.add(unit)
            await db.flush()
            return unit.id

    async def new_point(self) -> int:
        async with self.database.session() as db:
            point = BridgePoint(name=f"Điểm {uuid.uuid4().hex[:6]}", slug=f"diem-{uuid.uuid4().hex[:10]}",
                                unit_id=self.seed.province_a.id)
            db.add(point)
            await db.flush()
            return point.id

    async def new_user(self, role: Role = Role.MEMBER, **values: Any) -> User:
        name = f"u-{uuid.uuid4().hex[:10]}"
        unit_id = values.pop("unit_id", self.seed.province_a.id if role is not Role.ADMIN else self.seed.central.id)
        async with self.database.session() as db:
            user = User(username=name, full_name=values.pop("full_name", name.title()), role=role, unit_id=unit_id,
                        password_hash=self.password_hash, **values)
            db.add(user)
            await db.flush()
            return user

    async def new_recording(self, session_id: int | None = None, *, extras: bool = True) -> int:
        """An ended session's ready recording (a real WebM), with an MP4 copy and a poster when ``extras``."""
        from tests.recording.synthetic import make_recording

        session_id = session_id or await self.new_session()
        recording_id = await make_recording(self.database, self.recordings_dir, session_id, seconds=2.0)
        if extras:
            (self.recordings_dir / f"{session_id}/recording.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 fake mp4")
            (self.recordings_dir / f"{session_id}/poster.jpg").write_bytes(b"\xff\xd8\xff\xe0 fake jpeg")
            async with self.database.session() as db:
                recording = await db.get(Recording, recording_id)
                assert recording is not None
                recording.mp4_file, recording.poster_file = f"{session_id}/recording.mp4", f"{session_id}/poster.jpg"
                recording.mp4_status = JobStatus.DONE
        return recording_id

    async def recording_session(self, recording_id: int) -> int:
        async with self.database.session() as db:
            recording = await db.get(Recording, recording_id)
            assert recording is not None
            return recording.session_id


async def _reply(response: ClientResponse) -> Reply:
    body = await response.read()
    return Reply(response.status, response.headers.get("Location", ""), body, dict(response.headers),
                 response.headers.getall("Set-Cookie", []))


def settings_for(data_dir: Path) -> Any:
    # Loopback media only; no MP4 job; sign-in throttling out of the way of the one address every
    # case comes from (its own tests are in tests/auth and tests/views).
    # Quotas on sockets and peer connections are tested in tests/signaling; here every case is one user
    # opening a few, one case after another, and the server's releases must not race the next case.
    return make_settings(data_dir, ice={"addresses": "127.0.0.1"}, recordings={"mp4": False},
                         limits={"endpoints_per_user": 1000, "sockets_per_user": 1000},
                         auth={"jwt_secret": TEST_SECRET, "login_attempts_per_ip": 100_000,
                               "login_attempts_per_account": 100_000, "login_free_attempts": 100_000})


FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> AsyncIterator[World]:
    data_dir = tmp_path_factory.mktemp("security") / "data"
    data_dir.mkdir()
    shutil.copy(migrated_sqlite, data_dir / "bridgecast.db")
    settings = settings_for(data_dir)
    patch = pytest.MonkeyPatch()
    patch.setattr(passwords, "_hasher", FAST_HASHER)
    patch.setattr(passwords, "_dummy_hash", functools.cache(lambda: FAST_HASHER.hash("timing equaliser")))
    password_hash = FAST_HASHER.hash(TEST_PASSWORD)
    app = create_app(settings)
    client = TestClient(TestServer(app), cookie_jar=DummyCookieJar())
    await client.start_server()
    try:
        database = app[keys.DATABASE]
        seed = await seed_database(database, password_hash)
        async with database.session() as db:
            op_b = User(username="op-b", full_name="Op-B", role=Role.OPERATOR, unit_id=seed.province_b.id,
                        bridge_point_id=seed.point_b.id, password_hash=password_hash)
            speaker_2 = User(username="speaker-2", full_name="Speaker-2", role=Role.SPEAKER,
                             unit_id=seed.central.id, password_hash=password_hash)
            db.add_all([op_b, speaker_2])
            await db.flush()
        world = World(app, client, database, seed, op_b, speaker_2, password_hash, settings.recordings_dir)
        # The session under test: scheduled, shown in hall A only. Province B, its hall and the
        # other speaker may not see it.
        world.named["S"] = await world.new_session([seed.point_a.id], title="Phiên riêng tỉnh A")
        # Shown in both halls: the other province sees the session, never hall A's part of it.
        world.named["AB"] = await world.new_session([seed.point_a.id, seed.point_b.id], title="Phiên chung A-B")
        # An ended session of hall A, recorded.
        world.named["R"] = await world.new_recording()
        world.named["E"] = await world.recording_session(world.named["R"])
        yield world
    finally:
        await client.close()
        patch.undo()


# Every live message a test client received matches the server's schema for its type (autouse).
from tests.signaling.helpers import server_messages_match_their_schemas  # noqa: E402,F401
