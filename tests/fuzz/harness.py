"""What the fuzzers share: the app served on 127.0.0.1 from a thread of its own, and a log of server errors.

Schemathesis calls the API with ``requests`` (blocking), and the SDP bench
runs for an hour: both talk to a real aiohttp server on a free loopback port,
run by :class:`ThreadedServer` on its own event loop, while the caller can
still reach into the application (its media rooms, its quotas, the database)
with :meth:`ThreadedServer.call`.

:class:`ServerErrors` collects every log record at ERROR or above, and any
record carrying a traceback, from every thread: a fuzz case that makes the
server log one is a bug even when the client got a 4xx.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import traceback
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import select

from server import keys
from server.app import create_app
from server.auth.roles import Role
from server.auth.tokens import issue_token
from server.config import Settings
from server.live.lifecycle import SessionStatus
from server.storage.models import Session, SessionInvite, User

T = TypeVar("T")


@dataclass
class Problem:
    """One server log record that a fuzz case must never cause."""

    logger: str
    level: str
    message: str
    traceback: str

    def __str__(self) -> str:
        return f"[{self.level} {self.logger}] {self.message}\n{self.traceback}".rstrip()


class ServerErrors(logging.Handler):
    """Every ERROR (or worse) record, and every record with a traceback, whatever thread logged it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.problems: list[Problem] = []
        self._lock_problems = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        has_traceback = bool(record.exc_info) or "Traceback" in record.getMessage()
        if record.levelno < logging.ERROR and not has_traceback:
            return
        text = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
        with self._lock_problems:
            self.problems.append(Problem(record.name, record.levelname, record.getMessage(), text))

    def mark(self) -> int:
        return len(self.problems)

    def since(self, mark: int) -> list[Problem]:
        with self._lock_problems:
            return self.problems[mark:]


@contextmanager
def server_errors() -> Iterator[ServerErrors]:
    """Collect server errors on the root logger for the duration."""
    handler = ServerErrors()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def udp_sockets(pid: int | None = None) -> int:
    """How many UDP sockets the process (this one by default) holds open: aiortc's ICE transports."""
    pid = os.getpid() if pid is None else pid
    inodes: set[str] = set()
    for name in ("udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        inodes.update(line.split()[9] for line in lines if len(line.split()) > 9)
    count = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


@dataclass
class Account:
    id: int
    username: str
    role: Role
    unit_id: int | None
    bridge_point_id: int | None


class ThreadedServer:
    """The application on 127.0.0.1 (a free port), its event loop in a thread of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop: asyncio.AbstractEventLoop | None = None
        self.app: web.Application | None = None
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ThreadedServer:
        self._thread = threading.Thread(target=self._main, name="fuzz-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the fuzz server did not start in time")
        if self._failure is not None:
            raise RuntimeError("the fuzz server did not start") from self._failure
        return self

    def _main(self) -> None:
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._up())
        except BaseException as exc:  # reported to start()
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(self._down())
            finally:
                loop.close()

    async def _up(self) -> None:
        self.app = create_app(self.settings)
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server  # noqa: SLF001 - the port the kernel chose
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def _down(self) -> None:
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), 60)

    def call(self, awaitable: Awaitable[T], timeout: float = 60.0) -> T:
        """Run a coroutine on the server's loop and wait for its result (from another thread)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(awaitable, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.loop is not None and self._thread is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(90)

    # Accounts ---------------------------------------------------------------------------

    async def account(self, username: str) -> Account:
        async with self.app[keys.DATABASE].session() as db:  # type: ignore[index]
            user = (await db.execute(select(User).where(User.username == username))).scalar_one()
            return Account(user.id, user.username, user.role, user.unit_id, user.bridge_point_id)

    async def restore(self, account: Account, ttl: int = 3600, session_id: int | None = None) -> str:
        """Undo what a fuzz case may have done to ``account`` (role, unit, active, name); a fresh token.

        PATCH /users/{id} may deactivate the fuzzer's own admin, demote it or
        change its password (which revokes its tokens); POST /auth/logout signs
        its token out. Each case gets the account back as it was, and a new token.
        """
        async with self.app[keys.DATABASE].session() as db:  # type: ignore[index]
            user = await db.get(User, account.id)
            assert user is not None
            user.active, user.role, user.username = True, account.role, account.username
            user.unit_id, user.bridge_point_id = account.unit_id, account.bridge_point_id
            version = user.token_version
        return issue_token(self.app[keys.JWT_SECRET], account.id, version, ttl,  # type: ignore[index]
                           session_id=session_id)


def copy_database(template: Path, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, data_dir / "bridgecast.db")


async def add_sessions(app: web.Application, speaker_id: int, point_ids: list[int],
                       statuses: list[SessionStatus]) -> list[int]:
    """One session per status, inviting ``point_ids``, scheduled five minutes from now."""
    start = datetime.now(UTC) + timedelta(minutes=5)
    ids = []
    async with app[keys.DATABASE].session() as db:
        for index, status in enumerate(statuses):
            session = Session(title=f"Fuzz {index} ({status.value})", speaker_id=speaker_id, scheduled_start=start,
                              scheduled_end=start + timedelta(hours=1), status=status)
            session.invites = [SessionInvite(bridge_point_id=pid) for pid in point_ids]
            db.add(session)
            await db.flush()
            ids.append(session.id)
    return ids


def endpoint_count(app: web.Application) -> int:
    """Media endpoints open in every live room of the app (WHIP, WHEP and the sockets' own)."""
    return sum(len(room.media.endpoints()) for room in app[keys.LIVE].rooms.values())


def resource_count(app: web.Application) -> int:
    return sum(len(room.resources) for room in app[keys.LIVE].rooms.values())


def held_tickets(app: web.Application) -> int:
    """Peer-connection quota tickets still held, over every user (0 when nothing is open)."""
    quotas = app[keys.LIVE].quotas
    return sum(quotas.endpoints._users.values())  # noqa: SLF001 - no public total


def summary(counts: dict[Any, int]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in sorted(counts.items(), key=lambda kv: str(kv[0])))
