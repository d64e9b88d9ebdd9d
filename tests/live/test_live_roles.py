"""live_role: the one rule for host / hall / member, as a table."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from server.auth.roles import Role
from server.live.events import LiveRole
from server.live.permissions import PermissionDenied
from server.live.roles import live_role


@dataclass(frozen=True)
class Caller:
    user_id: int
    role: Role
    bridge_point_id: int | None = None


@dataclass(frozen=True)
class Session:
    speaker_id: int | None
    invited_point_ids: tuple[int, ...]


SESSION = Session(speaker_id=1, invited_point_ids=(5, 6))


@pytest.mark.parametrize(
    ("caller", "wanted", "role", "point", "key"),
    [
        (Caller(1, Role.SPEAKER), None, LiveRole.HOST, None, "user:1"),
        (Caller(2, Role.SPEAKER), None, LiveRole.MEMBER, None, "user:2"),  # another session's speaker
        (Caller(3, Role.ADMIN), None, LiveRole.HOST, None, "user:3"),
        (Caller(3, Role.ADMIN), "member", LiveRole.MEMBER, None, "user:3"),
        (Caller(4, Role.OPERATOR, 5), None, LiveRole.HALL, 5, "point:5"),
        (Caller(4, Role.OPERATOR, 5), "hall", LiveRole.HALL, 5, "point:5"),
        (Caller(4, Role.OPERATOR, 5), "member", LiveRole.MEMBER, None, "user:4"),
        (Caller(5, Role.OPERATOR, 9), None, LiveRole.MEMBER, None, "user:5"),  # a point not invited
        (Caller(6, Role.MEMBER, 5), None, LiveRole.MEMBER, None, "user:6"),  # members are never the hall
    ],
)
def test_live_role(caller: Caller, wanted: str | None, role: LiveRole, point: int | None, key: str) -> None:
    seat = live_role(caller, SESSION, wanted)
    assert (seat.role, seat.point_id, seat.key) == (role, point, key)


@pytest.mark.parametrize(("caller", "wanted"), [
    (Caller(6, Role.MEMBER), "host"),
    (Caller(6, Role.MEMBER), "hall"),
    (Caller(1, Role.SPEAKER), "hall"),
    (Caller(5, Role.OPERATOR, 9), "hall"),
    (Caller(4, Role.OPERATOR, 5), "host"),
])
def test_nobody_gets_a_role_above_their_account(caller: Caller, wanted: str) -> None:
    with pytest.raises(PermissionDenied):
        live_role(caller, SESSION, wanted)
