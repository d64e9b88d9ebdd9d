"""LiveSession: every command's events, in order, with ids and times; the reconnect grace."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from server.auth.roles import Role
from server.live import events as ev
from server.live.errors import LiveError
from server.live.events import LiveRole
from server.live.lifecycle import SessionStatus
from server.live.permissions import PermissionDenied
from server.live.session import LiveSession
from server.live.store import SessionInfo

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
HP, TN = 11, 12  # Hải Phòng, Thái Nguyên


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return 1000.0 + self.seconds


@dataclass(frozen=True)
class Caller:
    user_id: int
    role: Role
    bridge_point_id: int | None = None
    full_name: str = "Someone"


SPEAKER = Caller(1, Role.SPEAKER, full_name="Báo cáo viên")
OPERATOR_HP = Caller(2, Role.OPERATOR, HP, "Kỹ thuật Hải Phòng")
OPERATOR_TN = Caller(3, Role.OPERATOR, TN, "Kỹ thuật Thái Nguyên")
MEMBER = Caller(4, Role.MEMBER, full_name="Nguyễn Văn An")


def make_session(grace: float = 20.0, status: SessionStatus = SessionStatus.LIVE) -> tuple[LiveSession, Clock]:
    clock = Clock()
    info = SessionInfo(id=7, title="Nghị quyết", speaker_id=SPEAKER.user_id, status=status,
                       invited={HP: "Hải Phòng", TN: "Thái Nguyên"})
    counter = iter(range(1, 10_000))
    return LiveSession(info, clock=clock, grace_seconds=grace, new_id=lambda: f"id{next(counter):04d}"), clock


def kinds(events: list[ev.Event]) -> list[str]:
    return [event.kind for event in events]


def test_events_carry_a_unique_id_the_session_and_the_clocks_time() -> None:
    session, clock = make_session()
    clock.seconds = 5
    _, joined = session.join("c1", "socket", OPERATOR_HP)
    clock.seconds = 9
    raised = session.raise_hand(session.roster.by_point(HP).ref)
    everything = joined + raised
    assert len({event.id for event in everything}) == len(everything)
    assert all(event.session_id == 7 for event in everything)
    assert joined[0].at == T0 + timedelta(seconds=5) and raised[0].at == T0 + timedelta(seconds=9)


def test_join_names_the_participant_and_a_second_endpoint_is_not_a_second_person() -> None:
    session, _ = make_session()
    hall, first = session.join("c1", "socket", OPERATOR_HP)
    assert hall.key == "point:11" and hall.display_name == "Hải Phòng"
    assert kinds(first) == ["endpoint_joined"]
    assert first[0].participant == ev.ParticipantRef("point:11", LiveRole.HALL, 2, HP, "Hải Phòng")
    assert first[0].first is True and first[0].endpoint_kind == "socket"
    _, second = session.join("whep:1", "whep", OPERATOR_HP)
    assert second[0].first is False and len(session.roster) == 1


@pytest.mark.parametrize(("status", "code"), [(SessionStatus.ENDED, "session_closed"),
                                              (SessionStatus.CANCELLED, "session_closed")])
def test_closed_sessions_refuse_joins(status: SessionStatus, code: str) -> None:
    session, _ = make_session(status=status)
    with pytest.raises(LiveError) as refused:
        session.join("c1", "socket", MEMBER)
    assert refused.value.code == code


def test_the_same_endpoint_cannot_join_twice() -> None:
    session, _ = make_session()
    session.join("c1", "socket", MEMBER)
    with pytest.raises(LiveError) as refused:
        session.join("c1", "socket", MEMBER)
    assert refused.value.code == "already_joined"


def test_granting_revoking_and_the_program_source() -> None:
    session, clock = make_session()
    host, _ = session.join("s", "socket", SPEAKER)
    hall, _ = session.join("h", "socket", OPERATOR_HP)
    # The speaker's camera makes the speaker the program's picture.
    publishing = session.media_state(host.key, receiving=False, publishing=True)
    assert kinds(publishing) == ["media_state_changed", "program_source_changed"]
    assert publishing[1].key == "user:1" and session.host_key == "user:1"

    granted = session.grant_floor(host.ref, HP, 120)
    assert kinds(granted) == ["floor_granted"]
    grant_id = granted[0].grant_id
    assert granted[0].point_id == HP and granted[0].limit_seconds == 120
    # The hall goes on air once it publishes, not before.
    on_air = session.media_state(hall.key, receiving=True, publishing=True)
    assert [e.key for e in on_air if isinstance(e, ev.ProgramSourceChanged)] == ["point:11"]
    # "show speaker" overrides the floor; "show floor" brings the hall back.
    assert [(e.source, e.key) for e in session.show(host.ref, "speaker")] == [("speaker", "user:1")]
    assert [(e.source, e.key) for e in session.show(host.ref, "floor")] == [("floor", "point:11")]

    clock.seconds = 30
    revoked = session.revoke_floor(host.ref)
    assert kinds(revoked) == ["floor_ended", "program_source_changed"]
    assert revoked[0].grant_id == grant_id and revoked[0].reason == "revoked"
    assert revoked[1].key == "user:1"


def test_the_floor_goes_only_to_a_connected_invited_hall() -> None:
    session, _ = make_session()
    host, _ = session.join("s", "socket", SPEAKER)
    with pytest.raises(LiveError) as refused:
        session.grant_floor(host.ref, TN)
    assert refused.value.code == "not_connected"
    with pytest.raises(LiveError):
        session.grant_floor(host.ref, 999)


def test_roles_are_checked_on_every_command() -> None:
    session, _ = make_session()
    hall, _ = session.join("h", "socket", OPERATOR_HP)
    member, _ = session.join("m", "socket", MEMBER)
    for command in (lambda: session.grant_floor(hall.ref, HP), lambda: session.revoke_floor(hall.ref),
                    lambda: session.mute(hall.ref, HP, True), lambda: session.show(hall.ref, "speaker"),
                    lambda: session.remove(hall.ref, member.key), lambda: session.raise_hand(member.ref),
                    lambda: session.lower_hand(hall.ref, TN), lambda: session.check_publish(member.ref),
                    lambda: session.check_publish(hall.ref)):
        with pytest.raises(PermissionDenied):
            command()


def test_a_time_limit_expires_on_the_tick_and_not_before() -> None:
    session, clock = make_session()
    host, _ = session.join("s", "socket", SPEAKER)
    session.join("h", "socket", OPERATOR_HP)
    session.grant_floor(host.ref, HP, 60)
    clock.seconds = 59.9
    assert session.tick() == []
    clock.seconds = 60.2
    expired = session.tick()
    assert [(e.kind, getattr(e, "reason", None)) for e in expired] == [("floor_ended", "expired")]
    assert session.floor.holder is None


def test_a_dropped_hall_keeps_its_floor_and_hand_for_the_grace_period() -> None:
    session, clock = make_session(grace=20)
    host, _ = session.join("s", "socket", SPEAKER)
    session.join("h1", "socket", OPERATOR_HP)
    tn, _ = session.join("t1", "socket", OPERATOR_TN)
    session.raise_hand(tn.ref)
    session.grant_floor(host.ref, HP, 120)

    clock.seconds = 3
    dropped = session.leave("h1", dropped=True)
    assert kinds(dropped) == ["endpoint_dropped"] and dropped[0].last is True
    assert session.floor.holder == HP and session.holder_state().reconnecting
    assert {p.point_id: p.state for p in session.roll_call()}[HP] == "reconnecting"
    session.leave("t1", dropped=True)

    # Back within the grace period: still the floor, still the hand, no longer reconnecting.
    clock.seconds = 10
    _, back = session.join("h2", "socket", OPERATOR_HP)
    assert back[0].first is True
    assert session.floor.holder == HP and not session.holder_state().reconnecting
    clock.seconds = 30
    lost = session.tick()
    # Thái Nguyên did not come back: its hand is lowered, it is lost; Hải Phòng keeps the floor.
    assert kinds(lost) == ["hand_lowered", "participant_lost"]
    assert session.floor.holder == HP

    # Hải Phòng drops again and stays away: its floor ends as "dropped" when the grace runs out.
    clock.seconds = 40
    session.leave("h2", dropped=True)
    clock.seconds = 59.9
    assert session.tick() == []
    clock.seconds = 60.1
    ended = session.tick()
    assert [(e.kind, getattr(e, "reason", None)) for e in ended][:2] == [("floor_ended", "dropped"),
                                                                         ("participant_lost", None)]
    # The time limit kept running during the grace: no extension for the blip.
    assert session.floor.history[-1].duration(session.clock.monotonic()) == pytest.approx(60.1)


def test_a_clean_leave_gives_the_floor_up_at_once() -> None:
    session, _ = make_session()
    host, _ = session.join("s", "socket", SPEAKER)
    session.join("h", "socket", OPERATOR_HP)
    session.grant_floor(host.ref, HP)
    left = session.leave("h", dropped=False)
    assert [(e.kind, getattr(e, "reason", None)) for e in left][:2] == [("endpoint_left", None),
                                                                        ("floor_ended", "left")]


def test_a_removed_participant_ends_every_endpoint_and_stays_out() -> None:
    session, _ = make_session()
    host, _ = session.join("s", "socket", SPEAKER)
    hall, _ = session.join("h", "socket", OPERATOR_HP)
    session.join("whep:x", "whep", OPERATOR_HP)
    session.grant_floor(host.ref, HP)
    removed, events = session.remove(host.ref, hall.key)
    assert removed.key == "point:11"
    assert kinds(events) == ["endpoint_left", "endpoint_left", "floor_ended", "participant_removed"]
    assert events[1].last is True and events[2].reason == "removed"
    with pytest.raises(LiveError) as refused:
        session.join("h2", "socket", OPERATOR_HP)
    assert refused.value.code == "removed"
    # Its sockets closing afterwards change nothing.
    assert session.leave("h", dropped=False) == []
    with pytest.raises(LiveError) as yourself:
        session.remove(host.ref, host.key)
    assert yourself.value.code == "invalid_target"


def test_mute_questions_and_the_on_air_report() -> None:
    session, _ = make_session()
    host, _ = session.join("s", "socket", SPEAKER)
    member, _ = session.join("m", "socket", MEMBER)
    muted = session.mute(host.ref, HP, True)
    assert [(e.kind, e.point_id, e.muted) for e in muted] == [("participant_muted", HP, True)]
    assert session.mute(host.ref, HP, True) == []  # already muted: nothing changed
    with pytest.raises(LiveError):
        session.mute(host.ref, 999, True)
    question, asked = session.ask(member.ref, "Nguyễn Văn An", "Xin làm rõ mục 3?")
    assert asked[0].question_id == question.id and asked[0].text == "Xin làm rõ mục 3?"
    assert list(session.questions) == [question]
    assert [e.key for e in session.on_air_changed("user:1")] == ["user:1"]
    assert session.on_air_changed("user:1") == []


def test_start_and_end_the_floor_ends_with_the_session() -> None:
    session, _ = make_session(status=SessionStatus.SCHEDULED)
    host, _ = session.join("s", "socket", SPEAKER)
    session.join("h", "socket", OPERATOR_HP)
    live = SessionInfo(**{**session.info.__dict__, "status": SessionStatus.LIVE})
    assert kinds(session.started(live)) == ["session_started"]
    session.grant_floor(host.ref, HP)
    ended = SessionInfo(**{**session.info.__dict__, "status": SessionStatus.ENDED})
    events = session.ended(ended)
    assert [(e.kind, getattr(e, "reason", None)) for e in events] == [("floor_ended", "revoked"),
                                                                      ("session_ended", None)]
