"""The live rooms of this server process, one per session in progress.

The registry is itself a subscriber of the event bus: a session edited or
cancelled (:class:`~server.live.events.SessionChanged`) and a user signed out
(:class:`~server.live.events.UserSignedOut`) reach the rooms that way,
published by whoever changed the data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from server.live import events as ev
from server.live.bus import EventBus, dispatcher
from server.live.lifecycle import SessionStatus
from server.live.quality import Thresholds
from server.live.quotas import Quotas
from server.live.session import GRACE_SECONDS, LiveSession
from server.live.store import LiveStore
from server.media.peer import IceConfig
from server.media.stats import MediaStats
from server.signaling.directions import ViewDirections
from server.signaling.messages import ProtocolError
from server.signaling.room import LiveRoom


log = logging.getLogger(__name__)


class LiveRegistry:
    """Creates a session's room on first use and forgets it when it closes."""

    def __init__(self, store: LiveStore, bus: EventBus, ice: IceConfig, *,
                 grace_seconds: float = GRACE_SECONDS, quotas: Quotas | None = None,
                 thresholds: Thresholds | None = None, stats: MediaStats | None = None,
                 prechecks: Callable[[int], Awaitable[list[ev.PrecheckDone]]] | None = None) -> None:
        self._store = store
        self._bus = bus
        self._ice = ice
        self._grace = grace_seconds
        self._thresholds = thresholds
        # Each point's last connection test, kept across restarts (the board shows it from the start).
        self._prechecks = prechecks
        # The process's media counters (/metrics), shared by every room.
        self.stats = stats or MediaStats()
        # Peer connections and websockets per user (across sessions) and per session.
        self.quotas = quotas or Quotas.unlimited()
        self.rooms: dict[int, LiveRoom] = {}
        # Who sends views to relays (server/signaling/cascade.py), given to every room made.
        self.directions: ViewDirections | None = None
        self._lock = asyncio.Lock()
        self._subscription = bus.subscribe(dispatcher({
            ev.SessionChanged: self._session_changed,
            ev.UserSignedOut: self._signed_out,
            ev.UserChanged: self._user_changed,
        }), name="live-registry")

    async def room(self, session_id: int) -> LiveRoom:
        """The session's room, created if needed; ended or cancelled sessions have none."""
        async with self._lock:
            room = self.rooms.get(session_id)
            if room is None:
                info = await self._store.load(session_id)
                if info.status in (SessionStatus.ENDED, SessionStatus.CANCELLED):
                    raise ProtocolError("session_closed", f"the session is {info.status.value}")
                session = LiveSession(info, grace_seconds=self._grace, thresholds=self._thresholds)
                if self._prechecks is not None:
                    try:
                        session.prechecks.update({e.point_id: e for e in await self._prechecks(session_id)})
                    except Exception:  # noqa: BLE001 - the board starts without them; new tests still show
                        log.warning("session %s: earlier connection tests could not be loaded", session_id)
                room = LiveRoom(session, self._store, self._bus, self._ice, on_closed=self._forget,
                                quotas=self.quotas, stats=self.stats)
                room.directions = self.directions
                self.rooms[session_id] = room
            return room

    def existing(self, session_id: int) -> LiveRoom | None:
        return self.rooms.get(session_id)

    async def _session_changed(self, event: ev.SessionChanged) -> None:
        # A new speaker or invitation list applies to the next join; a
        # cancelled session's room closes, telling everyone connected.
        room = self.rooms.get(event.session_id) if event.session_id is not None else None
        if room is not None:
            await room.reload(await self._store.load(room.info.id))

    async def _signed_out(self, event: ev.UserSignedOut) -> None:
        for room in list(self.rooms.values()):
            await room.sign_out(event.user_id, event.token_id)

    async def _user_changed(self, event: ev.UserChanged) -> None:
        for room in list(self.rooms.values()):
            await room.reseat(event.user_id)

    async def _forget(self, room: LiveRoom) -> None:
        if self.rooms.get(room.info.id) is room:
            del self.rooms[room.info.id]

    async def close(self) -> None:
        self._subscription.cancel()
        for room in list(self.rooms.values()):
            await room.close()
