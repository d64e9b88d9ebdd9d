"""Shared fixtures: settings in a temporary folder, migrated databases, seeded data, app clients."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import keys
from server.app import create_app
from server.auth.passwords import hash_password
from server.auth.tokens import issue_token
from server.config import Settings, load_settings
from server.storage.db import Database, upgrade
from server.auth.roles import Role
from server.storage.models import BridgePoint, Unit, UnitLevel, User

TEST_PASSWORD = "correct horse 42"
TEST_SECRET = "test-secret-" + "x" * 40
PG_URL = os.environ.get("BRIDGECAST_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def password_hash() -> str:
    # One Argon2 hash for every seeded account: hashing costs ~0.1 s each.
    return hash_password(TEST_PASSWORD)


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets its own copy."""
    path = tmp_path_factory.mktemp("template") / "bridgecast.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(environ={}, overrides={
        "data_dir": str(data_dir),
        "recordings_dir": str(data_dir / "recordings"),
        "auth": {"jwt_secret": TEST_SECRET},
        **overrides,
    })


@pytest.fixture
def settings(tmp_path: Path, migrated_sqlite: Path) -> Settings:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(migrated_sqlite, data_dir / "bridgecast.db")
    return make_settings(data_dir)


# Two workers ---------------------------------------------------------------------
#
# `make test` runs two pytest-xdist workers. Tests that measure media in real time (frames counted,
# latency, a link shaped in a namespace, a browser, a server killed) form one group, run one after the
# other on one worker as they would alone; everything else runs on the other worker beside them, at a
# lower CPU priority, so that a media test never waits for a core behind a table-driven case.
#
# The fault tests that cut a server, a database or a socket for 5 to 30 s (bounds of seconds) mostly
# wait: they form a second timed group, which the other worker runs first (xdist gives out the largest
# units first), beside the media tests; then both workers share the rest. The faults that grade a lossy
# link, drive browsers or count the frames decoded in each second (the database outage: 3 in one second
# beside a media test) stay with the media tests.

TIMED = ("e2e", "faults", "media", "recording")
# Elsewhere, every file whose tests send media in real time or wait on a server's clock: beside a
# timed test, at nice 10, they would get a tenth of a core.
TIMED_FILES = {"test_attendance_faults.py", "test_live_session.py", "test_turn.py", "test_whip_whep.py",
               "test_precheck.py", "test_log_secrets.py", "test_metrics.py", "test_live_room.py", "test_limits.py",
               "test_authority.py", "test_sdp_fuzz.py", "test_cascade.py"}
LATE_FILES = {"test_attendance_faults.py", "test_socket_drops.py", "test_hall_blackout.py"}


def _timed_path(path: str) -> bool:
    parts = Path(path).parts
    return (len(parts) > 1 and parts[0] == "tests" and parts[1] in TIMED) or Path(path).name in TIMED_FILES


def _late_path(path: str) -> bool:
    return Path(path).name in LATE_FILES


def _timed(item: pytest.Item) -> bool:
    return _timed_path(item.nodeid.split("::", 1)[0])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The timed tests in two units of work (each on one worker, in order); each other test on its own."""
    from xdist.scheduler import LoadScopeScheduling

    class TimedTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if _late_path(path):
                return "timed-late"
            return "timed" if _timed_path(path) else nodeid

    return TimedTogether(config, log)


@pytest.fixture(autouse=True)
def _priority(request: pytest.FixtureRequest) -> Iterator[None]:
    """A timed test runs at the normal priority; any other, beside one, yields the CPU to it.

    The fault tests of the second timed unit run at nice 5 (their servers too): beside a media test
    they mostly wait, and what they measure is bounded in seconds, while a media test counts frames
    (the lossy viewer's low layer, transcoded in the test's own process, came too late beside a
    blacked-out hall at the same priority).
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        yield
        return
    path = request.node.nodeid.split("::", 1)[0]
    nice = (5 if _late_path(path) else 0) if _timed(request.node) else 10
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:  # not root: a priority once lowered stays lowered, which only slows the untimed
        pass
    yield


# A hung test ------------------------------------------------------------------------
#
# pytest-timeout fails a test after 300 s (pyproject.toml), with the main thread's traceback: in an
# event loop, that is the selector. A little before, the asyncio tasks still pending and every
# thread's stack go to the worker's stderr (the CI log), which say what the test waits for.

HANG_REPORT_SECONDS = 270


def _report_hang(nodeid: str) -> None:
    import faulthandler
    import gc
    import sys

    out = sys.__stderr__
    print(f"\n=== {nodeid}: still running after {HANG_REPORT_SECONDS} s; pending asyncio tasks ===", file=out)
    for task in [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()][:50]:
        try:
            print(f"--- {task.get_name()}: {task.get_coro()!r}", file=out)
            task.print_stack(limit=12, file=out)
        except Exception as exc:  # noqa: BLE001 - a report, read from another thread: best effort
            print(f"    (stack unreadable: {exc})", file=out)
    print("=== threads ===", file=out, flush=True)
    faulthandler.dump_traceback(file=out, all_threads=True)


@pytest.fixture(autouse=True)
def _hang_report(request: pytest.FixtureRequest) -> Iterator[None]:
    import threading

    timer = threading.Timer(HANG_REPORT_SECONDS, _report_hang, args=(request.node.nodeid,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


# PostgreSQL --------------------------------------------------------------------

def _in_thread(function: Any, *args: Any) -> Any:
    """Run blocking set-up that starts its own event loop (asyncio.run, Alembic)
    off the test's running loop: this fixture may be first asked for inside it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def _pg_required() -> bool:
    return os.environ.get("BRIDGECAST_TEST_REQUIRE_PG") == "1" or os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated once, dropped at the end."""
    asyncpg = pytest.importorskip("asyncpg")
    server = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"bc_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(server, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    try:
        _in_thread(asyncio.run, admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        if _pg_required():
            pytest.fail(f"PostgreSQL is required in CI but did not answer at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({exc}); storage tests ran on SQLite only")
    url = re.sub(r"/[^/]*$", f"/{name}", PG_URL)
    upgrade(url)
    yield url
    _in_thread(asyncio.run, admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Database]:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        url = settings.effective_database_url
    else:
        url = request.getfixturevalue("pg_database")
    database = Database(url)
    yield database
    if request.param == "postgresql":
        async with database.session() as db:
            from sqlalchemy import text

            await db.execute(text("TRUNCATE node_heartbeats, floor_grants, session_invites, sessions, users, bridge_points, units "
                                  "RESTART IDENTITY CASCADE"))
    await database.close()


@pytest.fixture
async def sqlite_database(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.effective_database_url)
    yield database
    await database.close()


# Seeded data ---------------------------------------------------------------------

@dataclass
class Seed:
    central: Unit
    province_a: Unit
    province_b: Unit
    hub: BridgePoint
    point_a: BridgePoint
    point_b: BridgePoint
    admin: User
    speaker: User
    operator: User
    member: User
    member_b: User

    def user(self, role: str) -> User:
        return {"admin": self.admin, "speaker": self.speaker, "operator": self.operator,
                "member": self.member}[role]


async def seed_database(database: Database, password_hash: str) -> Seed:
    async with database.session() as db:
        central = Unit(name="Trung ương", slug="trung-uong", level=UnitLevel.CENTRAL)
        db.add(central)
        await db.flush()
        province_a = Unit(name="Tỉnh A", slug="tinh-a", level=UnitLevel.PROVINCE, parent_id=central.id)
        province_b = Unit(name="Tỉnh B", slug="tinh-b", level=UnitLevel.PROVINCE, parent_id=central.id)
        db.add_all([province_a, province_b])
        await db.flush()
        hub = BridgePoint(name="Điểm cầu Trung ương", slug="trung-uong", unit_id=central.id, is_hub=True)
        point_a = BridgePoint(name="Điểm cầu A", slug="diem-a", unit_id=province_a.id)
        point_b = BridgePoint(name="Điểm cầu B", slug="diem-b", unit_id=province_b.id)
        db.add_all([hub, point_a, point_b])
        await db.flush()

        def user(username: str, role: Role, unit: Unit, point: BridgePoint | None = None) -> User:
            return User(username=username, full_name=username.title(), role=role, unit_id=unit.id,
                        bridge_point_id=point.id if point else None, password_hash=password_hash)

        admin = user("admin", Role.ADMIN, central)
        speaker = user("speaker", Role.SPEAKER, central)
        operator = user("op-a", Role.OPERATOR, province_a, point_a)
        member = user("member-a", Role.MEMBER, province_a)
        member_b = user("member-b", Role.MEMBER, province_b)
        db.add_all([admin, speaker, operator, member, member_b])
        await db.flush()
        return Seed(central, province_a, province_b, hub, point_a, point_b, admin, speaker, operator, member,
                    member_b)


@pytest.fixture
async def seed(sqlite_database: Database, password_hash: str) -> Seed:
    return await seed_database(sqlite_database, password_hash)


# The application -------------------------------------------------------------------

@pytest.fixture
def app(settings: Settings) -> web.Application:
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client: Any, app: web.Application, seed: Seed) -> TestClient:
    return await aiohttp_client(app)


def bearer(app: web.Application, user: User, **kwargs: Any) -> dict[str, str]:
    token = issue_token(app[keys.JWT_SECRET], user.id, user.token_version, 3600, **kwargs)
    return {"Authorization": f"Bearer {token}"}


async def csrf_of(client: TestClient) -> str:
    """Load the login page so the browser-like client holds a CSRF cookie; return it."""
    response = await client.get("/login")
    assert response.status == 200
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("bc_csrf")
    assert cookie is not None
    return cookie.value


async def login(client: TestClient, username: str, password: str = TEST_PASSWORD) -> str:
    """Sign in through the login form like a browser; return the CSRF token."""
    token = await csrf_of(client)
    response = await client.post("/login", data={"username": username, "password": password, "csrf_token": token,
                                                 "next": "/"}, allow_redirects=False)
    assert response.status == 303, await response.text()
    return token
