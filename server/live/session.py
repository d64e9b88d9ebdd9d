"""One live session's state and rules, turning every change into events.

:class:`LiveSession` is the aggregate of the live domain: the roster (who is
connected, by which endpoints), the floor (hand queue and grants), the
moderation state (mutes, removals, questions) and the program's choice of
picture. Every command checks the caller's permission, changes the state and
returns the events that say what changed, stamped with an id and the clock's
time; the caller publishes them (``server.live.bus``). Nothing here does I/O.

Time: the clock gives both the wall time (events, attendance) and a monotonic
time (talk limits and the reconnect grace must not jump when the wall clock is
corrected). Tests pass a clock they move by hand.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from server.auth.roles import Role
from server.live import events as ev
from server.live.errors import LiveError
from server.live.events import EndpointKind, Event, LiveRole, ParticipantRef, PointId, ProgramSource, hall_key
from server.live.floor import Ended, Floor, FloorChange, Granted, Lowered, Raised
from server.live.lifecycle import SessionStatus
from server.live.permissions import Action, PermissionDenied, require, require_publish
from server.live.quality import LinkReading, PageReport, PointQuality, QualityBoard, Thresholds
from server.live.roles import Caller, live_role
from server.live.roster import Participant, ParticipantLeft, RollCallState, Roster, RosterError
from server.live.store import SessionInfo

# Kept per session for a host who reconnects; older questions are dropped.
MAX_QUESTIONS = 500
# Questions one participant (a member, whatever number of sockets it opens; a hall) may ask in
# QUESTION_WINDOW seconds: a host's list stays readable when someone scripts a flood.
QUESTIONS_PER_WINDOW = 5
QUESTION_WINDOW = 60.0
# How long a participant whose connection dropped keeps its place: a hall its
# floor, its timer and its raised hand (a page reload takes about a second, a
# network blip a few).
GRACE_SECONDS = 20.0

E = TypeVar("E", bound=Event)


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware wall time."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class NamedCaller(Caller, Protocol):
    @property
    def full_name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    participant: ParticipantRef
    sender_name: str  # the person who wrote it (a hall's operator, not the hall)
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class HolderState:
    point_id: PointId
    name: str
    limit_seconds: float | None
    remaining: float | None
    reconnecting: bool


@dataclass(frozen=True, slots=True)
class RollCallPoint:
    point_id: PointId
    name: str
    state: RollCallState
    muted: bool
    hand: bool
    talk_seconds: int


class LiveSession:
    """The live state of one session; commands return the events they caused."""

    def __init__(self, info: SessionInfo, *, clock: Clock | None = None, grace_seconds: float = GRACE_SECONDS,
                 new_id: Callable[[], str] = ev.new_id, thresholds: Thresholds | None = None) -> None:
        self.info = info
        self.clock = clock or SystemClock()
        self.grace_seconds = grace_seconds
        self._new_id = new_id
        self.roster = Roster()
        # Every invited point's link: figures, grade, history, alarms (server.live.quality).
        self.quality = QualityBoard(thresholds)
        # Each point's last connection test (PrecheckDone), newest last.
        self.prechecks: dict[PointId, ev.PrecheckDone] = {}
        self.floor = Floor()
        self.muted: set[PointId] = set()
        self.banned: set[str] = set()
        self.questions: deque[Question] = deque(maxlen=MAX_QUESTIONS)
        # Participant key -> when its last questions were asked (monotonic).
        self._asked: dict[str, deque[float]] = {}
        self.program_source: ProgramSource = "floor"
        # The host whose camera is the speaker's picture (the last host to publish).
        self.host_key: str | None = None
        # The picture actually on air, as the media reports it.
        self.on_air: str | None = None
        # Endpoint id -> (participant key, kind), for every open endpoint.
        self._endpoints: dict[str, tuple[str, EndpointKind]] = {}
        # Endpoint id -> who joined it and the seat it asked for: seats are re-evaluated when the session changes.
        self._callers: dict[str, tuple[NamedCaller, str | None]] = {}
        # Participant key -> monotonic deadline of its reconnect grace.
        self._grace: dict[str, float] = {}
        self._program: tuple[ProgramSource, str | None] = (self.program_source, None)
        self._now = self.clock.now()

    # events ----------------------------------------------------------------------

    def _event(self, cls: type[E], **fields: Any) -> E:
        return cls(id=self._new_id(), at=self._now, session_id=self.info.id, **fields)

    def _tick_clock(self) -> float:
        """Read the clock once per command: every event of one change has the same time."""
        self._now = self.clock.now()
        return self.clock.monotonic()

    def _floor_events(self, changes: list[FloorChange]) -> list[Event]:
        out: list[Event] = []
        for change in changes:
            if isinstance(change, Raised):
                out.append(self._event(ev.HandRaised, point_id=change.point_id))
            elif isinstance(change, Lowered):
                out.append(self._event(ev.HandLowered, point_id=change.point_id))
            elif isinstance(change, Granted):
                out.append(self._event(ev.FloorGranted, point_id=change.point_id, grant_id=change.grant_id,
                                       limit_seconds=change.limit_seconds))
            elif isinstance(change, Ended):
                out.append(self._event(ev.FloorEnded, point_id=change.point_id, grant_id=change.grant_id,
                                       reason=change.reason))
        return out

    def _program_events(self) -> list[Event]:
        """ProgramSourceChanged when the wanted picture (or the host's choice) changed."""
        program = (self.program_source, self.wanted_on_air())
        if program == self._program:
            return []
        self._program = program
        return [self._event(ev.ProgramSourceChanged, source=program[0], key=program[1])]

    # connections -------------------------------------------------------------------

    def join(self, endpoint_id: str, kind: EndpointKind, caller: NamedCaller,
             wanted: str | None = None) -> tuple[Participant, list[Event]]:
        """Add an endpoint of ``caller`` (its role decided by ``live_role``)."""
        self._tick_clock()
        if self.info.status in (SessionStatus.ENDED, SessionStatus.CANCELLED):
            raise LiveError("session_closed", f"the session is {self.info.status.value}")
        if endpoint_id in self._endpoints:
            raise LiveError("already_joined", "this connection has joined already")
        seat = live_role(caller, self.info, wanted)
        if seat.key in self.banned or self._hall_banned(caller):
            raise LiveError("removed", "you were removed from this session")
        name = self.info.invited.get(seat.point_id, caller.full_name) if seat.point_id else caller.full_name
        participant, changes = self.roster.join(connection_id=endpoint_id, role=seat.role, user_id=caller.user_id,
                                                display_name=name, point_id=seat.point_id, now=self._now)
        self._endpoints[endpoint_id] = (seat.key, kind)
        self._callers[endpoint_id] = (caller, wanted)
        # Back within the grace period: it keeps what it held.
        self._grace.pop(seat.key, None)
        events: list[Event] = [self._event(ev.EndpointJoined, endpoint_id=endpoint_id, endpoint_kind=kind,
                                           participant=participant.ref, first=bool(changes))]
        return participant, events + self._program_events()

    def leave(self, endpoint_id: str, *, dropped: bool) -> list[Event]:
        """An endpoint closed: cleanly (``dropped`` False) or lost.

        A participant whose last endpoint is lost keeps its place for the
        grace period (see :meth:`tick`); one that leaves cleanly gives up its
        floor and its raised hand at once. An unknown endpoint is ignored (a
        removed participant's socket closes after the removal).
        """
        mono = self._tick_clock()
        entry = self._endpoints.pop(endpoint_id, None)
        self._callers.pop(endpoint_id, None)
        if entry is None:
            return []
        key, kind = entry
        before = self.roster.get(key)
        if before is None:
            return []
        changes = self.roster.leave(key, endpoint_id, self._now)
        last = any(isinstance(c, ParticipantLeft) for c in changes)
        cls = ev.EndpointDropped if dropped else ev.EndpointLeft
        events: list[Event] = [self._event(cls, endpoint_id=endpoint_id, endpoint_kind=kind,
                                           participant=before.ref, last=last)]
        if last:
            if dropped:
                self._grace[key] = mono + self.grace_seconds
            elif before.role is LiveRole.HALL and before.point_id is not None:
                events += self._floor_events(self.floor.forget(before.point_id, mono, "left"))
        return events + self._program_events()

    def media_state(self, key: str, *, receiving: bool, publishing: bool) -> list[Event]:
        """What the media layer reports of a participant (program arriving, camera sending)."""
        self._tick_clock()
        participant = self.roster.get(key)
        if participant is None or not participant.connected:
            return []
        try:
            changes = self.roster.set_media(key, self._now, receiving=receiving, publishing=publishing)
        except RosterError:
            return []
        if publishing and participant.role is LiveRole.HOST:
            self.host_key = key
        events: list[Event] = []
        if changes:
            events.append(self._event(ev.MediaStateChanged, key=key, receiving=receiving, publishing=publishing))
        return events + self._program_events()

    def tick(self) -> list[Event]:
        """Enforce time limits and end reconnect grace periods that ran out."""
        mono = self._tick_clock()
        events = self._floor_events(self.floor.expire(mono))
        for key, deadline in list(self._grace.items()):
            if deadline > mono:
                continue
            del self._grace[key]
            participant = self.roster.get(key)
            if participant is None or participant.connected:
                continue
            if participant.role is LiveRole.HALL and participant.point_id is not None:
                events += self._floor_events(self.floor.forget(participant.point_id, mono, "dropped"))
            events.append(self._event(ev.ParticipantLost, participant=participant.ref))
        if not events:
            return []
        return events + self._program_events()

    # the floor ----------------------------------------------------------------------

    def raise_hand(self, actor: ParticipantRef) -> list[Event]:
        mono = self._tick_clock()
        require(actor.role, Action.RAISE_HAND)
        assert actor.point_id is not None  # a hall always has its point
        return self._floor_events(self.floor.raise_hand(actor.point_id, mono))

    def lower_hand(self, actor: ParticipantRef, point_id: PointId | None = None) -> list[Event]:
        self._tick_clock()
        require(actor.role, Action.LOWER_HAND)
        target = actor.point_id if point_id is None else point_id
        if actor.role is LiveRole.HALL and target != actor.point_id:
            raise PermissionDenied("hall", "lower_hand", "a hall lowers only its own hand")
        if target is None:
            raise LiveError("invalid_message", "say which point's hand to lower")
        return self._floor_events(self.floor.lower_hand(target))

    def grant_floor(self, actor: ParticipantRef, point_id: PointId, limit_seconds: float | None = None) -> list[Event]:
        mono = self._tick_clock()
        require(actor.role, Action.GRANT_FLOOR)
        hall = self.roster.by_point(point_id)
        if point_id not in self.info.invited or hall is None or not hall.connected:
            raise LiveError("not_connected", "that bridge point is not connected")
        changes = self.floor.grant(point_id, mono, limit_seconds, grant_id=self._new_id())
        return self._floor_events(changes) + self._program_events()

    def revoke_floor(self, actor: ParticipantRef) -> list[Event]:
        mono = self._tick_clock()
        require(actor.role, Action.REVOKE_FLOOR)
        return self._floor_events(self.floor.revoke(mono, "revoked")) + self._program_events()

    def check_publish(self, actor: ParticipantRef) -> None:
        """Raise PermissionDenied unless the participant may send media now."""
        require(actor.role, Action.PUBLISH)
        require_publish(actor.role, actor.point_id, self.floor.holder)

    # the program and moderation ----------------------------------------------------------

    def show(self, actor: ParticipantRef, source: ProgramSource) -> list[Event]:
        self._tick_clock()
        require(actor.role, Action.GRANT_FLOOR)
        self.program_source = source
        return self._program_events()

    def on_air_changed(self, key: str | None) -> list[Event]:
        """The media switched pictures (at the new source's keyframe)."""
        self._tick_clock()
        if key == self.on_air:
            return []
        self.on_air = key
        return [self._event(ev.OnAirChanged, key=key)]

    def mute(self, actor: ParticipantRef, point_id: PointId, muted: bool) -> list[Event]:
        self._tick_clock()
        require(actor.role, Action.MUTE)
        if point_id not in self.info.invited:
            raise LiveError("invalid_target", "that bridge point is not invited")
        if (point_id in self.muted) == muted:
            return []
        if muted:
            self.muted.add(point_id)
        else:
            self.muted.discard(point_id)
        return [self._event(ev.ParticipantMuted, point_id=point_id, muted=muted)]

    def remove(self, actor: ParticipantRef, key: str) -> tuple[Participant, list[Event]]:
        """Remove a participant for the rest of the session; its endpoints end first."""
        mono = self._tick_clock()
        require(actor.role, Action.REMOVE)
        if key == actor.key:
            raise LiveError("invalid_target", "you cannot remove yourself")
        target = self.roster.get(key)
        if target is None:
            raise LiveError("unknown_participant", "no such participant")
        if target.role is LiveRole.HOST:
            # A co-host (an administrator beside the speaker) must not be able to lock the speaker out.
            raise LiveError("invalid_target", "a host cannot be removed")
        self.banned.add(key)
        self._grace.pop(key, None)
        events: list[Event] = []
        mine = [(endpoint_id, kind) for endpoint_id, (owner, kind) in self._endpoints.items() if owner == key]
        for index, (endpoint_id, kind) in enumerate(mine):
            del self._endpoints[endpoint_id]
            self._callers.pop(endpoint_id, None)
            participant = self.roster.get(key)
            assert participant is not None
            events.append(self._event(ev.EndpointLeft, endpoint_id=endpoint_id, endpoint_kind=kind,
                                      participant=participant.ref, last=index == len(mine) - 1))
        removed, _ = self.roster.remove(key, self._now)
        if removed.point_id is not None and removed.role is LiveRole.HALL:
            events += self._floor_events(self.floor.forget(removed.point_id, mono, "removed"))
        if self.host_key == key:
            self.host_key = None
        events.append(self._event(ev.ParticipantRemoved, participant=removed.ref))
        return removed, events + self._program_events()

    def ask(self, actor: ParticipantRef, sender_name: str, text: str) -> tuple[Question, list[Event]]:
        mono = self._tick_clock()
        require(actor.role, Action.QUESTION)
        asked = self._asked.setdefault(actor.key, deque())
        while asked and asked[0] <= mono - QUESTION_WINDOW:
            asked.popleft()
        if len(asked) >= QUESTIONS_PER_WINDOW:
            raise LiveError("rate_limited", f"at most {QUESTIONS_PER_WINDOW} questions a minute: "
                                            "wait for the speaker to answer")
        asked.append(mono)
        question = Question(self._new_id()[:12], actor, sender_name, text, self._now)
        self.questions.append(question)
        return question, [self._event(ev.QuestionAsked, question_id=question.id, participant=actor,
                                      sender_name=sender_name, text=text)]

    # lifecycle ------------------------------------------------------------------------------

    def started(self, info: SessionInfo) -> list[Event]:
        """The store made the session live."""
        self._tick_clock()
        self.info = info
        return [self._event(ev.SessionStarted)]

    def resumed(self) -> list[Event]:
        """This server opened the room of a session that is live already (after a restart)."""
        self._tick_clock()
        return [self._event(ev.SessionResumed)]

    def ended(self, info: SessionInfo) -> list[Event]:
        """The store ended the session: the floor ends with it."""
        mono = self._tick_clock()
        self.info = info
        return self._floor_events(self.floor.revoke(mono, "revoked")) + [self._event(ev.SessionEnded)]

    def closing(self) -> list[Event]:
        """The room closes (the session ended, or the server stops): an open grant ends with its
        hall's connection, and every endpoint still open leaves (attendance closes its interval)."""
        mono = self._tick_clock()
        events = self._floor_events(self.floor.revoke(mono, "left"))
        endpoints = list(self._endpoints.items())
        self._endpoints.clear()
        for index, (endpoint_id, (key, kind)) in enumerate(endpoints):
            participant = self.roster.get(key)
            if participant is None:
                continue
            last = not any(owner == key for _, (owner, _) in endpoints[index + 1:])
            events.append(self._event(ev.EndpointLeft, endpoint_id=endpoint_id, endpoint_kind=kind,
                                      participant=participant.ref, last=last))
        return events

    def reload(self, info: SessionInfo) -> list[str]:
        """The session was edited outside the room (a new speaker, another invitation list).

        Returns the endpoints whose seat no longer holds: a replaced speaker is
        no longer a host, an uninvited hall no longer a hall. The caller ends
        them; they join again in the seat the session now gives them.
        """
        self.info = info
        stale = []
        for endpoint_id, (caller, wanted) in self._callers.items():
            key, _ = self._endpoints[endpoint_id]
            participant = self.roster.get(key)
            try:
                seat = live_role(caller, info, wanted)
            except PermissionDenied:
                stale.append(endpoint_id)  # the seat it asked for is gone (``as: "host"``)
                continue
            if participant is None or seat.key != key or seat.role is not participant.role:
                stale.append(endpoint_id)
        return stale

    def _hall_banned(self, caller: NamedCaller) -> bool:
        """An operator of a removed hall stays out, whatever seat it asks for (a member's included)."""
        point = caller.bridge_point_id
        return caller.role is Role.OPERATOR and point is not None and hall_key(point) in self.banned

    # quality ---------------------------------------------------------------------------------

    def grade_points(self, readings: Mapping[str, list[LinkReading]], only: PointId | None = None) -> list[Event]:
        """Grade the invited points (or ``only`` one) from their endpoints' readings.

        Returns the alarms raised or cleared (:class:`~server.live.events.QualityAlarm`);
        alarms are raised only while the session is live. A connected hall
        that receives nothing while the session is live is red (``no_media``).
        """
        now, mono = self.clock.now(), self.clock.monotonic()
        live = self.info.status is SessionStatus.LIVE
        self.quality.forget(self.info.invited)
        events: list[Event] = []
        for point_id, name in self.info.invited.items():
            if only is not None and point_id != only:
                continue
            hall = self.roster.by_point(point_id)
            connected = hall is not None and hall.connected
            receiving = hall is not None and hall.receiving_media
            alarm = self.quality.observe(point_id, readings.get(hall_key(point_id), ()), connected=connected,
                                         receiving=receiving or not live, now=now, mono=mono, live=live)
            if alarm is not None:
                figures = alarm.figures
                events.append(self._event(
                    ev.QualityAlarm, point_id=point_id, name=name, alarm=alarm.kind, reasons=list(alarm.reasons),
                    rtt_ms=_rounded(figures.rtt_ms), loss_pct=_rounded(figures.loss_pct),
                    jitter_ms=_rounded(figures.jitter_ms)))
        return events

    def report_page(self, actor: ParticipantRef, report: PageReport) -> None:
        """A hall's page says what its browser decodes (frames, freezes, audio level)."""
        require(actor.role, Action.REPORT_QUALITY)
        if actor.point_id is not None:
            self.quality.page_report(actor.point_id, report, self.clock.monotonic())

    def precheck_done(self, actor: ParticipantRef, *, user_id: int, ok: bool, rtt_ms: float | None,
                      bitrate_kbps: float | None, video_frames: int, audio: bool, detail: str) -> list[Event]:
        """A hall's connection test through the hub finished: kept for the board."""
        require(actor.role, Action.REPORT_QUALITY)
        if actor.point_id is None:
            return []
        event = self._event(ev.PrecheckDone, point_id=actor.point_id, user_id=user_id, ok=ok,
                            rtt_ms=_rounded(rtt_ms), bitrate_kbps=_rounded(bitrate_kbps),
                            video_frames=video_frames, audio=audio, detail=detail)
        self.prechecks[actor.point_id] = event
        return [event]

    def quality_points(self) -> list[PointQuality]:
        """Every invited point's quality, in invited order."""
        return [self.quality.point(point_id) for point_id in self.info.invited]

    # queries ---------------------------------------------------------------------------------

    def participant_of(self, endpoint_id: str) -> Participant | None:
        entry = self._endpoints.get(endpoint_id)
        return self.roster.get(entry[0]) if entry else None

    def endpoints_of(self, key: str) -> list[str]:
        return [endpoint_id for endpoint_id, (owner, _) in self._endpoints.items() if owner == key]

    def is_reconnecting(self, key: str) -> bool:
        return key in self._grace

    def wanted_on_air(self) -> str | None:
        """Whose picture the program should show: the floor holder while it publishes, else the host."""
        holder = self.floor.holder
        if self.program_source == "floor" and holder is not None:
            hall = self.roster.by_point(holder)
            if hall is not None and hall.connected and hall.publishing:
                return hall.key
        return self.host_key

    def holder_state(self) -> HolderState | None:
        grant = self.floor.current
        if grant is None:
            return None
        return HolderState(grant.point_id, self.info.invited.get(grant.point_id, ""), grant.limit_seconds,
                           self.floor.remaining(self.clock.monotonic()), hall_key(grant.point_id) in self._grace)

    def hand_queue(self) -> list[tuple[PointId, str]]:
        return [(point_id, self.info.invited.get(point_id, "")) for point_id in self.floor.queue]

    def roll_call(self) -> list[RollCallPoint]:
        mono = self.clock.monotonic()
        queue = set(self.floor.queue)
        return [
            RollCallPoint(entry.point_id, self.info.invited[entry.point_id], entry.state,
                          entry.point_id in self.muted, entry.point_id in queue,
                          round(self.floor.talk_time(entry.point_id, mono)))
            for entry in self.roster.roll_call(list(self.info.invited), self.floor.holder,
                                               frozenset(self._grace))
        ]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
