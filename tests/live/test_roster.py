import json
from datetime import datetime, timedelta, timezone

import pytest

from server.live.events import LiveRole
from server.live.roster import (
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantStateChanged,
    RollCallEntry,
    Roster,
    RosterError,
    RosterEvent,
    participant_key,
)

T0 = datetime(2024, 5, 6, 8, 0, tzinfo=timezone.utc)
HP, TN, SL = 1, 2, 3  # Hải Phòng, Thái Nguyên, Sơn La


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def join_hall(
    roster: Roster, point_id: int, conn: str, minutes: float, user_id: int = 100
) -> tuple[Participant, list[RosterEvent]]:
    return roster.join(
        connection_id=conn,
        role=LiveRole.HALL,
        user_id=user_id,
        display_name=f"Hall {point_id}",
        now=at(minutes),
        point_id=point_id,
    )


@pytest.mark.parametrize(
    ("role", "user_id", "point_id", "key"),
    [
        (LiveRole.HALL, 100, HP, "point:1"),
        (LiveRole.HALL, 101, HP, "point:1"),  # another operator, same hall
        (LiveRole.HOST, 7, None, "user:7"),
        (LiveRole.HOST, 7, 99, "user:7"),  # the speaker at the hub point
        (LiveRole.MEMBER, 8, None, "user:8"),
    ],
)
def test_participant_key(role: LiveRole, user_id: int, point_id: int | None, key: str) -> None:
    assert participant_key(role, user_id, point_id) == key


def test_first_join_creates_a_connected_participant() -> None:
    roster = Roster()
    participant, events = join_hall(roster, HP, "c1", 0)
    assert participant == Participant(
        "point:1", 100, "Hall 1", LiveRole.HALL, HP, at(0), at(0), frozenset({"c1"})
    )
    assert participant.connected and participant.connections == 1
    assert events == [ParticipantJoined("point:1", LiveRole.HALL, "Hall 1", HP, at(0))]
    assert roster.get("point:1") == participant == roster.by_point(HP)


def test_reconnect_is_the_same_participant_and_connections_are_counted() -> None:
    roster = Roster()
    join_hall(roster, HP, "c1", 0)
    # The new socket opens before the old one has closed.
    participant, events = join_hall(roster, HP, "c2", 5, user_id=101)
    assert events == []
    assert len(roster) == 1
    assert participant.connections == 2
    assert participant.joined_at == at(0)
    assert participant.user_id == 101  # the latest operator speaks for the hall

    assert roster.leave("point:1", "c1", at(6)) == []
    still = roster.get("point:1")
    assert still is not None and still.connected and still.connections == 1

    assert roster.leave("point:1", "c2", at(7)) == [ParticipantLeft("point:1", HP, at(7), "left")]
    gone = roster.get("point:1")
    assert gone is not None and not gone.connected and gone.last_seen == at(7)


def test_rejoin_after_disconnect_keeps_joined_at_and_announces_the_join() -> None:
    roster = Roster()
    join_hall(roster, HP, "c1", 0)
    roster.leave("point:1", "c1", at(10))
    participant, events = join_hall(roster, HP, "c2", 12)
    assert events == [ParticipantJoined("point:1", LiveRole.HALL, "Hall 1", HP, at(12))]
    assert participant.joined_at == at(0)
    assert participant.last_seen == at(12)
    assert len(roster) == 1


def test_the_same_connection_joining_twice_counts_once() -> None:
    roster = Roster()
    join_hall(roster, HP, "c1", 0)
    participant, events = join_hall(roster, HP, "c1", 1)
    assert events == [] and participant.connections == 1


@pytest.mark.parametrize(
    ("key", "conn"),
    [("point:9", "c1"), ("point:1", "nope")],
)
def test_leave_without_a_join_is_tolerated(key: str, conn: str) -> None:
    roster = Roster()
    join_hall(roster, HP, "c1", 0)
    assert roster.leave(key, conn, at(1)) == []
    assert roster.get("point:1").connections == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("role", "point_id", "code"),
    [(LiveRole.HALL, None, "bad_participant"), (LiveRole.MEMBER, HP, "bad_participant")],
)
def test_role_and_point_must_fit(role: LiveRole, point_id: int | None, code: str) -> None:
    roster = Roster()
    with pytest.raises(RosterError) as info:
        roster.join(connection_id="c", role=role, user_id=5, display_name="x", now=T0, point_id=point_id)
    assert info.value.code == code
    assert len(roster) == 0


def test_a_key_cannot_come_back_with_another_role() -> None:
    roster = Roster()
    roster.join(connection_id="c1", role=LiveRole.MEMBER, user_id=7, display_name="A", now=T0)
    with pytest.raises(RosterError) as info:
        roster.join(connection_id="c2", role=LiveRole.HOST, user_id=7, display_name="A", now=T0)
    assert info.value.code == "role_conflict"


def test_naive_times_are_refused() -> None:
    roster = Roster()
    naive = datetime(2024, 5, 6, 8, 0)
    with pytest.raises(RosterError) as info:
        roster.join(connection_id="c", role=LiveRole.MEMBER, user_id=1, display_name="A", now=naive)
    assert info.value.code == "bad_time"


def test_set_media_reports_only_changes() -> None:
    roster = Roster()
    join_hall(roster, HP, "c1", 0)
    assert roster.set_media("point:1", at(1), receiving=True) == [
        ParticipantStateChanged("point:1", True, False)
    ]
    assert roster.set_media("point:1", at(2), receiving=True) == []
    assert roster.set_media("point:1", at(3), publishing=True) == [
        ParticipantStateChanged("point:1", True, True)
    ]
    assert roster.get("point:1").last_seen == at(3)  # type: ignore[union-attr]


def test_disconnecting_clears_the_media_flags() -> None:
    roster = Roster()
    join_hall(roster, HP, "c1", 0)
    roster.set_media("point:1", at(1), receiving=True, publishing=True)
    roster.leave("point:1", "c1", at(2))
    gone = roster.get("point:1")
    assert gone is not None and (gone.receiving_media, gone.publishing) == (False, False)
    with pytest.raises(RosterError) as info:
        roster.set_media("point:1", at(3), receiving=True)
    assert info.value.code == "not_connected"


def test_remove_forgets_the_participant_and_returns_it() -> None:
    roster = Roster()
    join_hall(roster, HP, "c1", 0)
    join_hall(roster, HP, "c2", 1)
    removed, events = roster.remove("point:1", at(2))
    assert removed.connection_ids == frozenset({"c1", "c2"})
    assert events == [ParticipantLeft("point:1", HP, at(2), "removed")]
    assert "point:1" not in roster
    # Its sockets close afterwards; that is not an error.
    assert roster.leave("point:1", "c1", at(3)) == []
    with pytest.raises(RosterError) as info:
        roster.remove("point:1", at(4))
    assert info.value.code == "unknown_participant"


@pytest.mark.parametrize(
    ("joined", "receiving", "left", "floor_holder", "state"),
    [
        (False, False, False, None, "not_connected"),
        (True, False, False, None, "connected"),
        (True, True, False, None, "receiving"),
        (True, True, False, HP, "floor"),
        (True, False, False, HP, "floor"),
        (True, True, False, TN, "receiving"),
        (True, True, True, None, "not_connected"),
        (True, True, True, HP, "not_connected"),  # the link as it is, even for the holder
    ],
)
def test_roll_call_state(
    joined: bool, receiving: bool, left: bool, floor_holder: int | None, state: str
) -> None:
    roster = Roster()
    if joined:
        join_hall(roster, HP, "c1", 0)
        roster.set_media("point:1", at(1), receiving=receiving)
    if left:
        roster.leave("point:1", "c1", at(2))
    assert roster.roll_call([HP], floor_holder) == [RollCallEntry(HP, state)]  # type: ignore[arg-type]


def test_roll_call_follows_the_invited_order_and_ignores_the_uninvited() -> None:
    roster = Roster()
    join_hall(roster, HP, "c1", 0)
    join_hall(roster, SL, "c3", 0)
    join_hall(roster, 42, "c4", 0)  # not invited
    roster.set_media("point:3", at(1), receiving=True)
    roster.join(connection_id="h", role=LiveRole.HOST, user_id=7, display_name="Speaker", now=T0)
    assert roster.roll_call([SL, TN, HP, SL], floor_holder=HP) == [
        (SL, "receiving"),
        (TN, "not_connected"),
        (HP, "floor"),
    ]


def test_snapshot_is_plain_json_in_join_order() -> None:
    roster = Roster()
    roster.join(connection_id="h", role=LiveRole.HOST, user_id=7, display_name="Báo cáo viên", now=at(0))
    join_hall(roster, HP, "c1", 1)
    join_hall(roster, HP, "c2", 2)
    snapshot = roster.snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert [row["key"] for row in snapshot] == ["user:7", "point:1"]
    assert snapshot[1] == {
        "key": "point:1",
        "user_id": 100,
        "display_name": "Hall 1",
        "role": "hall",
        "point_id": HP,
        "connected": True,
        "connections": 2,
        "receiving_media": False,
        "publishing": False,
        "joined_at": "2024-05-06T08:01:00+00:00",
        "last_seen": "2024-05-06T08:02:00+00:00",
    }
