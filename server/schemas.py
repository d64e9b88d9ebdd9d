"""The input schemas of the resources, shared by the API, the pages, the CSV import and the CLI."""

from __future__ import annotations

from server.auth.roles import Role
from server.storage.models import UnitLevel
from server.validation import Field, Schema

SLUG = r"[a-z0-9]+(?:-[a-z0-9]+)*"
USERNAME = r"[a-z0-9][a-z0-9._-]{1,63}"

SESSION = Schema(
    "SessionInput",
    (
        Field("title", max_length=300, description="Shown on every page and in the archive"),
        Field("description", required=False, max_length=5000, default="", text="lines"),
        Field("speaker_id", "integer", required=False, nullable=True, minimum=1,
              description="A user with the speaker or admin role"),
        Field("scheduled_start", "datetime", description="ISO 8601 with a UTC offset"),
        Field("scheduled_end", "datetime", description="After scheduled_start"),
        Field("invited_point_ids", "integer_list", required=False, max_items=10000, default=[],
              description="Bridge points invited to the session"),
        Field("record", "boolean", required=False, default=True,
              description="Recorded for the archive when it goes live (default true)"),
    ),
)

UNIT = Schema(
    "UnitInput",
    (
        Field("name", max_length=200),
        Field("slug", max_length=80, pattern=SLUG, description="ASCII, lowercase, hyphens"),
        Field("level", choices=tuple(level.value for level in UnitLevel)),
        Field("parent_id", "integer", required=False, nullable=True, minimum=1,
              description="Required for province and commune units"),
    ),
)

BRIDGE_POINT = Schema(
    "BridgePointInput",
    (
        Field("name", max_length=200),
        Field("slug", max_length=80, pattern=SLUG),
        Field("unit_id", "integer", minimum=1),
        Field("location", required=False, max_length=300, default=""),
        Field("is_hub", "boolean", required=False, default=False),
        Field("active", "boolean", required=False, default=True),
    ),
)

USER = Schema(
    "UserInput",
    (
        Field("username", max_length=64, pattern=USERNAME, description="Lowercase letters, digits, . _ -"),
        Field("full_name", max_length=200),
        Field("email", required=False, max_length=254, pattern=r"[^@\s]+@[^@\s]+\.[^@\s]+", default=""),
        Field("role", choices=tuple(role.value for role in Role)),
        Field("unit_id", "integer", required=False, nullable=True, minimum=1),
        Field("bridge_point_id", "integer", required=False, nullable=True, minimum=1,
              description="Required for operators: the hall they run"),
        Field("password", min_length=8, max_length=256, description="At least 8 characters", text="raw"),
        Field("active", "boolean", required=False, default=True),
    ),
)

# What an administrator may change of an existing user (the password through
# its own field, which revokes the user's tokens).
USER_UPDATE = Schema(
    "UserUpdate",
    tuple(f for f in USER.fields if f.name not in ("username", "password"))
    + (Field("password", required=False, min_length=8, max_length=256, text="raw"),),
)

# One row of a members CSV file.
MEMBER_ROW = Schema(
    "MemberRow",
    (
        Field("username", max_length=64, pattern=USERNAME),
        Field("full_name", max_length=200),
        Field("email", required=False, max_length=254, pattern=r"[^@\s]+@[^@\s]+\.[^@\s]+"),
        Field("unit", max_length=80, pattern=SLUG, description="The unit's slug"),
        Field("password", min_length=8, max_length=256, text="raw"),
    ),
)

LOGIN = Schema(
    "LoginInput",
    (
        Field("username", max_length=64),
        Field("password", max_length=256, text="raw"),
    ),
)

PASSWORD_CHANGE = Schema(
    "PasswordChange",
    (
        Field("current_password", max_length=256, text="raw"),
        Field("new_password", min_length=8, max_length=256, text="raw"),
    ),
)

CHECKIN = Schema(
    "CheckinInput",
    (
        Field("code", max_length=1000,
              description="The 6-digit code shown on the hall's screen, or the token of its QR link (t=...)"),
    ),
)

CHECKIN_REMOVAL = Schema(
    "CheckinRemoval",
    (Field("reason", required=False, max_length=500, default="", description="Kept in the audit trail",
           text="lines"),),
)

MANUAL_CHECKIN = Schema(
    "ManualCheckin",
    (
        Field("username", required=False, max_length=64, description="The member (or user_id)"),
        Field("user_id", "integer", required=False, minimum=1),
        Field("from_start", "boolean", required=False, default=False,
              description="Present from the session's live start rather than from now"),
        Field("bridge_point_id", "integer", required=False, minimum=1,
              description="Administrators only: the hall (default: the member's own); an operator's is theirs"),
        Field("reason", required=False, max_length=500, default="", text="lines"),
    ),
)

# An administrator's correction of one member's result in one session.
ATTENDANCE_CORRECTION = Schema(
    "AttendanceCorrectionInput",
    (
        Field("username", required=False, max_length=64, description="The member (or give user_id)"),
        Field("user_id", "integer", required=False, minimum=1, description="The member (or give username)"),
        Field("status", required=False, choices=("attended", "partial", "absent"),
              description="Replaces the computed status; without it the rule decides from credited_seconds"),
        Field("credited_seconds", "integer", required=False, minimum=0, maximum=10**7,
              description="Replaces the credited seconds: at most the session's live duration"),
        Field("reason", max_length=1000, description="Why: shown on every report", text="lines"),
    ),
    "Give username or user_id, and status or credited_seconds (or both).",
)


# The cascade (issue 14): what a relay sends the hub.
RELAY_HEARTBEAT = Schema(
    "RelayHeartbeat",
    (
        Field("sessions", "integer_list", required=False, max_items=1000, default=[],
              description="The live sessions whose uplink is up on the relay"),
        Field("viewers", "integer", required=False, minimum=0, maximum=1_000_000, default=0),
        Field("cpu_percent", "integer", required=False, minimum=0, maximum=100_000, default=0),
        Field("rss_mib", "integer", required=False, minimum=0, maximum=10_000_000, default=0),
    ),
)

RELAY_VIEWER = Schema(
    "RelayViewer",
    (
        Field("endpoint", pattern=r"[0-9a-f]{32}", max_length=32, description="The relay's id for the viewer"),
        Field("token", max_length=4096, description="The viewer's bearer token, or the hub's redirect ticket"),
    ),
)

RELAY_CHILD = Schema(
    "RelayChild",
    (Field("token", max_length=200, description="The token a relay below the caller showed it"),),
)

RELAY_VIEWER_STATE = Schema("RelayViewerState", (Field("receiving", "boolean"),))
