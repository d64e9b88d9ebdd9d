"""The library: the recordings a caller may watch, newest first, searched by title, speaker, date and unit.

Text search ignores case and Vietnamese diacritics ("hoi nghi" finds "Hội
nghị"), which neither SQLite's nor PostgreSQL's LIKE does on their own: the
dates, the unit and what the caller may see are filtered in the database,
the words in Python over what is left (a few thousand sessions a year).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.principal import Principal
from server.auth.roles import Role
from server.storage import replay as replay_store
from server.storage.models import BridgePoint, Recording, RecordingStatus, Session, SessionInvite, Unit, User
from server.storage.sessions import visible_only
from server.storage.units import descendant_ids


def fold(text: str) -> str:
    """Lower case without diacritics (đ as d): what search compares."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@dataclass(frozen=True)
class Filter:
    text: str = ""
    speaker: str = ""
    since: datetime | None = None  # the session started at or after
    until: datetime | None = None  # and before
    unit_id: int | None = None  # shown in a hall of this unit or of a unit below it


@dataclass(frozen=True)
class Entry:
    recording: Recording
    session: Session
    speaker: str
    # What the caller has watched of it (replay credit), in seconds.
    watched_seconds: float

    @property
    def watched_percent(self) -> int:
        duration = self.recording.duration_seconds
        return min(100, round(100 * self.watched_seconds / duration)) if duration > 0 else 0


# Members and staff see what can be watched (and what is being recorded now); administrators also
# see what failed or was deleted.
_SHOWN = (RecordingStatus.READY, RecordingStatus.INTERRUPTED, RecordingStatus.RECORDING)


async def search(db: AsyncSession, principal: Principal, wanted: Filter, *, offset: int = 0,
                 limit: int = 30) -> tuple[list[Entry], int]:
    """One page of the matching recordings, newest first, and how many match in all."""
    query = (select(Recording, Session, User.full_name)
             .join(Session, Session.id == Recording.session_id)
             .outerjoin(User, User.id == Session.speaker_id))
    query = await visible_only(db, principal, query)  # type: ignore[arg-type]
    if principal.role is not Role.ADMIN:
        query = query.where(Recording.status.in_(_SHOWN))
    start = Session.actual_start
    if wanted.since is not None:
        query = query.where(start >= wanted.since)
    if wanted.until is not None:
        query = query.where(start < wanted.until)
    if wanted.unit_id is not None:
        units = await descendant_ids(db, wanted.unit_id)
        shown_there = (select(SessionInvite.session_id)
                       .join(BridgePoint, BridgePoint.id == SessionInvite.bridge_point_id)
                       .where(BridgePoint.unit_id.in_(units)))
        query = query.where(Session.id.in_(shown_there))
    query = query.order_by(Recording.started_at.desc(), Recording.id.desc())
    rows = (await db.execute(query)).all()
    words, speaker = fold(wanted.text).split(), fold(wanted.speaker)
    matching = [row for row in rows
                if all(word in fold(row[1].title) for word in words)
                and (not speaker or speaker in fold(row[2] or ""))]
    page = matching[offset:offset + limit]
    progress = await replay_store.progress_of(db, principal.user_id, [row[0].id for row in page])
    entries = [Entry(recording, session, speaker_name or "",
                     progress[recording.id].credited_seconds if recording.id in progress else 0.0)
               for recording, session, speaker_name in page]
    return entries, len(matching)


async def unit_choices(db: AsyncSession) -> list[Unit]:
    return list(await db.scalars(select(Unit).order_by(Unit.level, Unit.name)))
