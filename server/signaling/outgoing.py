"""The messages the server sends, built from the live session's state, each with a schema.

``SERVER_MESSAGES`` holds a JSON Schema per message type (the client's
messages are validated by ``server.signaling.messages``); the tests validate
every message they receive against it, and check that docs/protocol.md
describes exactly these types.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from server.live import events as ev
from server.live.events import FloorEndReason, LiveRole
from server.live.quality import PointQuality
from server.live.roster import Participant
from server.live.session import LiveSession, Question

# Schemas ----------------------------------------------------------------------------------


def _obj(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": [name for name in properties if name not in optional]}


def _message(kind: str, properties: dict[str, Any] | None = None, *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return _obj({"type": {"const": kind}, **(properties or {})}, optional=optional)


_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_NUM = {"type": "number"}
_TIME = {"type": "string", "format": "date-time"}
_ID = {"type": "integer", "minimum": 1}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_REASONS = {"enum": ["revoked", "expired", "left", "removed", "dropped"]}
_SESSION = _message("session", {"id": _ID, "title": _STR,
                                "status": {"enum": ["scheduled", "live", "ended", "cancelled"]},
                                "actual_start": _nullable(_TIME), "live_seconds": _nullable(_NUM)})
_FLOOR = _message("floor", {
    "holder": _nullable(_obj({"point_id": _ID, "name": _STR, "limit_seconds": _nullable(_NUM),
                              "remaining": _nullable(_NUM), "reconnecting": _BOOL})),
    "queue": {"type": "array", "items": _obj({"point_id": _ID, "name": _STR})},
    "program": {"enum": ["floor", "speaker"]},
    "on_air": _nullable(_STR),
})
_PARTICIPANT = _obj({
    "key": _STR, "user_id": _INT, "display_name": _STR, "role": {"enum": [r.value for r in LiveRole]},
    "point_id": _nullable(_ID), "connected": _BOOL, "connections": _INT, "receiving_media": _BOOL,
    "publishing": _BOOL, "reconnecting": _BOOL, "joined_at": _TIME, "last_seen": _TIME,
})

_GRADE = {"enum": ["green", "amber", "red", "absent"]}
_NNUM = _nullable(_NUM)
_PRECHECK = _obj({"at": _TIME, "ok": _BOOL, "rtt_ms": _NNUM, "bitrate_kbps": _NNUM, "video_frames": _INT,
                  "audio": _BOOL, "detail": _STR})
# One point on the quality board: the same fields in the ``quality`` message and GET .../roll-call.
QUALITY_POINT = _obj({
    "bridge_point": _ID, "name": _STR, "state": _GRADE, "connected": _BOOL,
    "reasons": {"type": "array", "items": _STR}, "alarm": _nullable({"enum": ["dropped", "red"]}),
    "rtt_ms": _NNUM, "loss_pct": _NNUM, "jitter_ms": _NNUM, "bitrate_in_kbps": _NNUM, "bitrate_out_kbps": _NNUM,
    "fps": _NNUM, "frames_decoded": _nullable(_INT), "freezes_per_min": _NNUM, "audio_level": _NNUM,
    "last_seen": _nullable(_TIME), "reconnects": _INT, "precheck": _nullable(_PRECHECK),
    # The sparkline's samples: [time, state, rtt_ms, loss_pct, kbps out], oldest first.
    "samples": {"type": "array", "items": {"type": "array", "minItems": 5, "maxItems": 5}},
}, optional=("samples",))

SERVER_MESSAGES: dict[str, dict[str, Any]] = {
    "welcome": _message("welcome", {
        "you": _obj({"key": _STR, "role": {"enum": [r.value for r in LiveRole]}, "point_id": _nullable(_ID),
                     "name": _STR}),
        "session": _SESSION, "floor": _FLOOR}),
    "answer": _message("answer", {"pc": {"enum": ["publish", "view"]}, "sdp": _STR}),
    "redirect": _message("redirect", {"pc": {"enum": ["view"]}, "url": {"type": "string", "pattern": "^https?://"}}),
    "renegotiate": _message("renegotiate", {"pc": {"enum": ["publish", "view"]},
                                            "reason": {"enum": ["relay_lost", "floor"]}}),
    "session": _SESSION,
    "floor": _FLOOR,
    "floor_granted": _message("floor_granted", {"limit_seconds": _nullable(_NUM)}),
    "floor_revoked": _message("floor_revoked", {"reason": _REASONS}),
    "floor_ended": _message("floor_ended", {"point_id": _ID, "name": _STR, "reason": _REASONS}),
    "roll_call": _message("roll_call", {"points": {"type": "array", "items": _obj({
        "point_id": _ID, "name": _STR,
        "state": {"enum": ["not_connected", "reconnecting", "connected", "receiving", "floor"]},
        "muted": _BOOL, "hand": _BOOL, "talk_seconds": _INT})}}),
    "quality": _message("quality", {"full": _BOOL, "points": {"type": "array", "items": QUALITY_POINT}}),
    "quality_alarm": _message("quality_alarm", {
        "id": _STR, "at": _TIME, "bridge_point": _ID, "name": _STR,
        "alarm": {"enum": ["dropped", "red", "recovered"]}, "reasons": {"type": "array", "items": _STR},
        "rtt_ms": _NNUM, "loss_pct": _NNUM, "jitter_ms": _NNUM}),
    "precheck": _message("precheck", {"bridge_point": _ID, "result": _PRECHECK}),
    "roster": _message("roster", {"participants": {"type": "array", "items": _PARTICIPANT},
                                  "members": _obj({"connected": _INT, "seen": _INT})}),
    "sources": _message("sources", {"sources": {"type": "array", "items": _obj({
        "key": _STR, "codec": _nullable({"enum": ["vp8", "h264"]}), "width": _nullable(_INT),
        "height": _nullable(_INT), "keyframe_interval": _nullable(_NUM), "keyframe_wait": _nullable(_NUM),
        "ignores_keyframe_requests": _BOOL})}}),
    "question": _message("question", {"id": _STR, "from": _STR, "key": _STR, "point_id": _nullable(_ID),
                                      "text": _STR, "at": _TIME}),
    "question_received": _message("question_received", {"id": _STR}),
    "mute": _message("mute", {"muted": _BOOL}),
    "removed": _message("removed"),
    "pong": _message("pong", {"t": _nullable(_INT)}),
    "error": _message("error", {"code": _STR, "message": _STR, "request": _STR, "details": {}},
                      optional=("request", "details")),
}

# Builders -----------------------------------------------------------------------------------


def session_message(session: LiveSession) -> dict[str, Any]:
    info = session.info
    # How long it has been live, by the server's clock: a page counts on from this with its own
    # monotonic clock, so a browser whose clock is off still shows the right time.
    live = (datetime.now(UTC) - info.actual_start).total_seconds() if info.actual_start else None
    return {"type": "session", "id": info.id, "title": info.title, "status": info.status.value,
            "actual_start": info.actual_start.isoformat() if info.actual_start else None,
            "live_seconds": None if live is None else round(max(0.0, live), 1)}


def floor_message(session: LiveSession) -> dict[str, Any]:
    holder = session.holder_state()
    return {
        "type": "floor",
        "holder": None if holder is None else {
            "point_id": holder.point_id, "name": holder.name, "limit_seconds": holder.limit_seconds,
            "remaining": holder.remaining, "reconnecting": holder.reconnecting},
        "queue": [{"point_id": point_id, "name": name} for point_id, name in session.hand_queue()],
        "program": session.program_source,
        "on_air": session.on_air,
    }


def welcome(session: LiveSession, participant: Participant) -> dict[str, Any]:
    return {
        "type": "welcome",
        "you": {"key": participant.key, "role": participant.role.value, "point_id": participant.point_id,
                "name": participant.display_name},
        "session": session_message(session),
        "floor": floor_message(session),
    }


def roll_call_message(session: LiveSession) -> dict[str, Any]:
    return {"type": "roll_call", "points": [
        {"point_id": p.point_id, "name": p.name, "state": p.state, "muted": p.muted, "hand": p.hand,
         "talk_seconds": p.talk_seconds}
        for p in session.roll_call()]}


def precheck_result(event: ev.PrecheckDone | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {"at": event.at.isoformat(), "ok": event.ok, "rtt_ms": event.rtt_ms, "bitrate_kbps": event.bitrate_kbps,
            "video_frames": event.video_frames, "audio": event.audio, "detail": event.detail}


def quality_point(point: PointQuality, name: str, precheck: ev.PrecheckDone | None,
                  samples: int | None = None) -> dict[str, Any]:
    """One point of the board; ``samples``: how many of its latest history samples to add (None: all)."""
    figures = point.figures.to_dict()
    body: dict[str, Any] = {
        "bridge_point": point.point_id, "name": name, "state": point.grade, "connected": point.connected,
        "reasons": list(point.reasons), "alarm": point.alarm,
        **{k: figures[k] for k in ("rtt_ms", "loss_pct", "jitter_ms", "bitrate_in_kbps", "bitrate_out_kbps", "fps",
                                    "frames_decoded", "freezes_per_min", "audio_level")},
        "last_seen": point.last_seen.isoformat() if point.last_seen else None,
        "reconnects": point.reconnects, "precheck": precheck_result(precheck),
    }
    history = list(point.history)
    if samples is None:
        body["samples"] = [sample.to_list() for sample in history]
    elif samples > 0:
        body["samples"] = [sample.to_list() for sample in history[-samples:]]
    return body


def quality_message(session: LiveSession, points: list[PointQuality], fresh: dict[int, int] | None) -> dict[str, Any]:
    """The board's figures; ``fresh`` the samples each point took since the last message (None: the whole
    history, for a host who has not had it)."""
    invited = session.info.invited
    return {"type": "quality", "full": fresh is None, "points": [
        quality_point(p, invited.get(p.point_id, ""), session.prechecks.get(p.point_id),
                      None if fresh is None else fresh.get(p.point_id, 0)) for p in points]}


def quality_alarm(event: ev.QualityAlarm) -> dict[str, Any]:
    return {"type": "quality_alarm", "id": event.id, "at": event.at.isoformat(), "bridge_point": event.point_id,
            "name": event.name, "alarm": event.alarm, "reasons": list(event.reasons), "rtt_ms": event.rtt_ms,
            "loss_pct": event.loss_pct, "jitter_ms": event.jitter_ms}


def precheck_message(event: ev.PrecheckDone) -> dict[str, Any]:
    return {"type": "precheck", "bridge_point": event.point_id, "result": precheck_result(event)}


def roster_message(session: LiveSession) -> dict[str, Any]:
    # Hosts and halls by name; members (possibly thousands) as counts.
    participants = session.roster.participants
    shown = [{**p.to_dict(), "reconnecting": session.is_reconnecting(p.key)}
             for p in participants if p.role is not LiveRole.MEMBER]
    members = [p for p in participants if p.role is LiveRole.MEMBER]
    return {"type": "roster", "participants": shown,
            "members": {"connected": sum(1 for p in members if p.connected), "seen": len(members)}}


def sources_message(sources: list[Any]) -> dict[str, Any]:
    """The publishers' videos (``server.media.room.SourceState``), for the console."""
    return {"type": "sources", "sources": [
        {"key": s.key, "codec": s.codec, "width": s.width, "height": s.height,
         "keyframe_interval": s.keyframe_interval, "keyframe_wait": s.keyframe_wait,
         "ignores_keyframe_requests": s.ignores_requests} for s in sources]}


def question_message(question: Question) -> dict[str, Any]:
    who = question.participant
    return {"type": "question", "id": question.id, "from": question.sender_name, "key": who.key,
            "point_id": who.point_id, "text": question.text, "at": question.at.isoformat()}


def floor_granted(limit_seconds: float | None) -> dict[str, Any]:
    return {"type": "floor_granted", "limit_seconds": limit_seconds}


def floor_revoked(reason: FloorEndReason) -> dict[str, Any]:
    return {"type": "floor_revoked", "reason": reason}


def floor_ended(point_id: int, name: str, reason: FloorEndReason) -> dict[str, Any]:
    return {"type": "floor_ended", "point_id": point_id, "name": name, "reason": reason}


def answer(pc: str, sdp: str) -> dict[str, Any]:
    return {"type": "answer", "pc": pc, "sdp": sdp}


def redirect(pc: str, url: str) -> dict[str, Any]:
    """Offer this peer connection at ``url`` instead (a relay's WHEP, with a ticket): the answer comes from there."""
    return {"type": "redirect", "pc": pc, "url": url}


def renegotiate(pc: str, reason: str) -> dict[str, Any]:
    """Build this peer connection again and offer it here now (its relay died, or the floor came to it)."""
    return {"type": "renegotiate", "pc": pc, "reason": reason}


def pong(t: int | None) -> dict[str, Any]:
    return {"type": "pong", "t": t}


MUTED = {"type": "mute", "muted": True}
UNMUTED = {"type": "mute", "muted": False}
REMOVED = {"type": "removed"}
