"""The live rooms of this server process, one per session in progress."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from server.live.lifecycle import SessionStatus
from server.media.peer import IceConfig
from server.media.room import MediaRoom
from server.signaling.messages import ProtocolError
from server.live.store import LiveStore, SessionInfo
from server.signaling.room import LiveRoom


class LiveRegistry:
    """Creates a session's room on first use and forgets it when it closes."""

    def __init__(self, load: Callable[[int], Awaitable[SessionInfo]], store: LiveStore, ice: IceConfig) -> None:
        self._load = load
        self._store = store
        self._ice = ice
        self.rooms: dict[int, LiveRoom] = {}
        self._lock = asyncio.Lock()

    async def room(self, session_id: int) -> LiveRoom:
        """The session's room, created if needed; ended or cancelled sessions have none."""
        async with self._lock:
            room = self.rooms.get(session_id)
            if room is None:
                info = await self._load(session_id)
                if info.status in (SessionStatus.ENDED, SessionStatus.CANCELLED):
                    raise ProtocolError("session_closed", f"the session is {info.status.value}")
                media = MediaRoom(self._ice)
                room = LiveRoom(info, media, self._store, on_closed=self._forget)
                media.on_state = room.media_changed
                self.rooms[session_id] = room
            return room

    async def session_changed(self, session_id: int) -> None:
        """The session was edited or cancelled outside the room: follow it.

        A new speaker or invitation list applies to the next join; a cancelled
        session's room closes, telling everyone connected.
        """
        room = self.rooms.get(session_id)
        if room is None:
            return
        info = await self._load(session_id)
        if info.status in (SessionStatus.ENDED, SessionStatus.CANCELLED):
            room.info = info
            await room.close(1000, f"the session was {info.status.value}")
        else:
            room.info = info

    async def sign_out(self, user_id: int) -> None:
        """The user's tokens were revoked (password, role, deactivation): end their live connections."""
        for room in list(self.rooms.values()):
            await room.sign_out(user_id)

    def existing(self, session_id: int) -> LiveRoom | None:
        return self.rooms.get(session_id)

    async def _forget(self, room: LiveRoom) -> None:
        if self.rooms.get(room.info.id) is room:
            del self.rooms[room.info.id]

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            await room.close()
