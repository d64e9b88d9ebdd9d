"""The archive's live side: a subscriber of every session that records its program while it is live.

* ``SessionStarted`` (or ``SessionResumed``, a server that restarted
  mid-session) starts a part: a :class:`~server.media.recorder.FeedRecorder`
  subscribed to the session's program feed, whether or not any hall watches;
* ``OnAirChanged`` adds a chapter at the part's media time;
* ``SessionEnded`` stops the part and finishes the recording at once: with
  one part the file that was written *is* the recording (no processing
  between the end and the first replay); parts of a restarted session are
  joined by a remux, a fraction of a second per hour of lecture.

A part cut by a crash is repaired when the server starts again
(:meth:`Archive.recover`): remuxed so that it knows its duration and has
cues, marked interrupted, and the session, if still live, continues into a
new part. The MP4 copy follows in the background (``server.recording.jobs``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import av
from sqlalchemy.ext.asyncio import AsyncSession

from server.live import events as ev
from server.live.bus import EventBus, Subscription, dispatcher
from server.live.lifecycle import SessionStatus
from server.media.codecs import VideoCodec
from server.media.feed import ProgramFeed
from server.media.recorder import FeedRecorder, PartResult
from server.recording import files
from server.storage import recordings as catalogue
from server.storage.db import Database, database_unavailable
from server.storage.models import JobStatus, Recording, RecordingStatus, Session, utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")
# The session's program feed and whether it is to be recorded, while its room is open here.
ProgramLookup = Callable[[int], tuple[ProgramFeed, bool] | None]
# Catalogue writes are retried this often while the database is away; the file is written meanwhile.
RETRY_SECONDS = 2.0
RETRY_ATTEMPTS = 150
JOINED = "recording"  # and the parts' suffix
STOP_TIMEOUT = 10.0


@dataclass(eq=False)
class _Active:
    session_id: int
    recorder: FeedRecorder
    file: str
    started_at: datetime
    part: catalogue.OpenedPart | None = None
    ended: bool = False
    on_air: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Archive:
    """Records every live session of this node into ``root`` and keeps the catalogue."""

    def __init__(self, database: Database, root: Path, *, node: str, program: ProgramLookup,
                 on_finished: Callable[[], None] = lambda: None) -> None:
        self.database = database
        self.root = root
        self.node = node
        self._program = program
        self._on_finished = on_finished
        self.active: dict[int, _Active] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.handle = dispatcher({
            ev.SessionStarted: self._started,
            ev.SessionResumed: self._started,
            ev.OnAirChanged: self._on_air,
            ev.SessionEnded: self._ended,
        })

    def subscribe(self, bus: EventBus) -> Subscription:
        return bus.subscribe(self.handle, name="archive")

    # the live side ------------------------------------------------------------------------------

    async def _started(self, event: ev.Event) -> None:
        session_id = event.session_id
        if session_id is None or session_id in self.active:
            return
        found = self._program(session_id)
        if found is None:
            log.warning("archive: session %s went live without a room here: not recorded", session_id)
            return
        feed, record = found
        if not record:
            log.info("archive: session %s is not to be recorded", session_id)
            return
        started = datetime.now(UTC)
        # The suffix follows the codec the recorder settles on (.webm for VP8, .mkv for H.264).
        relative = f"{session_id}/part-{started:%Y%m%dT%H%M%S%fZ}.webm"
        # A resumed session's parts share one codec, so that they join without decoding.
        codec = await asyncio.to_thread(_codec_of_parts, self.root / str(session_id))
        # Subscribed now, in the event's delivery: the keyframe the start asks for is this part's first.
        active = _Active(session_id, FeedRecorder(feed, self.root / relative, codec=codec), relative, started)
        self.active[session_id] = active
        active.task = self._spawn(self._record(active))
        if feed.on_air is not None:
            # On air since before the start (the speaker's preview): the part's first chapter.
            self._chapter(active, feed.on_air, f"start:{relative}")

    async def _on_air(self, event: ev.OnAirChanged) -> None:
        active = self.active.get(event.session_id) if event.session_id is not None else None
        if active is not None and event.key is not None:
            self._chapter(active, event.key, event.id)

    def _chapter(self, active: _Active, key: str, event_id: str) -> None:
        """``key``'s picture is on air from now: a chapter at this media time (once per change)."""
        if key == active.on_air:
            return
        active.on_air = key
        at = active.recorder.media_time()

        async def add() -> None:
            while active.part is None and not active.recorder.done:
                await asyncio.sleep(0.1)
            if active.part is not None:
                part = active.part
                await self._write(lambda db: catalogue.add_chapter(db, part.recording_id, part.offset_seconds + at,
                                                                   key, event_id))
        self._spawn(add())

    async def _ended(self, event: ev.SessionEnded) -> None:
        active = self.active.get(event.session_id) if event.session_id is not None else None
        if active is not None:
            active.ended = True
            self._spawn(active.recorder.stop())

    async def _record(self, active: _Active) -> None:
        opened = await active.recorder.opened()
        if opened is not None:
            active.file = opened.relative_to(self.root).as_posix()
        try:
            active.part = await self._write(lambda db: catalogue.open_part(
                db, active.session_id, self.node, active.file, active.started_at))
        except Exception:
            log.exception("archive: session %s: the part %s could not be catalogued", active.session_id, active.file)
        await active.recorder.finished()
        result = await active.recorder.stop()
        try:
            if active.part is not None:
                await self._close_part(active.part, result)
                await self.finish(active.part.recording_id, final=active.ended)
        finally:
            if self.active.get(active.session_id) is active:
                del self.active[active.session_id]

    async def _close_part(self, part: catalogue.OpenedPart, result: PartResult) -> None:
        size = result.path.stat().st_size if result.stats is not None and result.path.exists() else 0
        status = catalogue.PART_CLOSED
        if result.stats is not None and result.stats.error:
            log.error("archive: part %s ended with an error: %s", result.path, result.stats.error)
        if result.stats is not None and result.stats.dropped:
            log.warning("archive: part %s dropped %d packets (the disk was too slow)", result.path,
                        result.stats.dropped)

        async def close(db: AsyncSession) -> None:
            await catalogue.close_part(db, part.part_id, status=status, duration=result.duration_seconds,
                                       size=size)
            if result.started_at is not None:
                found = await db.get(catalogue.RecordingPart, part.part_id)
                if found is not None:
                    found.started_at = result.started_at
        await self._write(close)

    # finishing ------------------------------------------------------------------------------------

    async def finish(self, recording_id: int, *, final: bool) -> None:
        """Make the recording playable from its parts: at the end (``final``), or after a stop mid-session."""
        async with self.database.session() as db:
            parts = [p for p in await catalogue.parts(db, recording_id) if p.size_bytes > 0]
        status = RecordingStatus.READY
        if not parts:
            status = RecordingStatus.FAILED
            relative, info_duration = "", 0.0
        elif len(parts) == 1:
            relative, info_duration = parts[0].file, parts[0].duration_seconds
            if parts[0].status != catalogue.PART_CLOSED:
                status = RecordingStatus.INTERRUPTED
        else:
            relative = f"{Path(parts[0].file).parent.as_posix()}/{JOINED}{Path(parts[0].file).suffix}"
            sources = [files.safe_path(self.root, p.file) for p in parts]
            info = await asyncio.to_thread(files.join, sources, files.safe_path(self.root, relative))
            info_duration = info.duration_seconds
            status = RecordingStatus.INTERRUPTED
        if not final and status is not RecordingStatus.FAILED:
            status = RecordingStatus.INTERRUPTED
        size, digest = 0, ""
        if relative:
            path = files.safe_path(self.root, relative)
            size = path.stat().st_size
            digest = await asyncio.to_thread(files.sha256_of, path)

        async def update(db: AsyncSession) -> None:
            recording = await db.get(Recording, recording_id)
            if recording is None or recording.status is RecordingStatus.DELETED:
                return
            recording.status, recording.file, recording.size_bytes, recording.sha256 = status, relative, size, digest
            recording.duration_seconds = round(info_duration, 3)
            if final:
                recording.ended_at = utcnow()
                recording.mp4_status = JobStatus.PENDING if relative else JobStatus.WAITING
        await self._write(update)
        log.info("archive: recording %s %s: %.1f s, %d bytes", recording_id, status.value, info_duration, size)
        if final:
            self._on_finished()

    async def recover(self) -> None:
        """At start-up: repair the parts a crash left open, and make their recordings playable."""
        async with self.database.session() as db:
            open_parts = await catalogue.open_parts_of(db, self.node)
            unfinished = await catalogue.unfinished(db, self.node)
        for part in open_parts:
            path = files.safe_path(self.root, part.file)
            try:
                info = await asyncio.to_thread(files.repair, path)
                duration, size = info.duration_seconds, path.stat().st_size
            except (files.EmptyRecording, FileNotFoundError):
                duration, size = 0.0, 0
            except Exception:
                log.exception("archive: part %s could not be repaired", part.file)
                duration, size = 0.0, 0
            async with self.database.session() as db:
                await catalogue.close_part(db, part.id, status=catalogue.PART_INTERRUPTED, duration=duration,
                                           size=size)
            log.warning("archive: part %s was cut by a stop without a close: repaired, %.1f s kept", part.file,
                        duration)
        for recording in unfinished:
            async with self.database.session() as db:
                session = await db.get(Session, recording.session_id)
            ended = session is None or session.status is not SessionStatus.LIVE
            await self.finish(recording.id, final=ended)

    # shutting down --------------------------------------------------------------------------------

    async def stop(self) -> None:
        """The server stops: every part is closed as it is (the session, if live, resumes into a new one).

        The files are closed whatever the database does; catalogue writes still under way get
        :data:`STOP_TIMEOUT` (a part left ``recording`` is repaired at the next start).
        """
        for active in list(self.active.values()):
            await active.recorder.stop()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=STOP_TIMEOUT)

    # helpers --------------------------------------------------------------------------------------

    def _spawn(self, awaitable: Awaitable[T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _write(self, change: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``change`` in a transaction, retried while the database is away (the file goes on)."""
        for attempt in range(RETRY_ATTEMPTS):
            try:
                async with self.database.session() as db:
                    return await change(db)
            except Exception as exc:
                if not database_unavailable(exc) or attempt == RETRY_ATTEMPTS - 1:
                    raise
                log.warning("archive: the catalogue could not be written; retrying", exc_info=attempt == 0)
                await asyncio.sleep(RETRY_SECONDS)
        raise AssertionError("unreachable")


def _codec_of_parts(folder: Path) -> VideoCodec | None:
    """The video codec of a session's earlier parts, None if none of them holds a picture.

    A part that began without a picture (the speaker not yet publishing) is WebM with an empty
    video stream: only a part with a video packet says which codec the recording is in.
    """
    for path in sorted(folder.glob("part-*")):
        if path.suffix not in files.FORMATS:
            continue
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    continue
                name = container.streams.video[0].codec_context.name
                if name in ("vp8", "h264") and any(packet.size for packet in container.demux(video=0)):
                    return name  # type: ignore[return-value]
        except (av.error.FFmpegError, OSError):
            continue
    return None
