"""Connection presence: every endpoint's join, leave and drop, on record before the client hears of it.

``PresenceRecorder`` subscribes to every session's events. Each
``EndpointJoined``, ``EndpointLeft`` and ``EndpointDropped`` becomes an
append-only row of ``presence_events``, unique by the event's id, so an
event written twice (a retry, a replay of the spool) is stored once: the
database's unique constraint decides, not a check in Python.

The write path, in order of what can go wrong:

* **Normal.** The handler queues the row and returns an awaitable; the room
  awaits it (outside its lock) before it welcomes the client or answers the
  WHEP/WHIP request. One writer task takes whatever is queued and inserts it
  in one transaction: under a storm of joins, one commit serves hundreds.
* **The database is slow or down.** A join not written within
  ``write_timeout_seconds`` is appended to a local spool file
  (``presence-spool.jsonl`` in the data folder, flushed and fsync'ed) and the
  client is welcomed: it is durable on this machine. The writer keeps the
  rows queued (at most ``queue_limit``; beyond that they are in the spool
  only) and retries with a growing pause; when the database answers again it
  writes the queue, then replays the spool, both idempotently, then removes
  the spool.
* **The server is killed.** Every acknowledged row is in the database or the
  spool. A heartbeat row (``node_heartbeats``) is written every
  ``heartbeat_seconds``; on the next start :meth:`PresenceRecorder.recover`
  replays the spool, then closes every interval this node left open with a
  ``server_stop`` row at the last heartbeat,
  keyed by the join's id so a second recovery adds nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, exists, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import aliased

from server.live import events as ev
from server.live.bus import EventBus, Subscription, dispatcher
from sqlalchemy.ext.asyncio import AsyncEngine

from server.storage.db import Database, create_engine
from server.storage.models import NodeHeartbeat, PresenceEvent, utcnow

log = logging.getLogger(__name__)

SPOOL_NAME = "presence-spool.jsonl"
# Rows the database refused for what they hold (kept for a person to look at, never retried).
REJECTED_NAME = "presence-rejected.jsonl"
# Rows per transaction: large enough for a storm, small enough to keep a transaction short.
BATCH = 1000
# Pause between attempts while the database is down: doubling up to the last.
RETRY_PAUSES = (0.25, 0.5, 1.0, 2.0, 3.0)
# How long one write attempt may take before it counts as failed.
ATTEMPT_TIMEOUT = 15.0

_KIND = {ev.EndpointJoined: "join", ev.EndpointLeft: "leave", ev.EndpointDropped: "drop"}


def row_of(event: ev.EndpointJoined | ev.EndpointLeft | ev.EndpointDropped, node: str) -> dict[str, Any]:
    participant = event.participant
    assert event.session_id is not None
    return {
        "event_id": event.id, "session_id": event.session_id, "at": event.at, "kind": _KIND[type(event)],
        "endpoint_id": event.endpoint_id, "endpoint_kind": event.endpoint_kind, "participant_key": participant.key,
        "role": participant.role.value, "user_id": participant.user_id, "bridge_point_id": participant.point_id,
        "node": node,
    }


class PresenceRecorder:
    """The attendance subscriber of the event stream: durable, idempotent, never in the room's way."""

    def __init__(self, database: Database, *, node: str = "hub", spool_dir: Path | None = None,
                 write_timeout: float = 2.0, queue_limit: int = 100000, heartbeat_seconds: float = 5.0,
                 clock: Callable[[], datetime] = utcnow,
                 on_late: Callable[[set[int]], Awaitable[None]] | None = None) -> None:
        self.database = database
        self.node = node
        self.spool_path = (spool_dir or Path(".")) / SPOOL_NAME
        self.write_timeout = write_timeout
        self.queue_limit = queue_limit
        self.heartbeat_seconds = heartbeat_seconds
        self._clock = clock
        # (row, its acknowledgement, when it was queued)
        self._queue: deque[tuple[dict[str, Any], asyncio.Future[None], float]] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._acks: set[asyncio.Future[None]] = set()
        self._spool_lock = asyncio.Lock()
        self._stopping = False
        # The writer's own connection: it never queues for the pool behind request handlers.
        self._engine: AsyncEngine | None = None
        self._engine_url = ""
        # Rows that reached the database after the fact (a replayed spool, a recovery): the sessions
        # they belong to are handed to ``on_late`` (ended sessions' records are computed again).
        self._on_late = on_late
        self._replay: asyncio.Task[None] | None = None
        self.rejected = 0
        self.handle = dispatcher({ev.EndpointJoined: self._record, ev.EndpointLeft: self._record,
                                  ev.EndpointDropped: self._record})
        # Figures for operations (and tests): rows written, rows spooled, failed attempts.
        self.written = 0
        self.spooled = 0
        self.failures = 0
        self.database_ok = True

    def subscribe(self, bus: EventBus) -> Subscription:
        return bus.subscribe(self.handle, name="presence-recorder")

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def healthy(self) -> bool:
        """Writes are going through: the last attempt worked and nothing has waited past the timeout."""
        if not self.database_ok:
            return False
        return not self._queue or time.monotonic() - self._queue[0][2] <= self.write_timeout

    # lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover what an earlier run left, then write from the queue and beat the heart."""
        await self.recover()
        try:
            # At once: from now on, a second process of the same name sees this one running.
            await asyncio.wait_for(self._beat(), ATTEMPT_TIMEOUT)
        except Exception:
            log.warning("presence: the first heartbeat could not be written")
        self._tasks = [asyncio.create_task(self._writer(), name="presence-writer"),
                       asyncio.create_task(self._heartbeat(), name="presence-heartbeat")]

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (within ``timeout``), spool the rest, stop."""
        self._stopping = True
        self._wake.set()
        writer = self._tasks[0] if self._tasks else None
        if writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout)
            except (TimeoutError, asyncio.TimeoutError):
                pass
        for task in [*self._tasks, *([self._replay] if self._replay else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, *([self._replay] if self._replay else []), return_exceptions=True)
        for ack in list(self._acks):
            ack.cancel()
        await asyncio.gather(*self._acks, return_exceptions=True)
        if self._queue:
            await self._spool([row for row, _, _ in self._queue])
            for _, future, _ in self._queue:
                if not future.done():
                    future.set_result(None)
            self._queue.clear()
        else:
            # Everything is written and every endpoint has left: nothing for a restart to close,
            # and no heartbeat for it to wait out.
            try:
                await asyncio.wait_for(self._forget_beat(), timeout)
            except Exception:
                log.warning("presence: could not clear the heartbeat")
        await self.close_engine()

    async def recover(self) -> None:
        """Replay the spool, then close this node's intervals left open by a run that did not stop.

        A heartbeat younger than two intervals may be another process of the same node name still
        running: it is waited out, and if it moves meanwhile this process refuses to start rather
        than close that one's endpoints.
        """
        await self._replay_spool()
        beat = await self._read_beat()
        if beat is not None:
            fresh_until = beat + timedelta(seconds=2 * self.heartbeat_seconds)
            wait = (fresh_until - self._clock()).total_seconds()
            if wait > 0:
                log.info("presence: the last heartbeat of %s is %.1f s old; waiting it out", self.node,
                         2 * self.heartbeat_seconds - wait)
                await asyncio.sleep(wait)
                if await self._read_beat() != beat:
                    raise RuntimeError(f"another server process named {self.node!r} is running (its heartbeat "
                                       "moved): give each process its own [attendance] node_name")
        async with self.database.session() as db:
            end = aliased(PresenceEvent)
            closed = exists().where(and_(end.node == PresenceEvent.node, end.endpoint_id == PresenceEvent.endpoint_id,
                                         end.session_id == PresenceEvent.session_id, end.kind != "join"))
            query = select(PresenceEvent).where(PresenceEvent.node == self.node, PresenceEvent.kind == "join", ~closed)
            open_joins = list(await db.scalars(query))
        if not open_joins:
            return
        rows = []
        for join in open_joins:
            at = max(beat, join.at) if beat is not None else join.at
            rows.append({"event_id": f"stop:{join.event_id}"[:40], "session_id": join.session_id, "at": at,
                         "kind": "server_stop", "endpoint_id": join.endpoint_id, "endpoint_kind": join.endpoint_kind,
                         "participant_key": join.participant_key, "role": join.role, "user_id": join.user_id,
                         "bridge_point_id": join.bridge_point_id, "node": self.node})
        await self._insert_checked(rows)
        log.warning("presence: closed %d interval(s) left open by a server that stopped at %s",
                    len(rows), beat.isoformat() if beat else "an unknown time")
        await self._late({row["session_id"] for row in rows})

    async def _late(self, session_ids: set[int]) -> None:
        if self._on_late is not None and session_ids:
            try:
                await self._on_late(session_ids)
            except Exception:
                log.exception("presence: could not refresh the records of sessions %s", sorted(session_ids))

    # the subscriber --------------------------------------------------------------------------

    async def _record(self, event: ev.EndpointJoined | ev.EndpointLeft | ev.EndpointDropped) -> Awaitable[None] | None:
        if event.session_id is None:
            return None
        row = row_of(event, self.node)
        if len(self._queue) >= self.queue_limit:
            # The database has been away long: this one waits in the spool only.
            await self._spool([row])
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future, time.monotonic()))
        self._wake.set()
        # A task, so the row reaches the spool after the timeout whether or not the publisher waits.
        task = asyncio.ensure_future(self._acknowledged(row, future))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)
        return task

    async def _acknowledged(self, row: dict[str, Any], future: asyncio.Future[None]) -> None:
        """Return once ``row`` is durable: in the database, or else in the spool."""
        try:
            await asyncio.wait_for(asyncio.shield(future), self.write_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            if not future.done():
                await self._spool([row])

    # the writer ---------------------------------------------------------------------------------

    async def _writer(self) -> None:
        failures = 0
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
            try:
                await asyncio.wait_for(self._insert_checked([row for row, _, _ in batch]), ATTEMPT_TIMEOUT)
            except Exception as exc:
                self.failures += 1
                if self.database_ok:
                    log.error("presence: the database refused a write (%s); retrying, joins are spooled meanwhile",
                              exc.__class__.__name__)
                self.database_ok = False
                if self._stopping:
                    return
                await asyncio.sleep(RETRY_PAUSES[min(failures, len(RETRY_PAUSES) - 1)])
                failures += 1
                continue
            for _ in batch:
                _, future, _ = self._queue.popleft()
                if not future.done():
                    future.set_result(None)
            self.written += len(batch)
            if not self.database_ok or failures:
                log.warning("presence: the database is back; writing what waited")
                self.database_ok = True
                failures = 0
            if self._spool_waiting() and (self._replay is None or self._replay.done()):
                # In a task of its own: new joins keep being written (and welcomed) meanwhile.
                self._replay = asyncio.create_task(self._replay_in_background(), name="presence-replay")

    async def _replay_in_background(self) -> None:
        try:
            await asyncio.wait_for(self._replay_spool(), ATTEMPT_TIMEOUT * 4)
        except Exception:
            self.failures += 1
            log.warning("presence: the spool could not be replayed yet; retrying", exc_info=True)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await asyncio.wait_for(self._beat(), ATTEMPT_TIMEOUT)
            except Exception:
                log.debug("presence: heartbeat not written", exc_info=True)

    async def _read_beat(self) -> datetime | None:
        async with self.database.session() as db:
            beat = await db.get(NodeHeartbeat, self.node)
            return beat.at if beat is not None else None

    async def _forget_beat(self) -> None:
        table = NodeHeartbeat.__table__
        async with self._writer_engine().begin() as connection:
            await connection.execute(table.delete().where(table.c.node == self.node))

    async def _beat(self) -> None:
        at = self._clock()
        table = NodeHeartbeat.__table__
        async with self._writer_engine().begin() as connection:
            done = await connection.execute(table.update().where(table.c.node == self.node).values(at=at))
            if done.rowcount == 0:
                await connection.execute(table.insert().values(node=self.node, at=at))

    def _writer_engine(self) -> AsyncEngine:
        if self._engine is None or self._engine_url != self.database.url:
            if self._engine is not None:
                asyncio.ensure_future(self._engine.dispose())
            self._engine = create_engine(self.database.url, pool_size=1, max_overflow=1)
            self._engine_url = self.database.url
        return self._engine

    async def close_engine(self, timeout: float = 5.0) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            try:
                await asyncio.wait_for(engine.dispose(), timeout)
            except (TimeoutError, asyncio.TimeoutError):
                log.warning("presence: the writer's connection did not close within %.0f s", timeout)

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows in one transaction, skipping those already stored (same event id)."""
        if not rows:
            return
        engine = self._writer_engine()
        dialect = engine.dialect.name
        if dialect == "postgresql":
            statement = postgresql.insert(PresenceEvent).on_conflict_do_nothing(index_elements=["event_id"])
        elif dialect == "sqlite":
            statement = sqlite.insert(PresenceEvent).on_conflict_do_nothing(index_elements=["event_id"])
        else:  # pragma: no cover - the two backends we support
            statement = insert(PresenceEvent)
        async with engine.begin() as connection:
            await connection.execute(statement, rows)

    async def _insert_checked(self, rows: list[dict[str, Any]]) -> None:
        """``_insert``, but a row the database refuses for what it holds (a foreign key gone, a value
        out of range) is set aside in a file of its own and logged, never retried for ever: one bad
        row must not stop every other row behind it."""
        try:
            await self._insert(rows)
            return
        except (IntegrityError, DataError):
            if len(rows) == 1:
                await self._reject(rows[0])
                return
        for row in rows:
            try:
                await self._insert([row])
            except (IntegrityError, DataError):
                await self._reject(row)

    async def _reject(self, row: dict[str, Any]) -> None:
        self.rejected += 1
        log.error("presence: the database refused row %s (session %s, %s); kept in %s", row.get("event_id"),
                  row.get("session_id"), row.get("kind"), REJECTED_NAME)
        line = json.dumps({**row, "at": row["at"].isoformat()}) + "\n"
        await asyncio.to_thread(_append_synced, self.spool_path.with_name(REJECTED_NAME), line)

    # the spool -----------------------------------------------------------------------------------

    async def _spool(self, rows: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps({**row, "at": row["at"].isoformat()}) + "\n" for row in rows)
        if not lines:
            return
        async with self._spool_lock:
            await asyncio.to_thread(_append_synced, self.spool_path, lines)
            self.spooled += lines.count("\n")

    def _spool_waiting(self) -> bool:
        return self.spool_path.exists() or self.spool_path.with_suffix(".replaying").exists()

    async def _replay_spool(self) -> None:
        """Write every spooled row (idempotently), then remove the spool.

        The spool is renamed before it is read, so rows spooled meanwhile go
        to a new file; a replay cut short (a crash, the database gone again)
        leaves the renamed file, replayed first next time.
        """
        replaying = self.spool_path.with_suffix(".replaying")
        while self._spool_waiting():
            async with self._spool_lock:
                if not replaying.exists():
                    await asyncio.to_thread(self.spool_path.rename, replaying)
            await self._replay_file(replaying)

    async def _replay_file(self, replaying: Path) -> None:
        text = await asyncio.to_thread(replaying.read_text, encoding="utf-8")
        rows = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
                row["at"] = datetime.fromisoformat(row["at"])
                rows.append(row)
            except (ValueError, KeyError, TypeError):
                # A line cut by a crash mid-write was never acknowledged.
                log.warning("presence: skipped a spool line that is not a whole row")
        for start in range(0, len(rows), BATCH):
            await self._insert_checked(rows[start:start + BATCH])
        await asyncio.to_thread(replaying.unlink)
        log.info("presence: replayed %d spooled row(s)", len(rows))
        await self._late({row["session_id"] for row in rows if "session_id" in row})


def _append_synced(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as spool:
        spool.write(text)
        spool.flush()
        os.fsync(spool.fileno())
