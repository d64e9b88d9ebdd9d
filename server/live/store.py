"""What a live session needs from persistence, as plain data and a small interface.

The database implementation is ``server.storage.live.DatabaseLiveStore``;
tests use an in-memory one. What the live session does is not stored through
here: stores subscribe to the event stream (``server.live.bus``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from server.live.lifecycle import SessionAction, SessionStatus


@dataclass
class SessionInfo:
    """A session as a live room needs it."""

    id: int
    title: str
    speaker_id: int | None
    status: SessionStatus
    invited: dict[int, str]  # bridge point id -> name, in display order
    actual_start: datetime | None = None
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    record: bool = True  # the archive records it when it goes live

    @property
    def invited_point_ids(self) -> list[int]:
        return list(self.invited)


class LiveStore(Protocol):
    async def load(self, session_id: int) -> SessionInfo:
        """The session as it is now (NotFound if there is none)."""
        ...

    async def transition(self, session_id: int, action: SessionAction) -> SessionInfo:
        """Apply a lifecycle action and return the session as it now is."""
        ...
