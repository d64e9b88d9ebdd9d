"""The cascade's relay nodes as registered by an administrator (issue 14): unit, URL, parent, token.

A relay's token is its only credential and it can do nothing but act as that
relay: it is not a user's token and no user route accepts it (the auth
middleware leaves ``/api/v1/relay/`` to :mod:`server.views.relays`). The
token is ``bcr_`` and 256 random bits; only its SHA-256 digest is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.errors import Conflict, ValidationFailed
from server.live.lifecycle import SessionStatus
from server.storage.models import BridgePoint, Relay, Session, SessionInvite, Unit
from server.storage.units import ancestor_ids, descendant_ids, unit_by_slug

TOKEN_PREFIX = "bcr_"
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_URL = 300


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_relay_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX) and 20 <= len(token) <= 100


@dataclass(frozen=True)
class RelayRecord:
    """A registered relay, as the hub directs viewers by it (plain values, no ORM object)."""

    id: int
    name: str
    unit_id: int
    unit_slug: str
    url: str
    parent: str | None  # the parent relay's name; None: the hub
    active: bool
    last_seen_at: datetime | None = None

    def api(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "unit_id": self.unit_id, "unit": self.unit_slug,
                "url": self.url, "parent": self.parent, "active": self.active,
                "last_seen_at": self.last_seen_at.isoformat() if self.last_seen_at else None}


def check_url(url: str) -> str:
    """A relay's base URL: http(s), a host, no query, fragment or credentials; kept without a trailing slash."""
    problem = None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError:
        parts, port, problem = None, None, "is not a URL"
    if parts is not None:
        if parts.scheme not in ("http", "https"):
            problem = "must start with http:// or https://"
        elif not parts.hostname:
            problem = "names no host"
        elif parts.username or parts.password or parts.query or parts.fragment:
            problem = "must not carry credentials, a query or a fragment"
        elif any(c.isspace() or not c.isprintable() or c in ";,'\"" for c in url):
            # It goes into headers (a redirect's Location, a live page's Content-Security-Policy).
            problem = "must not hold spaces, quotes, commas or semicolons"
        elif len(url) > MAX_URL:
            problem = f"is longer than {MAX_URL} characters"
    del port
    if problem:
        raise ValidationFailed.one("url", "bad_url", f"the relay's URL {problem}")
    return url.rstrip("/")


async def create_relay(db: AsyncSession, *, name: str, unit_slug: str, url: str,
                       parent_name: str | None = None) -> tuple[RelayRecord, str]:
    """Register a relay; returns it and its token (shown once: only the digest is kept)."""
    if not _NAME.match(name):
        raise ValidationFailed.one("name", "bad_name", "a relay's name is 1-64 lowercase letters, digits and dashes")
    url = check_url(url)
    unit = await unit_by_slug(db, unit_slug)
    if unit is None:
        raise ValidationFailed.one("unit", "unknown_unit", f"no unit with slug {unit_slug!r}")
    parent = None
    if parent_name is not None:
        parent = await db.scalar(select(Relay).where(Relay.name == parent_name))
        if parent is None:
            raise ValidationFailed.one("parent", "unknown_relay", f"no relay named {parent_name!r}")
        # A relay below another serves a part of its parent's unit (a commune of its province).
        if parent.unit_id == unit.id or parent.unit_id not in await ancestor_ids(db, unit.id):
            raise ValidationFailed.one("parent", "not_above",
                                       f"relay {parent_name!r} does not serve a unit above {unit_slug!r}")
    if await db.scalar(select(Relay.id).where(Relay.name == name)) is not None:
        raise Conflict(f"a relay named {name!r} exists", code="relay_exists")
    token = new_token()
    relay = Relay(name=name, unit_id=unit.id, url=url, parent_id=parent.id if parent else None,
                  token_digest=digest(token))
    db.add(relay)
    await db.commit()
    return RelayRecord(relay.id, name, unit.id, unit.slug, url, parent_name, True, None), token


async def list_relays(db: AsyncSession) -> list[RelayRecord]:
    parent = Relay.__table__.alias("parent")
    rows = await db.execute(
        select(Relay.id, Relay.name, Relay.unit_id, Unit.slug, Relay.url, parent.c.name, Relay.active,
               Relay.last_seen_at)
        .join(Unit, Unit.id == Relay.unit_id)
        .outerjoin(parent, parent.c.id == Relay.parent_id)
        .order_by(Relay.name))
    return [RelayRecord(*row) for row in rows.all()]


async def relay_by_token(db: AsyncSession, token: str) -> RelayRecord | None:
    """The active relay this token belongs to, or None."""
    if not looks_like_relay_token(token):
        return None
    wanted = digest(token)
    relay = await db.scalar(select(Relay).where(Relay.token_digest == wanted))
    if relay is None or not relay.active or not hmac.compare_digest(relay.token_digest, wanted):
        return None
    return next((r for r in await list_relays(db) if r.id == relay.id), None)


async def saw(db: AsyncSession, relay_id: int, at: datetime) -> None:
    """Write down a relay's heartbeat (the caller does it every few seconds at most)."""
    relay = await db.get(Relay, relay_id)
    if relay is not None:
        relay.last_seen_at = at
        await db.commit()


async def sessions_for(db: AsyncSession, unit_id: int) -> list[dict[str, object]]:
    """The live sessions a relay of ``unit_id`` carries: those inviting a point of its unit or below."""
    units = await descendant_ids(db, unit_id)
    rows = await db.execute(
        select(Session.id, Session.title).distinct()
        .join(SessionInvite, SessionInvite.session_id == Session.id)
        .join(BridgePoint, BridgePoint.id == SessionInvite.bridge_point_id)
        .where(Session.status == SessionStatus.LIVE, BridgePoint.unit_id.in_(units))
        .order_by(Session.id))
    return [{"id": session_id, "title": title} for session_id, title in rows.all()]
