"""What a live session needs from persistence, as plain data and a small interface.

The database implementation is ``server.storage.live.DatabaseLiveStore``;
tests may use an in-memory one.
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


class LiveStore(Protocol):
    async def transition(self, session_id: int, action: SessionAction) -> SessionInfo:
        """Apply a lifecycle action and return the session as it now is."""
        ...

    async def floor_started(self, session_id: int, point_id: int, at: datetime, limit_seconds: int | None) -> int:
        """Record a grant's start; return its id."""
        ...

    async def floor_ended(self, grant_id: int, at: datetime, reason: str) -> None:
        """Record a grant's end."""
        ...
