"""Every route in one table; the OpenAPI document is generated from the API rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from server import schemas
from server.validation import Schema
from server.views import (account_pages, admin_pages, api, board, checkins, health, live, metrics, recordings, relays,
                          reports, session_pages)
from server.views.openapi import openapi_document

ID = r"{id:\d+}"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    summary: str = ""
    body: Schema | None = None
    body_partial: bool = False
    body_type: str = "application/json"
    status: int = 200
    response: str | None = None
    # A request body described in server/views/openapi.py rather than by a Schema.
    request: str | None = None
    public: bool = False

    @property
    def is_api(self) -> bool:
        """A machine endpoint: JSON errors, 401 rather than the login page."""
        return self.path.startswith(("/api/", "/whip/", "/whep/", "/ws/"))


PAGES = [
    Route("GET", "/healthz", health.healthz, public=True),
    Route("GET", "/readyz", health.readyz, public=True),
    # Loopback or the metrics token (server/views/metrics.py), not a signed-in user.
    Route("GET", "/metrics", metrics.metrics, public=True),
    Route("GET", "/login", account_pages.login_page, public=True),
    Route("POST", "/login", account_pages.login_submit, public=True),
    Route("POST", "/logout", account_pages.logout, public=True),
    Route("POST", "/lang", account_pages.switch_language, public=True),
    Route("GET", "/account/password", account_pages.password_page),
    Route("POST", "/account/password", account_pages.password_submit),
    Route("GET", "/", session_pages.dashboard),
    Route("GET", "/sessions", session_pages.session_list),
    Route("GET", "/sessions/new", session_pages.session_new),
    Route("POST", "/sessions/new", session_pages.session_create),
    Route("GET", f"/sessions/{ID}", session_pages.session_detail),
    Route("GET", f"/sessions/{ID}/edit", session_pages.session_edit),
    Route("POST", f"/sessions/{ID}/edit", session_pages.session_update),
    Route("POST", f"/sessions/{ID}/cancel", session_pages.session_cancel),
    Route("GET", f"/sessions/{ID}/live", live.live_page),
    Route("GET", f"/sessions/{ID}/board", board.board_page),
    Route("GET", f"/ws/sessions/{ID}", live.session_socket),
    Route("GET", f"/sessions/{ID}/checkin-qr.svg", checkins.checkin_qr),
    Route("GET", f"/sessions/{ID}/checkins", checkins.checkins_page),
    Route("POST", f"/sessions/{ID}/checkins/manual", checkins.manual_submit),
    Route("POST", f"/sessions/{ID}/checkins/{{checkin:\\d+}}/remove", checkins.remove_submit),
    Route("GET", "/checkin", checkins.checkin_page, public=True),
    Route("POST", "/checkin", checkins.checkin_submit),
    Route("POST", f"/checkin/{ID}/checkout", checkins.checkout_submit),
    Route("GET", f"/sessions/{ID}/attendance", reports.session_attendance_page),
    Route("POST", f"/sessions/{ID}/attendance/corrections", reports.correction_submit),
    Route("GET", f"/users/{ID}/attendance", reports.user_attendance_page),
    Route("GET", "/reports/units", reports.units_report_page),
    Route("GET", "/recordings", recordings.library_page),
    Route("GET", f"/recordings/{ID}", recordings.replay_page),
    Route("POST", f"/recordings/{ID}/delete", recordings.delete_submit),
    Route("GET", f"/recordings/{ID}/file.webm", recordings.media_original),
    Route("GET", f"/recordings/{ID}/file.mkv", recordings.media_original),
    Route("GET", f"/recordings/{ID}/file.mp4", recordings.media_mp4),
    Route("GET", f"/recordings/{ID}/poster.jpg", recordings.poster),
    Route("GET", "/units", admin_pages.units_page),
    Route("POST", "/units", admin_pages.unit_create),
    Route("GET", f"/units/{ID}/edit", admin_pages.unit_edit),
    Route("POST", f"/units/{ID}/edit", admin_pages.unit_update),
    Route("POST", f"/units/{ID}/delete", admin_pages.unit_delete),
    Route("GET", "/bridge-points", admin_pages.points_page),
    Route("POST", "/bridge-points", admin_pages.point_create),
    Route("GET", f"/bridge-points/{ID}/edit", admin_pages.point_edit),
    Route("POST", f"/bridge-points/{ID}/edit", admin_pages.point_update),
    Route("POST", f"/bridge-points/{ID}/delete", admin_pages.point_delete),
    Route("GET", "/users", admin_pages.users_page),
    Route("POST", "/users", admin_pages.user_create),
    Route("GET", f"/users/{ID}/edit", admin_pages.user_edit),
    Route("POST", f"/users/{ID}/edit", admin_pages.user_update),
    Route("GET", "/users/import", admin_pages.import_page),
    Route("POST", "/users/import", admin_pages.import_submit),
]

V1 = "/api/v1"
API = [
    Route("POST", f"{V1}/auth/token", api.create_token, "Exchange a username and password for a bearer token",
          body=schemas.LOGIN, status=201, response="Token", public=True),
    Route("POST", f"{V1}/auth/logout", api.revoke_token, "Sign the bearer token out (refused from then on)",
          status=204),
    Route("GET", f"{V1}/me", api.me, "The caller's account", response="User"),
    Route("GET", f"{V1}/sessions", api.list_sessions, "Sessions the caller may see (query: status, limit, offset)",
          response="SessionList"),
    Route("POST", f"{V1}/sessions", api.create_session, "Schedule a session", body=schemas.SESSION, status=201,
          response="Session"),
    Route("GET", f"{V1}/sessions/{ID}", api.get_session, "One session", response="Session"),
    Route("PATCH", f"{V1}/sessions/{ID}", api.update_session, "Change a session", body=schemas.SESSION,
          body_partial=True, response="Session"),
    Route("POST", f"{V1}/sessions/{ID}/cancel", api.cancel_session, "Cancel a scheduled session",
          response="Session"),
    Route("POST", f"{V1}/sessions/{ID}/start", live.start_session,
          "Go live (the session's speaker or an admin): status live, actual start time", response="Session"),
    Route("POST", f"{V1}/sessions/{ID}/end", live.end_session,
          "End the session: every endpoint told, media closed, status ended", response="Session"),
    Route("GET", f"{V1}/sessions/{ID}/roll-call", board.roll_call,
          "The roll-call board (the speaker or an admin): every invited point with its state (green, amber, red, "
          "absent), link figures, reconnects, last connection test and sparkline samples, those needing "
          "attention first; and the session's alarms", response="RollCall"),
    Route("POST", f"{V1}/sessions/{ID}/precheck", live.precheck_start,
          "A hall's connection test (its operator): an SDP offer sending camera and microphone, answered (201, "
          "application/sdp, Location) by a connection that sends both back through the hub",
          body_type="application/sdp", status=201),
    Route("DELETE", f"{V1}/sessions/{ID}/precheck/{{resource:[0-9a-f]+}}", live.precheck_end,
          "End the connection test: what the server measured (round trip, bitrate, frames, sound), kept as the "
          "point's connection test on the roll-call board", response="PrecheckResult"),
    Route("GET", f"{V1}/sessions/{ID}/checkin-code", checkins.checkin_code,
          "The hall's check-in code and QR link now (the operator of an invited hall, scheduled or live)",
          response="CheckinCode"),
    Route("GET", f"{V1}/sessions/{ID}/checkins", checkins.list_checkins,
          "Check-ins not removed, newest first: an operator's own point; speaker and admin all points "
          "(query: point_id), with the count present per point", response="CheckinList"),
    Route("POST", f"{V1}/sessions/{ID}/checkins/manual", checkins.manual_checkin,
          "Mark a member present at the operator's point (source manual, audited); 200 if already there",
          body=schemas.MANUAL_CHECKIN, status=201, response="Checkin"),
    Route("POST", f"{V1}/checkins", checkins.create_checkin,
          "A member checks in by the hall's 6-digit code or QR token: 201, or 200 with the open check-in if "
          "already checked in at that hall; checking in at another hall closes the first",
          body=schemas.CHECKIN, status=201, response="Checkin"),
    Route("POST", f"{V1}/checkins/{ID}/checkout", checkins.checkout, "The member leaves the hall (optional)",
          response="Checkin"),
    Route("DELETE", f"{V1}/checkins/{ID}", checkins.remove_checkin,
          "Remove a wrong check-in (operator of its point, or admin), audited; optional body {reason}",
          status=204),
    Route("GET", f"{V1}/sessions/{ID}/attendance", reports.session_attendance,
          "Attendance of a session: the rule, per bridge point, every expected member (query: format=json|csv|"
          "xlsx); admins and the speaker see all, an operator their own point", response="SessionAttendance"),
    Route("POST", f"{V1}/sessions/{ID}/attendance/corrections", reports.create_correction,
          "Correct one member's result (admins): kept, audited, shown on every report",
          body=schemas.ATTENDANCE_CORRECTION, status=201, response="AttendanceMember"),
    Route("GET", f"{V1}/sessions/{ID}/recordings", recordings.session_recordings,
          "The session's recordings (whoever may see the session): status, duration, size, SHA-256, chapters, "
          "and download URLs that honour HTTP Range", response="RecordingList"),
    Route("GET", f"{V1}/recordings/{ID}", recordings.get_recording, "One recording", response="Recording"),
    Route("POST", f"{V1}/recordings/{ID}/progress", recordings.report_progress,
          "The player's watched ranges of media time (send {\"ranges\": []} when playback starts: it starts "
          "the clock); credits what is new, at most 2x the wall time since the caller's previous report; "
          "400 for malformed ranges or ranges outside the recording", request="ReplayProgressInput",
          response="ReplayProgress"),
    Route("DELETE", f"{V1}/recordings/{ID}", recordings.delete_recording,
          "Delete the recording's media files (admins), audited; optional body {reason}; its row, chapters, "
          "replay credit and attendance stay", status=204),
    Route("GET", f"{V1}/units", api.list_units, "All units", response="UnitList"),
    Route("POST", f"{V1}/units", api.create_unit, "Create a unit", body=schemas.UNIT, status=201, response="Unit"),
    Route("GET", f"{V1}/units/{ID}", api.get_unit, "One unit", response="Unit"),
    Route("PATCH", f"{V1}/units/{ID}", api.update_unit, "Change a unit", body=schemas.UNIT, body_partial=True,
          response="Unit"),
    Route("DELETE", f"{V1}/units/{ID}", api.delete_unit, "Delete an unused unit", status=204),
    Route("GET", f"{V1}/units/{ID}/attendance", reports.unit_attendance,
          "A unit's attendance over a period, rolled up per unit below it (query: from, to as YYYY-MM-DD)",
          response="UnitAttendance"),
    Route("GET", f"{V1}/bridge-points", api.list_points, "All bridge points", response="BridgePointList"),
    Route("POST", f"{V1}/bridge-points", api.create_point, "Create a bridge point", body=schemas.BRIDGE_POINT,
          status=201, response="BridgePoint"),
    Route("GET", f"{V1}/bridge-points/{ID}", api.get_point, "One bridge point", response="BridgePoint"),
    Route("PATCH", f"{V1}/bridge-points/{ID}", api.update_point, "Change a bridge point",
          body=schemas.BRIDGE_POINT, body_partial=True, response="BridgePoint"),
    Route("DELETE", f"{V1}/bridge-points/{ID}", api.delete_point, "Delete an unused bridge point", status=204),
    Route("GET", f"{V1}/users", api.list_users, "Users (query: role, q, limit, offset)", response="UserList"),
    Route("POST", f"{V1}/users", api.create_user, "Create a user", body=schemas.USER, status=201, response="User"),
    Route("GET", f"{V1}/users/{ID}", api.get_user, "One user", response="User"),
    Route("PATCH", f"{V1}/users/{ID}", api.update_user, "Change a user (a new password revokes their tokens)",
          body=schemas.USER_UPDATE, body_partial=True, response="User"),
    Route("GET", f"{V1}/users/{ID}/attendance", reports.user_attendance,
          "A member's attendance in every ended session (the member, admins, their units' operators)",
          response="MemberAttendance"),
    Route("POST", f"{V1}/users/import", api.import_users,
          "Create members from CSV (username, full_name, email, unit, password), all or nothing",
          body_type="text/csv", status=201, response="ImportResult"),
]

RESOURCE = r"{resource:[0-9a-f]{32}}"
MEDIA = [
    Route("POST", f"/whip/sessions/{ID}", live.whip_publish, "WHIP ingest (RFC 9725): the speaker's feed"),
    Route("OPTIONS", f"/whip/sessions/{ID}", live.resource_options, public=True),
    Route("DELETE", f"/whip/sessions/{ID}/{RESOURCE}", live.resource_delete),
    Route("PATCH", f"/whip/sessions/{ID}/{RESOURCE}", live.resource_patch),
    Route("POST", f"/whep/sessions/{ID}", live.whep_view, "WHEP egress: the program feed"),
    Route("OPTIONS", f"/whep/sessions/{ID}", live.resource_options, public=True),
    Route("DELETE", f"/whep/sessions/{ID}/{RESOURCE}", live.resource_delete),
    Route("PATCH", f"/whep/sessions/{ID}/{RESOURCE}", live.resource_patch),
]

# The hub's API for its relays (server/views/relays.py): a relay's token, never a user's.
RELAY = "/api/v1/relay"
CASCADE = [
    Route("POST", f"{RELAY}/heartbeat", relays.heartbeat, "A relay is alive; the sessions it should carry",
          public=True),
    Route("DELETE", f"{RELAY}/heartbeat", relays.forget, "A relay stops: send no viewer to it", public=True),
    Route("POST", f"{RELAY}/children", relays.child, "Whether a token is a relay's below the caller",
          public=True),
    Route("POST", f"{RELAY}/sessions/{ID}/feed", relays.feed, "A relay's uplink: the program once (SDP)",
          public=True),
    Route("DELETE", f"{RELAY}/sessions/{ID}/feed/{RESOURCE}", relays.feed_close, "A relay ends its uplink",
          public=True),
    Route("POST", f"{RELAY}/sessions/{ID}/viewers", relays.viewer_open, "A viewer at the relay joins",
          public=True),
    Route("PATCH", f"{RELAY}/sessions/{ID}/viewers/{RESOURCE}", relays.viewer_update,
          "The program reaches a viewer at the relay", public=True),
    Route("DELETE", f"{RELAY}/sessions/{ID}/viewers/{RESOURCE}", relays.viewer_close,
          "A viewer at the relay left (?dropped=1: was lost)", public=True),
]

ROUTES = PAGES + API + MEDIA + CASCADE


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi_document(API))


def setup_routes(app: web.Application, static_dir: str) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    app.router.add_get(f"{V1}/openapi.json", _openapi)
    app.router.add_static("/static", static_dir, follow_symlinks=False, name="static")
