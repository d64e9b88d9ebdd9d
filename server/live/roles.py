"""Who someone is in one live session: the one rule, for pages, websockets, WHIP and WHEP.

The account decides, never the client: the session's speaker and
administrators host; the operator of an invited bridge point is that hall;
everyone else who may see the session is a member. A client may ask for a
lesser role (an administrator who only wants to watch joins as a member),
never a greater one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from server.auth.roles import Role
from server.live.events import LiveRole, PointId, hall_key, user_key
from server.live.permissions import PermissionDenied


class Caller(Protocol):
    """The authenticated account (``server.auth.principal.Principal`` is one)."""

    @property
    def user_id(self) -> int: ...

    @property
    def role(self) -> Role: ...

    @property
    def bridge_point_id(self) -> int | None: ...


class HostedSession(Protocol):
    """What the rule needs of a session (the stored one and ``SessionInfo`` both have it)."""

    @property
    def speaker_id(self) -> int | None: ...

    @property
    def invited_point_ids(self) -> Collection[int]: ...


@dataclass(frozen=True, slots=True)
class Seat:
    """A caller's place in a session: role, the hall's point, and the participant key."""

    role: LiveRole
    point_id: PointId | None
    key: str


def may_host(caller: Caller, session: HostedSession) -> bool:
    return caller.role is Role.ADMIN or (session.speaker_id is not None and caller.user_id == session.speaker_id)


def live_role(caller: Caller, session: HostedSession, wanted: str | None = None) -> Seat:
    """The caller's seat; ``wanted`` ("host", "hall", "member") may only lower it.

    Raises PermissionDenied when ``wanted`` is above what the account allows.
    """
    hosting = may_host(caller, session)
    point = caller.bridge_point_id
    hall_point = point if point is not None and point in session.invited_point_ids else None
    is_hall = caller.role is Role.OPERATOR and hall_point is not None
    if wanted == "host" and not hosting:
        raise PermissionDenied("member", "host", "only the session's speaker or an administrator hosts")
    if wanted == "hall" and not is_hall:
        raise PermissionDenied("member", "hall", "only the operator of an invited bridge point joins as a hall")
    if wanted != "member":
        if hosting and wanted in (None, "host"):
            return Seat(LiveRole.HOST, None, user_key(caller.user_id))
        if is_hall:
            assert hall_point is not None
            return Seat(LiveRole.HALL, hall_point, hall_key(hall_point))
    return Seat(LiveRole.MEMBER, None, user_key(caller.user_id))
