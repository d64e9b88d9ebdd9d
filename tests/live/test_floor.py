import pytest

from server.live.floor import Ended, Granted, Lowered, Raised
from server.live.floor import Floor, FloorError, FloorGrant

HP, TN, SL = 1, 2, 3  # Hải Phòng, Thái Nguyên, Sơn La


def test_queue_keeps_the_order_hands_were_raised() -> None:
    floor = Floor()
    assert floor.raise_hand(TN, 10.0) == [Raised(TN, 10.0)]
    floor.raise_hand(HP, 11.0)
    floor.raise_hand(SL, 12.0)
    assert floor.queue == (TN, HP, SL)
    assert floor.raised_at(HP) == 11.0


def test_raising_twice_keeps_the_first_place() -> None:
    floor = Floor()
    floor.raise_hand(TN, 10.0)
    floor.raise_hand(HP, 11.0)
    assert floor.raise_hand(TN, 12.0) == []
    assert floor.queue == (TN, HP)
    assert floor.raised_at(TN) == 10.0


def test_lowering_leaves_the_queue_and_is_idempotent() -> None:
    floor = Floor()
    floor.raise_hand(TN, 10.0)
    floor.raise_hand(HP, 11.0)
    assert floor.lower_hand(TN) == [Lowered(TN)]
    assert floor.lower_hand(TN) == []
    assert floor.queue == (HP,)


def test_raising_again_after_lowering_goes_to_the_back() -> None:
    floor = Floor()
    floor.raise_hand(TN, 10.0)
    floor.raise_hand(HP, 11.0)
    floor.lower_hand(TN)
    assert floor.raise_hand(TN, 12.0) == [Raised(TN, 12.0)]
    assert floor.queue == (HP, TN)
    assert floor.raised_at(TN) == 12.0


def test_the_holder_cannot_raise_its_hand() -> None:
    floor = Floor()
    floor.grant(HP, 10.0)
    with pytest.raises(FloorError) as info:
        floor.raise_hand(HP, 11.0)
    assert info.value.code == "holds_floor"
    assert floor.queue == ()


def test_grant_takes_the_point_out_of_the_queue() -> None:
    floor = Floor()
    floor.raise_hand(TN, 10.0)
    floor.raise_hand(HP, 11.0)
    assert floor.grant(HP, 20.0, limit_seconds=120) == [Granted(HP, 120, 20.0)]
    assert floor.holder == HP
    assert floor.queue == (TN,)
    assert floor.history == (FloorGrant(HP, 20.0, 120),)


def test_grant_to_a_point_that_did_not_raise_its_hand() -> None:
    floor = Floor()
    assert floor.grant(SL, 5.0) == [Granted(SL, None, 5.0)]
    assert floor.holder == SL


def test_grant_while_held_revokes_the_previous_holder_first() -> None:
    floor = Floor()
    floor.grant(HP, 10.0)
    floor.raise_hand(TN, 12.0)
    events = floor.grant(TN, 30.0)
    assert events == [Ended(HP, 30.0, "revoked"), Granted(TN, None, 30.0)]
    assert floor.holder == TN
    assert floor.history == (
        FloorGrant(HP, 10.0, None, 30.0, "revoked"),
        FloorGrant(TN, 30.0),
    )


def test_granting_the_holder_again_is_refused() -> None:
    floor = Floor()
    floor.grant(HP, 10.0)
    with pytest.raises(FloorError) as info:
        floor.grant(HP, 11.0, limit_seconds=60)
    assert info.value.code == "holds_floor"
    assert floor.history == (FloorGrant(HP, 10.0),)


@pytest.mark.parametrize("limit", [0, -1, 3600.5, 86400, float("nan"), float("inf"), True, "60"])
def test_bad_limits_are_refused_and_change_nothing(limit: object) -> None:
    floor = Floor()
    floor.grant(TN, 1.0)
    with pytest.raises(FloorError) as info:
        floor.grant(HP, 2.0, limit_seconds=limit)  # type: ignore[arg-type]
    assert info.value.code == "bad_limit"
    assert floor.holder == TN
    assert len(floor.history) == 1


@pytest.mark.parametrize("limit", [None, 0.5, 1, 90, 3600])
def test_good_limits_are_kept(limit: float | None) -> None:
    floor = Floor()
    floor.grant(HP, 1.0, limit_seconds=limit)
    assert floor.current == FloorGrant(HP, 1.0, limit)


def test_revoke_ends_the_grant_and_is_idempotent() -> None:
    floor = Floor()
    floor.grant(HP, 10.0)
    assert floor.revoke(25.0) == [Ended(HP, 25.0, "revoked")]
    assert floor.holder is None
    assert floor.revoke(26.0) == []
    assert floor.history == (FloorGrant(HP, 10.0, None, 25.0, "revoked"),)


def test_revoke_never_ends_before_the_start() -> None:
    floor = Floor()
    floor.grant(HP, 10.0)
    assert floor.revoke(9.0) == [Ended(HP, 10.0, "revoked")]
    assert floor.talk_time(HP, 100.0) == 0.0


@pytest.mark.parametrize(
    ("now", "expired"),
    [(10.0, False), (69.9, False), (70.0, True), (95.0, True)],
)
def test_expire_revokes_once_the_limit_has_passed(now: float, expired: bool) -> None:
    floor = Floor()
    floor.grant(HP, 10.0, limit_seconds=60)
    events = floor.expire(now)
    if expired:
        assert events == [Ended(HP, now, "expired")]
        assert floor.holder is None
        assert floor.history[-1].end_reason == "expired"
    else:
        assert events == []
        assert floor.holder == HP


def test_expire_without_a_limit_or_a_holder_does_nothing() -> None:
    floor = Floor()
    assert floor.expire(1000.0) == []
    floor.grant(HP, 10.0)
    assert floor.expire(10_000.0) == []
    assert floor.holder == HP


def test_remaining_counts_down_and_stops_at_zero() -> None:
    floor = Floor()
    assert floor.remaining(0.0) is None
    floor.grant(HP, 10.0, limit_seconds=30)
    assert floor.remaining(25.0) == 15.0
    assert floor.remaining(50.0) == 0.0


def test_talk_time_sums_grants_and_counts_the_open_one_up_to_now() -> None:
    floor = Floor()
    floor.grant(HP, 10.0)
    floor.revoke(40.0)  # HP: 30 s
    floor.grant(TN, 50.0)
    floor.grant(HP, 60.0)  # TN: 10 s, HP open from 60
    assert floor.talk_time(HP, 75.0) == 45.0
    assert floor.talk_time(TN, 75.0) == 10.0
    assert floor.talk_time(SL, 75.0) == 0.0
    assert [g.point_id for g in floor.history] == [HP, TN, HP]


def test_forget_the_holder_revokes_with_the_reason() -> None:
    floor = Floor()
    floor.grant(HP, 10.0)
    floor.raise_hand(TN, 11.0)
    assert floor.forget(HP, 20.0) == [Ended(HP, 20.0, "left")]
    assert floor.holder is None
    assert floor.queue == (TN,)
    assert floor.history[-1] == FloorGrant(HP, 10.0, None, 20.0, "left")


def test_forget_a_queued_point_lowers_its_hand() -> None:
    floor = Floor()
    floor.grant(HP, 10.0)
    floor.raise_hand(TN, 11.0)
    assert floor.forget(TN, 12.0, "removed") == [Lowered(TN)]
    assert floor.queue == ()
    assert floor.holder == HP


def test_forget_an_unknown_point_does_nothing() -> None:
    floor = Floor()
    floor.grant(HP, 10.0)
    assert floor.forget(SL, 12.0) == []
    assert floor.holder == HP
