"""The archive on the web: the catalogue API, the media files (with HTTP Range), replay reports, the pages.

Whoever may see a session may list and watch its recording (members of the
invited units, the hall operators, its speaker, administrators); only an
administrator deletes. Files are served only through
:func:`server.recording.files.safe_path`, from inside the recordings folder.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from datetime import date, datetime, time, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from server import keys
from server.attendance import replay
from server.auth.principal import Principal
from server.auth.roles import Role
from server.errors import AppError, Conflict, NotFound
from server.recording import files
from server.recording.retention import delete_media
from server.storage import library as library_store
from server.storage import recordings as catalogue
from server.storage import replay as replay_store
from server.storage import sessions as session_store
from server.storage.models import JobStatus, Recording, RecordingChapter, RecordingStatus, Session, User
from server.views.api import _iso, json_body
from server.views.auth import current, require
from server.views.forms import int_arg, path_id
from server.validation import digits
from server.views.render import render, translator

# The speeds the player offers; replay credit allows at most the highest (server/attendance/replay.py).
SPEEDS = (0.75, 1.0, 1.25, 1.5, 2.0)
assert max(SPEEDS) == replay.MAX_SPEED
# How often the player reports what it played.
REPORT_SECONDS = 5
PAGE_SIZE = 30


def _principal(request: web.Request) -> Principal:
    principal = current(request)
    assert principal is not None
    return principal


def chapter_title(_: Any, chapter: RecordingChapter) -> str:
    if chapter.kind == "hall":
        return str(_("{name} has the floor", name=chapter.name))
    return str(_("{name} presents", name=chapter.name))


# The recording's own file by its container: WebM (VP8) or Matroska (H.264).
ORIGINALS = {".webm": ("video/webm", 'video/webm; codecs="vp8, opus"', "WebM"),
             ".mkv": ("video/x-matroska", 'video/x-matroska; codecs="avc1.42E01E, opus"', "MKV")}


def original(recording: Recording) -> tuple[str, str, str, str]:
    """(suffix, content type, <source> type, label) of the recording's own file."""
    suffix = PurePosixPath(recording.file or "").suffix
    suffix = suffix if suffix in ORIGINALS else ".webm"
    return (suffix, *ORIGINALS[suffix])


def urls(recording: Recording) -> dict[str, str | None]:
    playable = recording.status.playable
    return {
        "download_url": f"/recordings/{recording.id}/file{original(recording)[0]}"
        if playable and recording.file else None,
        "mp4_url": f"/recordings/{recording.id}/file.mp4"
        if playable and recording.mp4_file and recording.mp4_status is JobStatus.DONE else None,
        "poster_url": f"/recordings/{recording.id}/poster.jpg" if playable and recording.poster_file else None,
    }


def recording_json(recording: Recording, chapters: list[RecordingChapter], parts: int, _: Any,
                   principal: Principal) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": recording.id, "session_id": recording.session_id, "status": recording.status.value,
        "duration_seconds": round(recording.duration_seconds, 3), "size_bytes": recording.size_bytes,
        "sha256": recording.sha256, "parts": parts,
        "started_at": _iso(recording.started_at), "ended_at": _iso(recording.ended_at),
        "chapters": [{"at_seconds": round(c.at_seconds, 3), "title": chapter_title(_, c), "kind": c.kind,
                      "name": c.name, "participant_key": c.participant_key} for c in chapters],
        **urls(recording),
        "mp4_status": recording.mp4_status.value, "mp4_progress": round(recording.mp4_progress, 1),
    }
    if principal.role is Role.ADMIN:
        body["mp4_error"] = recording.mp4_error
    return body


async def _visible_recording(db: Any, principal: Principal, recording_id: int) -> Recording:
    recording = await db.get(Recording, recording_id)
    if recording is None:
        raise NotFound(f"recording {recording_id} not found")
    await session_store.check_visible(db, principal, recording.session_id)
    return recording


async def _listing(db: Any, recordings: list[Recording], _: Any, principal: Principal) -> list[dict[str, Any]]:
    ids = [r.id for r in recordings]
    chapters = await catalogue.chapters(db, ids)
    counts = await catalogue.part_counts(db, ids)
    return [recording_json(r, chapters[r.id], counts.get(r.id, 0), _, principal) for r in recordings]


# API ------------------------------------------------------------------------------------------------


@require()
async def session_recordings(request: web.Request) -> web.StreamResponse:
    principal = _principal(request)
    session_id = path_id(request)
    async with request.app[keys.DATABASE].session() as db:
        await session_store.check_visible(db, principal, session_id)
        recordings = await catalogue.of_session(db, session_id)
        body = await _listing(db, recordings, translator(request), principal)
    return web.json_response({"recordings": body})


@require()
async def get_recording(request: web.Request) -> web.StreamResponse:
    principal = _principal(request)
    async with request.app[keys.DATABASE].session() as db:
        recording = await _visible_recording(db, principal, path_id(request))
        body = (await _listing(db, [recording], translator(request), principal))[0]
    return web.json_response(body)


async def _progress_body(request: web.Request) -> dict[str, Any]:
    data = await json_body(request)
    if not isinstance(data, dict) or "ranges" not in data:
        raise AppError('send {"ranges": [[from_seconds, to_seconds], ...]}', code="bad_ranges")
    unknown = set(data) - {"ranges", "position"}
    if unknown:
        raise AppError(f"unknown fields: {', '.join(sorted(unknown))}", code="bad_ranges")
    position = data.get("position")
    if position is not None and (isinstance(position, bool) or not isinstance(position, (int, float))
                                 or not math.isfinite(position) or position < 0):
        raise AppError("position is a number of seconds, 0 or more", code="bad_position")
    return data


@require()
async def report_progress(request: web.Request) -> web.StreamResponse:
    """The player's watched ranges: the member's replay credit grows by what is new and possible."""
    principal = _principal(request)
    recording_id = path_id(request)
    data = await _progress_body(request)
    database = request.app[keys.DATABASE]
    for attempt in (1, 2):
        try:
            async with database.session() as db:
                recording = await _visible_recording(db, principal, recording_id)
                if not recording.status.playable:
                    raise Conflict(f"the recording is {recording.status.value}: it cannot be replayed",
                                   code="not_playable")
                try:
                    ranges = replay.parse_ranges(data["ranges"], recording.duration_seconds)
                except replay.BadRanges as exc:
                    raise AppError(str(exc), code=f"bad_ranges.{exc.code}") from None
                result = await replay_store.report(db, recording, principal.user_id, ranges, data.get("position"))
                session_id = recording.session_id
            break
        except IntegrityError:
            if attempt == 2:  # two first reports at once: the second finds the first's row
                raise
    if result.added_seconds > 0:
        request.app[keys.RECORDS].soon(session_id)
    return web.json_response({
        "recording_id": recording_id, "credited_seconds": round(result.credited_seconds, 3),
        "added_seconds": round(result.added_seconds, 3), "refused_seconds": round(result.refused_seconds, 3),
        "position_seconds": result.position_seconds})


@require(Role.ADMIN)
async def delete_recording(request: web.Request) -> web.StreamResponse:
    reason = ""
    if request.can_read_body and request.content_type == "application/json":
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("reason", ""), str):
            raise AppError('send {"reason": "..."}', code="bad_reason")
        reason = body.get("reason", "")[:1000]
    await delete_media(request.app[keys.DATABASE], request.app[keys.SETTINGS].recordings_dir, path_id(request),
                       actor_id=_principal(request).user_id, reason=reason)
    return web.Response(status=204)


# media files ------------------------------------------------------------------------------------------


async def _media(request: web.Request, column: str, content_type: str | None) -> web.StreamResponse:
    """``content_type`` None: the recording's original file, typed by its container."""
    principal = _principal(request)
    async with request.app[keys.DATABASE].session() as db:
        recording = await _visible_recording(db, principal, path_id(request))
    relative = getattr(recording, column)
    if not recording.status.playable or not relative:
        raise NotFound("this file is not available")
    try:
        path = files.safe_file(request.app[keys.SETTINGS].recordings_dir, relative)
    except files.UnsafePath:
        raise NotFound("this file is not available") from None
    if path is None:
        raise NotFound("this file is not available")
    if content_type is None:
        content_type = original(recording)[1]
    # FileResponse answers Range requests: 206 with Content-Range, Accept-Ranges: bytes.
    response = web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "private, max-age=3600"})
    if request.query.get("download"):
        suffix = path.suffix
        response.headers["Content-Disposition"] = f'attachment; filename="bridgecast-{recording.session_id}{suffix}"'
    return response


@require()
async def media_original(request: web.Request) -> web.StreamResponse:
    """The recording's own file (``file.webm`` or ``file.mkv``: either name serves it, with its real type)."""
    return await _media(request, "file", None)


@require()
async def media_mp4(request: web.Request) -> web.StreamResponse:
    return await _media(request, "mp4_file", "video/mp4")


@require()
async def poster(request: web.Request) -> web.StreamResponse:
    return await _media(request, "poster_file", "image/jpeg")


# pages ------------------------------------------------------------------------------------------------


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


@require()
async def library_page(request: web.Request) -> web.StreamResponse:
    principal = _principal(request)
    zone = request.app[keys.SETTINGS].zone
    query = request.query
    wanted = library_store.Filter(
        text=query.get("q", "")[:200].strip(), speaker=query.get("speaker", "")[:200].strip(),
        since=_local(_day(query.get("from", "")), zone), until=_local(_day(query.get("to", "")), zone, end=True),
        unit_id=digits(query.get("unit", "")))
    page = int_arg(request, "page", 1, minimum=1)
    async with request.app[keys.DATABASE].session() as db:
        entries, total = await library_store.search(db, principal, wanted, offset=(page - 1) * PAGE_SIZE,
                                                    limit=PAGE_SIZE)
        units = await library_store.unit_choices(db)
    return render(request, "recordings.html", {
        "entries": entries, "total": total, "page": page, "pages": max(1, -(-total // PAGE_SIZE)),
        "units": units, "query": {k: query.get(k, "") for k in ("q", "speaker", "from", "to", "unit")},
        "form": {k: query.get(k, "") for k in ("q", "speaker", "from", "to", "unit")},
    })


def _local(day: date | None, zone: Any, *, end: bool = False) -> datetime | None:
    if day is None:
        return None
    try:
        return datetime.combine(day + timedelta(days=1) if end else day, time.min, tzinfo=zone)
    except OverflowError:  # 9999-12-31 as the last day: no bound
        return None


@require()
async def replay_page(request: web.Request) -> web.StreamResponse:
    principal = _principal(request)
    _ = translator(request)
    async with request.app[keys.DATABASE].session() as db:
        recording = await _visible_recording(db, principal, path_id(request))
        session = await db.get(Session, recording.session_id)
        assert session is not None
        speaker = await db.get(User, session.speaker_id) if session.speaker_id else None
        chapters = (await catalogue.chapters(db, [recording.id]))[recording.id]
        progress = (await replay_store.progress_of(db, principal.user_id, [recording.id])).get(recording.id)
        parts = (await catalogue.part_counts(db, [recording.id])).get(recording.id, 0)
    return render(request, "recording.html", {
        "recording": recording, "session": session, "speaker": speaker, "urls": urls(recording),
        "original": original(recording),
        "chapters": [(c.at_seconds, chapter_title(_, c)) for c in chapters], "parts": parts,
        "credited": progress.credited_seconds if progress else 0.0,
        "position": progress.position_seconds if progress else 0.0,
        "speeds": SPEEDS, "report_seconds": REPORT_SECONDS,
        "can_delete": principal.role is Role.ADMIN and recording.status is not RecordingStatus.RECORDING
        and recording.status is not RecordingStatus.DELETED,
        "done": request.query.get("done"),
    })


@require(Role.ADMIN)
async def delete_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    reason = form.get("reason", "")
    recording_id = path_id(request)
    await delete_media(request.app[keys.DATABASE], request.app[keys.SETTINGS].recordings_dir, recording_id,
                       actor_id=_principal(request).user_id, reason=reason[:1000] if isinstance(reason, str) else "")
    raise web.HTTPSeeOther(f"/recordings/{recording_id}?done=deleted")
