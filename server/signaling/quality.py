"""The quality monitor: a subscriber of one session that grades its points and tells the hosts.

About once a second (``QUALITY_SECONDS``) it reads every endpoint's link
from the media room (server-side figures, a few attribute reads each),
lets the session grade its invited points (``LiveSession.grade_points``,
which returns a :class:`~server.live.events.QualityAlarm` when a point
drops, stays red or recovers), commits those events, and sends the hosts a
``quality`` message: each point's grade, reasons and figures, and the
samples of its sparkline taken since the last message (the whole history
to a host who has not had it yet). A hall's last connection dropping is
graded at once, not at the next second.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from server.live import events as ev
from server.live.bus import dispatcher
from server.live.events import Event, LiveRole
from server.live.quality import PointQuality
from server.live.session import LiveSession
from server.signaling import outgoing
from server.signaling.broadcaster import Broadcaster
from server.signaling.connections import safe_send

log = logging.getLogger(__name__)

QUALITY_SECONDS = 1.0


class QualityMonitor:
    def __init__(self, session: LiveSession, readings: Callable[[], dict[str, list[Any]]],
                 broadcaster: Broadcaster, commit: Callable[[Callable[[], list[Event]]], Awaitable[None]],
                 spawn: Callable[[Awaitable[Any]], None]) -> None:
        self.session = session
        self._readings = readings
        self._broadcaster = broadcaster
        self._commit = commit
        self._spawn = spawn
        # Hosts (by id of their member) who have had the whole history; per point, the samples sent so far.
        self._told: set[int] = set()
        self._sent: dict[int, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.handle = dispatcher({
            ev.EndpointDropped: self._dropped,
            ev.QualityAlarm: self._alarm,
            ev.PrecheckDone: self._precheck,
        })

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"quality-{self.session.info.id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(QUALITY_SECONDS)
            try:
                await self.evaluate()
            except Exception:
                # One failure must not end the board for the session.
                log.exception("session %s: quality evaluation failed", self.session.info.id)

    async def evaluate(self) -> None:
        """Grade every point now, commit its alarms, and tell the hosts."""
        readings = self._readings()
        await self._commit(lambda: self.session.grade_points(readings))
        await self.send_hosts()

    async def send_hosts(self) -> None:
        hosts = self._broadcaster.hosts()
        if not hosts:
            self._told.clear()
            return
        points = self.session.quality_points()
        incremental: str | None = None
        full: str | None = None
        present = set()
        for member in hosts:
            present.add(id(member))
            if id(member) in self._told:
                if incremental is None:
                    incremental = json.dumps(outgoing.quality_message(self.session, points, self._new_samples(points)))
                await safe_send(member, incremental)
            else:
                if full is None:
                    full = json.dumps(outgoing.quality_message(self.session, points, None))
                self._told.add(id(member))
                await safe_send(member, full)
        self._told &= present
        self._sent = {p.point_id: p.samples_taken for p in points}

    def _new_samples(self, points: list[PointQuality]) -> dict[int, int]:
        """How many of each point's latest samples the hosts have not had."""
        return {p.point_id: min(p.samples_taken - self._sent.get(p.point_id, 0), len(p.history)) for p in points}

    # events ------------------------------------------------------------------------------------

    async def _dropped(self, event: ev.EndpointDropped) -> None:
        # A hall lost its last connection: graded now, so the board says so at once.
        if event.last and event.participant.role is LiveRole.HALL and event.participant.point_id is not None:
            point_id = event.participant.point_id
            readings = self._readings()
            self._spawn(self._commit(lambda: self.session.grade_points(readings, only=point_id)))

    async def _alarm(self, event: ev.QualityAlarm) -> None:
        await self._broadcaster.send_to_hosts(outgoing.quality_alarm(event))

    async def _precheck(self, event: ev.PrecheckDone) -> None:
        await self._broadcaster.send_to_hosts(outgoing.precheck_message(event))
