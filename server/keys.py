"""Every object the application shares, behind a typed key (one place to look)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import jinja2

    from server.attendance.checkin import CheckinCodes
    from server.auth.passwords import PasswordChecks
    from server.auth.ratelimit import SlidingWindowLimiter
    from server.auth.throttle import LoginThrottle
    from server.config import Settings
    from server.i18n import Catalogues
    from server.attendance.rule import CreditRule
    from server.live.bus import EventBus
    from server.media.stats import MediaStats
    from server.views.metrics import Telemetry
    from server.recording.jobs import Mp4Jobs
    from server.recording.service import Archive
    from server.storage.attendance import RecordKeeper
    from server.signaling.registry import LiveRegistry
    from server.storage.db import Database
    from server.storage.live import FloorGrantStore
    from server.storage.presence import PresenceRecorder
    from server.storage.quality import QualityStore
    from server.live.nodes import NodeRegistry
    from server.signaling.cascade import RelayWatch
    from server.storage.relays import RelayRecord

SETTINGS = web.AppKey("settings", "Settings")
DATABASE = web.AppKey("database", "Database")
JWT_SECRET = web.AppKey("jwt_secret", str)
TEMPLATES = web.AppKey("templates", "jinja2.Environment")
CATALOGUES = web.AppKey("catalogues", "Catalogues")
LOGIN_THROTTLE = web.AppKey("login_throttle", "LoginThrottle")
PASSWORD_CHECKS = web.AppKey("password_checks", "PasswordChecks")
EVENTS = web.AppKey("events", "EventBus")
LIVE = web.AppKey("live", "LiveRegistry")
FLOOR_GRANTS = web.AppKey("floor_grants", "FloorGrantStore")
PRESENCE = web.AppKey("presence", "PresenceRecorder")
CREDIT_RULE = web.AppKey("credit_rule", "CreditRule")
CHECKIN_CODES = web.AppKey("checkin_codes", "CheckinCodes")
# Failed check-in attempts per user: six digits must not be guessed.
CHECKIN_LIMITER = web.AppKey("checkin_limiter", "SlidingWindowLimiter")
SOCKETS = web.AppKey("sockets", "set[web.WebSocketResponse]")
ARCHIVE = web.AppKey("archive", "Archive")
MP4_JOBS = web.AppKey("mp4_jobs", "Mp4Jobs")
# Keeps ended sessions' attendance records (replay reports change them).
RECORDS = web.AppKey("records", "RecordKeeper")
MEDIA_STATS = web.AppKey("media_stats", "MediaStats")
TELEMETRY = web.AppKey("telemetry", "Telemetry")
QUALITY = web.AppKey("quality", "QualityStore")
# The cascade (issue 14): the node registry, the hub's watch over its relays, relay tokens
# recently checked (digest -> record, valid until a monotonic time) and when each relay was last
# written down as seen.
NODES = web.AppKey("nodes", "NodeRegistry")
RELAY_WATCH = web.AppKey("relay_watch", "RelayWatch")
RELAY_TOKENS = web.AppKey("relay_tokens", "dict[str, tuple[RelayRecord, float]]")
RELAYS_SEEN = web.AppKey("relays_seen", "dict[int, float]")

# Per-request values, set by the middlewares and the auth helpers.
PRINCIPAL = web.RequestKey("principal", object)  # Principal | None
TOKEN_SOURCE = web.RequestKey("token_source", str)  # "bearer" | "cookie"
CLEAR_TOKEN_COOKIE = web.RequestKey("clear_token_cookie", bool)
CSRF_TOKEN = web.RequestKey("csrf_token", str)
NEW_CSRF_TOKEN = web.RequestKey("new_csrf_token", str)
TRANSLATOR = web.RequestKey("translator", object)
