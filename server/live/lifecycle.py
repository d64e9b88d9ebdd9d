"""A session's life: scheduled -> live -> ended, or cancelled before it starts.

Pure domain rules; storage and the views ask here before they change a status.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SessionStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


class SessionAction(enum.StrEnum):
    START = "start"
    END = "end"
    CANCEL = "cancel"
    EDIT = "edit"


# What each action needs the status to be, and what it leads to (None: unchanged).
_TRANSITIONS: dict[SessionAction, tuple[frozenset[SessionStatus], SessionStatus | None]] = {
    SessionAction.START: (frozenset({SessionStatus.SCHEDULED}), SessionStatus.LIVE),
    SessionAction.END: (frozenset({SessionStatus.LIVE}), SessionStatus.ENDED),
    SessionAction.CANCEL: (frozenset({SessionStatus.SCHEDULED}), SessionStatus.CANCELLED),
    # A live session may still have its title or description corrected.
    SessionAction.EDIT: (frozenset({SessionStatus.SCHEDULED, SessionStatus.LIVE}), None),
}


@dataclass(frozen=True)
class TransitionError(Exception):
    """The action is not possible in the session's current status."""

    action: SessionAction
    status: SessionStatus

    @property
    def code(self) -> str:
        return "invalid_status"

    def __str__(self) -> str:
        return f"cannot {self.action.value} a session that is {self.status.value}"


def transition(status: SessionStatus, action: SessionAction) -> SessionStatus:
    """The status after ``action``, or TransitionError if it is not allowed now."""
    allowed, result = _TRANSITIONS[action]
    if status not in allowed:
        raise TransitionError(action, status)
    return status if result is None else result


def can(status: SessionStatus, action: SessionAction) -> bool:
    return status in _TRANSITIONS[action][0]
