"""The OpenAPI 3.1 document, generated from the route table and the input schemas.

Response shapes are written once here, next to the serializers they describe
(server/views/api.py); tests validate real responses against them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from server import __version__

if TYPE_CHECKING:
    from server.views.routes import Route

_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

RESPONSES: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }},
    },
    "Session": {
        "type": "object",
        "required": ["id", "title", "description", "speaker_id", "status", "scheduled_start", "scheduled_end",
                     "actual_start", "actual_end", "invited_point_ids", "record"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"}, "title": {"type": "string"}, "description": {"type": "string"},
            "speaker_id": _NULLABLE_INT,
            "status": {"type": "string", "enum": ["scheduled", "live", "ended", "cancelled"]},
            "scheduled_start": {"type": "string", "format": "date-time"},
            "scheduled_end": {"type": "string", "format": "date-time"},
            "actual_start": _NULLABLE_TIME, "actual_end": _NULLABLE_TIME,
            "invited_point_ids": {"type": "array", "items": {"type": "integer"}},
            "record": {"type": "boolean", "description": "Recorded for the archive when it goes live"},
        },
    },
    "Unit": {
        "type": "object",
        "required": ["id", "name", "slug", "level", "parent_id"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"}, "slug": {"type": "string"},
            "level": {"type": "string", "enum": ["central", "province", "commune"]}, "parent_id": _NULLABLE_INT,
        },
    },
    "BridgePoint": {
        "type": "object",
        "required": ["id", "name", "slug", "unit_id", "location", "is_hub", "active"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"}, "slug": {"type": "string"},
            "unit_id": {"type": "integer"}, "location": {"type": "string"}, "is_hub": {"type": "boolean"},
            "active": {"type": "boolean"},
        },
    },
    "User": {
        "type": "object",
        "required": ["id", "username", "full_name", "email", "role", "unit_id", "bridge_point_id", "active"],
        "properties": {
            "id": {"type": "integer"}, "username": {"type": "string"}, "full_name": {"type": "string"},
            "email": {"type": "string"},
            "role": {"type": "string", "enum": ["admin", "speaker", "operator", "member"]},
            "unit_id": _NULLABLE_INT, "bridge_point_id": _NULLABLE_INT, "active": {"type": "boolean"},
            "session_scope": _NULLABLE_INT,
        },
    },
    "Token": {
        "type": "object",
        "required": ["token", "token_type", "expires_in", "user"],
        "properties": {
            "token": {"type": "string"}, "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"},
            "user": {"$ref": "#/components/schemas/User"},
        },
    },
    "ImportResult": {
        "type": "object",
        "required": ["created"],
        "properties": {"created": {"type": "array", "items": {"type": "string"}}},
    },
}


_INT = {"type": "integer"}
_STR = {"type": "string"}
_STATUS = {"type": "string", "enum": ["attended", "partial", "absent"]}
_RULE = {
    "type": "object",
    "required": ["attended_percent", "late_after_minutes", "early_before_minutes"],
    "properties": {"attended_percent": _INT, "late_after_minutes": _INT, "early_before_minutes": _INT},
}
_CORRECTION = {
    "type": ["object", "null"],
    "required": ["status", "credited_seconds", "reason", "by", "at"],
    "properties": {"status": {"type": ["string", "null"]}, "credited_seconds": _NULLABLE_INT, "reason": _STR,
                   "by": _STR, "at": {"type": "string", "format": "date-time"}},
}
_FIGURES = {name: _INT for name in ("sessions", "member_sessions", "attended", "partial", "absent",
                                    "credited_seconds")}

RESPONSES.update({
    "AttendanceMember": {
        "type": "object",
        "required": ["username", "full_name", "unit", "bridge_point", "live_seconds", "replay_seconds",
                     "credited_seconds", "status", "late_minutes", "early_minutes", "checked_in", "correction"],
        "properties": {
            "username": _STR, "full_name": _STR, "unit": _STR, "bridge_point": _STR,
            "live_seconds": _INT, "replay_seconds": _INT, "credited_seconds": _INT, "status": _STATUS,
            "late_minutes": _INT, "early_minutes": _INT, "online_seconds": _INT, "hall_seconds": _INT,
            "checked_in": {"type": "boolean"}, "expected": {"type": "boolean"}, "correction": _CORRECTION,
        },
    },
    "AttendancePoint": {
        "type": "object",
        "required": ["bridge_point_id", "name", "expected", "checked_in", "attended", "partial", "absent",
                     "attended_percent", "connected_seconds", "talk_seconds"],
        "properties": {
            "bridge_point_id": _INT, "name": _STR, "unit": _STR, "expected": _INT, "checked_in": _INT,
            "attended": _INT, "partial": _INT, "absent": _INT, "attended_percent": {"type": "number"},
            "connected_seconds": _INT, "talk_seconds": _INT,
        },
    },
    "SessionAttendance": {
        "type": "object",
        "required": ["session", "rule", "points", "members"],
        "properties": {
            "session": {"type": "object", "required": ["id", "title", "status", "live_start", "live_end",
                                                       "live_seconds"]},
            "rule": _RULE, "generated_at": {"type": "string", "format": "date-time"},
            "points": {"type": "array", "items": {"$ref": "#/components/schemas/AttendancePoint"}},
            "members": {"type": "array", "items": {"$ref": "#/components/schemas/AttendanceMember"}},
        },
        "description": "?format=csv or ?format=xlsx downloads the member table as a spreadsheet instead",
    },
    "MemberAttendance": {
        "type": "object",
        "required": ["user", "rule", "totals", "sessions"],
        "properties": {
            "user": {"type": "object", "required": ["id", "username", "full_name", "unit"]},
            "rule": _RULE,
            "totals": {"type": "object", "required": ["sessions", "attended", "partial", "absent",
                                                      "credited_seconds"]},
            "sessions": {"type": "array", "items": {
                "type": "object",
                "required": ["session_id", "title", "scheduled_start", "bridge_point", "live_seconds",
                             "replay_seconds", "credited_seconds", "status", "late_minutes", "early_minutes",
                             "checked_in", "corrected"],
                "properties": {"session_id": _INT, "title": _STR, "status": _STATUS,
                               "scheduled_start": {"type": "string", "format": "date-time"}},
            }},
        },
    },
    "UnitAttendance": {
        "type": "object",
        "required": ["unit", "from", "to", "rule", "total", "rows"],
        "properties": {
            "unit": {"type": "object", "required": ["id", "name", "level", "parent_id"]},
            "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
            "rule": _RULE,
            "total": {"$ref": "#/components/schemas/UnitAttendanceRow"},
            "rows": {"type": "array", "items": {"$ref": "#/components/schemas/UnitAttendanceRow"}},
        },
    },
    "UnitAttendanceRow": {
        "type": "object",
        "required": ["unit_id", "name", "level", "own", *_FIGURES, "attended_percent", "credited_hours"],
        "properties": {"unit_id": _INT, "name": _STR, "level": _STR, "own": {"type": "boolean"}, **_FIGURES,
                       "attended_percent": {"type": "number"}, "credited_hours": {"type": "number"}},
    },
})


def _list(name: str, key: str) -> dict[str, Any]:
    return {"type": "object", "required": [key],
            "properties": {key: {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}}}}


_POINT_REF = {"type": "object", "required": ["id", "name"],
              "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
RESPONSES["CheckinCode"] = {
    "type": "object",
    "required": ["code", "url", "expires_at", "rotates_at", "seconds_left", "window_seconds", "session_id",
                 "bridge_point_id", "checked_in", "qr_svg"],
    "properties": {
        "code": {"type": "string", "pattern": "^[0-9]{6}$"},
        "url": {"type": "string", "description": "The QR link (absolute)"},
        "expires_at": {"type": "string", "format": "date-time",
                       "description": "This code and link are refused from then on (one window after rotates_at)"},
        "rotates_at": {"type": "string", "format": "date-time", "description": "The next code is shown"},
        "seconds_left": {"type": "number", "description": "Until rotates_at, by the server's clock"},
        "window_seconds": {"type": "integer"}, "session_id": {"type": "integer"},
        "bridge_point_id": {"type": "integer"}, "checked_in": {"type": "integer"},
        "qr_svg": {"type": "string", "description": "The QR code of this window as SVG (same-site URL)"},
    },
}
RESPONSES["Checkin"] = {
    "type": "object",
    "required": ["id", "session", "bridge_point", "user_id", "checked_in_at", "checked_out_at", "source", "created"],
    "properties": {
        "id": {"type": "integer"},
        "session": {"type": "object", "required": ["id", "title", "status"],
                    "properties": {"id": {"type": "integer"}, "title": {"type": "string"},
                                   "status": {"type": "string"}}},
        "bridge_point": _POINT_REF, "user_id": {"type": "integer"},
        "checked_in_at": {"type": "string", "format": "date-time"}, "checked_out_at": _NULLABLE_TIME,
        "source": {"type": "string", "enum": ["qr", "code", "manual"]},
        "created": {"type": "boolean", "description": "False: already checked in at this hall (status 200)"},
        "closed_checkin_id": _NULLABLE_INT,
    },
}
RESPONSES["CheckinList"] = {
    "type": "object",
    "required": ["session_id", "points", "checkins"],
    "properties": {
        "session_id": {"type": "integer"},
        "points": {"type": "array", "items": {
            "type": "object", "required": ["bridge_point_id", "name", "checked_in"],
            "properties": {"bridge_point_id": {"type": "integer"}, "name": {"type": "string"},
                           "checked_in": {"type": "integer"}}}},
        "checkins": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "user_id", "username", "full_name", "bridge_point_id", "checked_in_at",
                         "checked_out_at", "source", "recorded_by"],
            "properties": {"id": {"type": "integer"}, "user_id": {"type": "integer"},
                           "username": {"type": "string"}, "full_name": {"type": "string"},
                           "bridge_point_id": {"type": "integer"},
                           "checked_in_at": {"type": "string", "format": "date-time"},
                           "checked_out_at": _NULLABLE_TIME,
                           "source": {"type": "string", "enum": ["qr", "code", "manual"]},
                           "recorded_by": {"type": ["string", "null"]}}}},
    },
}

_SECONDS = {"type": "number", "minimum": 0}
_URL = {"type": ["string", "null"]}
RESPONSES["Recording"] = {
    "type": "object",
    "required": ["id", "session_id", "status", "duration_seconds", "size_bytes", "sha256", "parts", "started_at",
                 "ended_at", "chapters", "download_url", "mp4_url", "poster_url", "mp4_status", "mp4_progress"],
    "properties": {
        "id": {"type": "integer"}, "session_id": {"type": "integer"},
        "status": {"type": "string", "enum": ["recording", "ready", "interrupted", "failed", "deleted"],
                   "description": "ready and interrupted (a crash left a gap of a few seconds) play"},
        "duration_seconds": _SECONDS, "size_bytes": {"type": "integer"},
        "sha256": {"type": "string", "description": "Of the original file (download_url); empty until finished"},
        "parts": {"type": "integer", "description": "Continuous pieces (more than one after a restart)"},
        "started_at": {"type": "string", "format": "date-time"}, "ended_at": _NULLABLE_TIME,
        "chapters": {"type": "array", "items": {
            "type": "object", "required": ["at_seconds", "title", "kind", "name", "participant_key"],
            "properties": {"at_seconds": _SECONDS, "title": {"type": "string"},
                           "kind": {"type": "string", "enum": ["hall", "speaker"]}, "name": {"type": "string"},
                           "participant_key": {"type": "string"}}}},
        "download_url": {**_URL, "description": "The original WebM (VP8 + Opus); HTTP Range; ?download=1"},
        "mp4_url": {**_URL, "description": "H.264 + AAC, faststart, once mp4_status is done"},
        "poster_url": _URL,
        "mp4_status": {"type": "string", "enum": ["waiting", "pending", "running", "done", "failed"]},
        "mp4_progress": {"type": "number", "minimum": 0, "maximum": 100},
        "mp4_error": {"type": "string", "description": "Administrators only"},
    },
}
RESPONSES["RecordingList"] = _list("Recording", "recordings")
RESPONSES["ReplayProgressInput"] = {
    "type": "object",
    "required": ["ranges"],
    "additionalProperties": False,
    "properties": {
        "ranges": {"type": "array", "maxItems": 500, "items": {
            "type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number", "minimum": 0}},
            "description": "[from_seconds, to_seconds] of media time played (the player's played ranges)"},
        "position": {"type": "number", "minimum": 0, "description": "Where playback is now (resume)"},
    },
}
RESPONSES["ReplayProgress"] = {
    "type": "object",
    "required": ["recording_id", "credited_seconds", "added_seconds", "refused_seconds", "position_seconds"],
    "properties": {
        "recording_id": {"type": "integer"},
        "credited_seconds": {**_SECONDS, "description": "The caller's replay credit for the recording (the union)"},
        "added_seconds": {**_SECONDS, "description": "New by this report"},
        "refused_seconds": {**_SECONDS, "description": "Claimed beyond 2x the wall time since the previous report: "
                                                      "credited by a later report that claims it again"},
        "position_seconds": _SECONDS,
    },
}

RESPONSES["SessionList"] = _list("Session", "sessions")
RESPONSES["UnitList"] = _list("Unit", "units")
RESPONSES["BridgePointList"] = _list("BridgePoint", "bridge_points")
RESPONSES["UserList"] = {**_list("User", "users"), "required": ["users", "total"]}
RESPONSES["UserList"]["properties"]["total"] = {"type": "integer"}

def _roll_call() -> dict[str, Any]:
    from server.signaling.outgoing import QUALITY_POINT

    point = {**QUALITY_POINT, "properties": {
        **QUALITY_POINT["properties"],
        "roll_call": {"enum": ["not_connected", "reconnecting", "connected", "receiving", "floor"],
                      "description": "The point's seat in the session (the console's roll call)"},
        "served_by": {"type": "string", "description": "The relay whose media reaches the point, or \"hub\""}},
        "required": [*QUALITY_POINT["required"], "roll_call", "served_by"]}
    relay = {"type": "object", "required": ["name", "unit_id", "url", "uplinks", "carrying", "viewers"],
             "properties": {
        "name": {"type": "string"}, "unit_id": {"type": "integer"}, "url": {"type": "string"},
        "parent": {"type": ["string", "null"]},
        "uplinks": {"type": "integer", "description": "Its uplinks to this session's program (one)"},
        "carrying": {"type": "boolean",
                     "description": "Its uplink is up, by its last heartbeat: the hub sends its unit's viewers to it"},
        "viewers": {"type": "integer", "description": "Viewers it serves, all sessions"},
        "cpu_percent": {"type": ["integer", "null"]}, "rss_mib": {"type": ["integer", "null"]},
        "beat_age_seconds": {"type": "number", "description": "Since its last heartbeat"}}}
    pair = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
            "description": "[amber at, red at]"}
    alarm = {"type": "object", "required": ["id", "at", "bridge_point", "alarm", "reasons"], "properties": {
        "id": {"type": "string"}, "at": {"type": "string", "format": "date-time"},
        "bridge_point": {"type": "integer"}, "alarm": {"enum": ["dropped", "red", "recovered"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "rtt_ms": {"type": ["number", "null"]}, "loss_pct": {"type": ["number", "null"]},
        "jitter_ms": {"type": ["number", "null"]}}}
    return {"type": "object", "required": ["session_id", "title", "status", "thresholds", "points", "alarms",
                                           "relays"],
            "properties": {
                "session_id": {"type": "integer"}, "title": {"type": "string"},
                "status": {"enum": ["scheduled", "live", "ended", "cancelled"]},
                "thresholds": {"type": "object", "properties": {
                    "rtt_ms": pair, "loss_pct": pair, "jitter_ms": pair, "freezes_per_min": pair}},
                "points": {"type": "array", "items": point,
                           "description": "Every invited point, those needing attention first"},
                "alarms": {"type": "array", "items": alarm, "description": "The session's alarms, newest first"},
                "relays": {"type": "array", "items": relay,
                           "description": "The live relays carrying the session (issue 14's cascade)"}}}


RESPONSES["RollCall"] = _roll_call()
RESPONSES["PrecheckResult"] = {
    "type": "object", "required": ["ok", "seconds", "rtt_ms", "bitrate_kbps", "video_frames", "audio", "detail"],
    "properties": {
        "ok": {"type": "boolean"}, "seconds": {"type": "number"}, "rtt_ms": {"type": ["number", "null"]},
        "bitrate_kbps": {"type": ["number", "null"]}, "video_frames": {"type": "integer"},
        "audio": {"type": "boolean"},
        "detail": {"enum": ["", "no_connection", "no_video", "no_audio"],
                   "description": "What failed, when it did"}}}

_ERRORS = {
    "400": "Malformed request", "401": "Not signed in or token refused", "403": "The caller's role forbids it",
    "404": "Not found", "409": "Conflicts with the current state", "413": "Body too large",
    "415": "Wrong content type", "422": "Validation failed", "429": "Too many attempts",
}


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = dict(RESPONSES)
    for route in routes:
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.path)
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "responses": {},
        }
        if "{id}" in path:
            operation["parameters"] = [{"name": "id", "in": "path", "required": True,
                                        "schema": {"type": "integer", "minimum": 1}}]
        for name in re.findall(r"\{(\w+)\}", path):
            if name != "id":
                operation.setdefault("parameters", []).append({"name": name, "in": "path", "required": True,
                                                               "schema": {"type": "string",
                                                                          "pattern": "^[0-9a-f]{32}$"}})
        if route.public:
            operation["security"] = []
        if route.body is not None:
            body = route.body.partial() if route.body_partial else route.body
            schemas[body.name] = body.openapi()
            operation["requestBody"] = {"required": True, "content": {
                route.body_type: {"schema": {"$ref": f"#/components/schemas/{body.name}"}}}}
        elif route.request is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{route.request}"}}}}
        elif route.body_type == "text/csv":
            operation["requestBody"] = {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
        elif route.body_type == "application/sdp":
            operation["requestBody"] = {"required": True, "content": {
                "application/sdp": {"schema": {"type": "string", "description": "An SDP offer (a larger body: 413)"}}}}
        success: dict[str, Any] = {"description": "Success"}
        if route.response:
            success["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.response}"}}}
        operation["responses"][str(route.status)] = success
        for status, text in _ERRORS.items():
            operation["responses"][status] = {"description": text, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Bridgecast API", "version": __version__,
                 "description": "Errors always have the body {\"error\": {\"code\", \"message\"}}."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "bc_token",
                           "description": "Browser sessions; writes also need the X-CSRF-Token header"},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }
