import itertools

import pytest

from server.live.events import LiveRole
from server.live.permissions import (
    Action,
    PermissionDenied,
    allowed,
    may_publish,
    require,
    require_publish,
)

# Written out by hand, not derived from the module: a change to the table must change this too.
EXPECTED: dict[str, set[str]] = {
    "host": {
        "lower_hand",
        "grant_floor",
        "revoke_floor",
        "mute",
        "remove",
        "publish",
        "start",
        "end",
        "view_roll_call",
    },
    "hall": {"raise_hand", "lower_hand", "question", "publish", "report_quality"},
    "member": {"question"},
}
ACTIONS = [
    "raise_hand",
    "lower_hand",
    "grant_floor",
    "revoke_floor",
    "mute",
    "remove",
    "question",
    "publish",
    "start",
    "end",
    "view_roll_call",
    "report_quality",
]


def test_the_action_list_is_the_agreed_one() -> None:
    assert sorted(a.value for a in Action) == sorted(ACTIONS)
    assert sorted(r.value for r in LiveRole) == sorted(EXPECTED)


@pytest.mark.parametrize(("role", "action"), list(itertools.product(EXPECTED, ACTIONS)))
def test_every_role_and_action(role: str, action: str) -> None:
    expected = action in EXPECTED[role]
    assert allowed(role, action) is expected
    assert allowed(LiveRole(role), Action(action)) is expected
    if expected:
        require(role, action)
    else:
        with pytest.raises(PermissionDenied) as info:
            require(role, action)
        assert info.value.code == "forbidden"
        assert (info.value.role, info.value.action) == (role, action)


@pytest.mark.parametrize(
    ("role", "action"),
    [("admin", "start"), ("host", "fly"), ("", ""), ("HOST", "start")],
)
def test_unknown_roles_and_actions_are_denied(role: str, action: str) -> None:
    assert allowed(role, action) is False
    with pytest.raises(PermissionDenied) as info:
        require(role, action)
    assert info.value.code == "forbidden"


@pytest.mark.parametrize(
    ("role", "point_id", "floor_holder", "expected"),
    [
        ("host", None, None, True),
        ("host", 99, 1, True),
        ("hall", 1, 1, True),
        ("hall", 1, None, False),
        ("hall", 1, 2, False),
        ("hall", None, None, False),
        ("member", None, None, False),
        ("member", 1, 1, False),
        ("admin", 1, 1, False),
    ],
)
def test_may_publish(role: str, point_id: int | None, floor_holder: int | None, expected: bool) -> None:
    assert may_publish(role, point_id, floor_holder) is expected
    if expected:
        require_publish(role, point_id, floor_holder)
    else:
        with pytest.raises(PermissionDenied) as info:
            require_publish(role, point_id, floor_holder)
        assert info.value.code == "forbidden"
        assert info.value.action == "publish"
