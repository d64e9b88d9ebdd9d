"""The database: one async engine per application, and Alembic migrations."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

# PostgreSQL (seconds): connecting, waiting for a free pooled connection, one statement.
CONNECT_TIMEOUT = 3.0
POOL_TIMEOUT = 5.0
COMMAND_TIMEOUT = 10.0

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


# What SQLite says when the file cannot be used now (another process holds it, the disk went away),
# as opposed to a bug in a query ("no such table", a syntax error), which stays a 500 with its traceback.
_SQLITE_AWAY = ("database is locked", "unable to open database", "disk i/o error", "database or disk is full")


def database_unavailable(exc: BaseException) -> bool:
    """A failure to reach the database, as opposed to a bug in a query."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
            return True
        if isinstance(exc, sa_exc.OperationalError):
            text = str(exc.orig).lower()
            return any(marker in text for marker in _SQLITE_AWAY) or isinstance(
                exc.orig, (ConnectionError, TimeoutError, socket.gaierror))
        return False
    if isinstance(exc, sa_exc.TimeoutError):  # the pool: every connection busy or gone
        return True
    # Connecting failed (asyncpg raises these before SQLAlchemy wraps anything).
    return isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror))


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self.engine: AsyncEngine = create_engine(url, **engine_options)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()


def create_engine(url: str, **options: Any) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_file(Path(parsed.database))
        engine = create_async_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    options.setdefault("pool_pre_ping", True)
    # A database that went silent (a cut network, a hung server) must not hold requests, or a room's
    # lock, for asyncpg's default minute or for ever: connecting, waiting for a pooled connection and
    # each statement are bounded, and the failure is a 503 (middleware) or a retry (the stores).
    options.setdefault("pool_timeout", POOL_TIMEOUT)
    connect_args = {"timeout": CONNECT_TIMEOUT, "command_timeout": COMMAND_TIMEOUT,
                    **options.pop("connect_args", {})}
    return create_async_engine(url, connect_args=connect_args, **options)


def private_file(path: Path) -> None:
    """The embedded database readable by this account only (0600; SQLite gives its -wal and -shm
    files the same mode), whatever the umask: it holds every password hash and attendance record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # an empty file is an empty database
        return
    except FileExistsError:
        pass
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o): made private (600)", path, mode)
        os.chmod(path, mode & 0o700 or 0o600)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; WAL lets pages read while a
    # write is under way.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's ini interpolation treats % specially.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url``; blocks until done.

    The migration environment runs its own event loop, so when called from a
    thread that already runs one it works from a helper thread instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(alembic_config(url), revision)
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(command.upgrade, alembic_config(url), revision).result()
