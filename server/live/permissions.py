"""What each live role may do in a session.

One table, denying by default: an action or role missing from it (or a string
from the wire that names neither) is forbidden. The table answers "may this
role ever do this"; rules that depend on the moment (a hall publishes only
while it holds the floor) are separate functions below. Rules on the target
(a hall lowers only its own hand) belong to the caller, which knows who sent
the message.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from server.live.events import LiveRole, PointId

FORBIDDEN = "forbidden"


class Action(enum.StrEnum):
    """Something a participant asks to do in a live session."""

    RAISE_HAND = "raise_hand"
    LOWER_HAND = "lower_hand"
    GRANT_FLOOR = "grant_floor"
    REVOKE_FLOOR = "revoke_floor"
    MUTE = "mute"
    REMOVE = "remove"
    QUESTION = "question"
    PUBLISH = "publish"
    START = "start"
    END = "end"
    VIEW_ROLL_CALL = "view_roll_call"
    # A hall's page tells what its browser decodes (the quality board), and runs its connection test.
    REPORT_QUALITY = "report_quality"


_ALLOWED: Mapping[LiveRole, frozenset[Action]] = {
    # The host runs the session; it lowers a hand to dismiss a request, and
    # never raises one or asks a question (it answers them).
    LiveRole.HOST: frozenset(
        {
            Action.LOWER_HAND,
            Action.GRANT_FLOOR,
            Action.REVOKE_FLOOR,
            Action.MUTE,
            Action.REMOVE,
            Action.PUBLISH,
            Action.START,
            Action.END,
            Action.VIEW_ROLL_CALL,
        }
    ),
    # A hall asks for the floor and speaks when given it (PUBLISH is further
    # limited by may_publish); it sees its own state, not the whole board.
    LiveRole.HALL: frozenset({Action.RAISE_HAND, Action.LOWER_HAND, Action.QUESTION, Action.PUBLISH,
                              Action.REPORT_QUALITY}),
    # A member alone online only sends written questions: the floor belongs to halls.
    LiveRole.MEMBER: frozenset({Action.QUESTION}),
}


class PermissionDenied(Exception):
    """The role may not do the action; ``code`` is always "forbidden"."""

    code = FORBIDDEN

    def __init__(self, role: str, action: str, message: str | None = None) -> None:
        self.role = role
        self.action = action
        self.message = message or f"{role} may not {action}"
        super().__init__(self.message)


def _parse(role: str, action: str) -> tuple[LiveRole, Action] | None:
    # Strings come straight from messages; an unknown one is a denial, not a crash.
    try:
        return LiveRole(role), Action(action)
    except ValueError:
        return None


def allowed(role: LiveRole | str, action: Action | str) -> bool:
    """Whether the role may ever do the action (for PUBLISH see also may_publish)."""
    parsed = _parse(role, action)
    return parsed is not None and parsed[1] in _ALLOWED.get(parsed[0], frozenset())


def require(role: LiveRole | str, action: Action | str) -> None:
    """Raise PermissionDenied unless ``allowed(role, action)``."""
    if not allowed(role, action):
        raise PermissionDenied(str(role), str(action))


def may_publish(role: LiveRole | str, point_id: PointId | None, floor_holder: PointId | None) -> bool:
    """Whether the participant may send media now.

    The host always; a hall only while its own point holds the floor; a member never.
    """
    if role == LiveRole.HOST:
        return True
    if role == LiveRole.HALL:
        return point_id is not None and point_id == floor_holder
    return False


def require_publish(role: LiveRole | str, point_id: PointId | None, floor_holder: PointId | None) -> None:
    """Raise PermissionDenied unless ``may_publish(role, point_id, floor_holder)``."""
    if not may_publish(role, point_id, floor_holder):
        raise PermissionDenied(str(role), Action.PUBLISH.value, f"{role} may not publish now")
