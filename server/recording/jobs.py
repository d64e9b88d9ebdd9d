"""The MP4 job: each finished recording gets an MP4 copy and a poster, one at a time, at low priority.

The work runs in a child process (``python -m server.recording.transcode``)
under ``nice``: it never competes with the live path for the event loop or
the interpreter, and the scheduler gives a live session's forwarding the
cores first. The child prints its progress; the job keeps it in the
recording's row, so the library shows a percentage as it runs. A failed job
is tried again after a pause and, when every attempt has failed, left
``failed`` with its error: reported, never silently lost. A job that was
running when the server stopped is simply pending again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import or_, select, update

from server.config import RecordingSettings
from server.recording import files
from server.storage.db import Database
from server.storage.models import JobStatus, Recording, RecordingStatus, utcnow

log = logging.getLogger(__name__)

MP4_NAME = "recording.mp4"
POSTER_NAME = "poster.jpg"
# Progress is written to the row at most this often.
PROGRESS_EVERY = 1.0
IDLE_CHECK_SECONDS = 30.0
ERROR_TAIL = 2000
# A database that does not answer (a cut network) must not hold the job loop, nor the server's stop.
QUERY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class Mp4Jobs:
    """Runs the pending MP4 jobs of ``root``'s recordings, oldest first, one at a time."""

    def __init__(self, database: Database, root: Path, settings: RecordingSettings) -> None:
        self.database = database
        self.root = root
        self.settings = settings
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self.completed = 0
        self.failed = 0

    def wake(self) -> None:
        """A recording finished: look for work now rather than at the next check."""
        self._wake.set()

    async def start(self) -> None:
        async with self.database.session() as db:
            # Running when the server stopped: start again.
            await db.execute(update(Recording).where(Recording.mp4_status == JobStatus.RUNNING)
                             .values(mp4_status=JobStatus.PENDING, mp4_progress=0.0))
        if self.settings.mp4:
            self._task = asyncio.create_task(self._loop(), name="mp4-jobs")

    async def stop(self) -> None:
        # A flag as well as the cancel: Python 3.11's wait_for can swallow a cancellation that
        # arrives as the query it waits for completes, and the loop would then idle for
        # IDLE_CHECK_SECONDS while stop() waited STOP_TIMEOUT.
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_TIMEOUT)
        if self._process is not None and self._process.returncode is None:
            self._process.kill()  # ours, by its handle; the job is pending again on the next start
            await self._process.wait()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                recording_id = await asyncio.wait_for(self._next(), QUERY_TIMEOUT)
                if recording_id is not None:
                    await self.run(recording_id)
                    continue
            except asyncio.CancelledError:
                raise
            except (TimeoutError, asyncio.TimeoutError):
                log.warning("mp4 jobs: the database did not answer; trying again later")
            except Exception:
                log.exception("mp4 jobs: a job could not be run; trying again later")
            if self._stopping:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), IDLE_CHECK_SECONDS)
            except (TimeoutError, asyncio.TimeoutError):
                pass

    async def _next(self) -> int | None:
        now = utcnow()
        async with self.database.session() as db:
            return await db.scalar(
                select(Recording.id)
                .where(Recording.mp4_status == JobStatus.PENDING,
                       Recording.status.in_([RecordingStatus.READY, RecordingStatus.INTERRUPTED]),
                       or_(Recording.mp4_not_before.is_(None), Recording.mp4_not_before <= now))
                .order_by(Recording.ended_at, Recording.id).limit(1))

    async def run(self, recording_id: int) -> bool:
        """Make one recording's MP4 and poster; True when they were made."""
        async with self.database.session() as db:
            recording = await db.get(Recording, recording_id)
            if recording is None or not recording.file:
                return False
            recording.mp4_status, recording.mp4_progress = JobStatus.RUNNING, 0.0
            recording.mp4_attempts += 1
            source = recording.file
            folder = Path(source).parent.as_posix()
        mp4, poster = f"{folder}/{MP4_NAME}", f"{folder}/{POSTER_NAME}"
        started = time.monotonic()
        try:
            error = await self._transcode(recording_id, source, mp4, poster)
        except OSError as exc:
            error = f"the job could not be started: {exc}"
        async with self.database.session() as db:
            recording = await db.get(Recording, recording_id)
            if recording is None:
                return False
            if recording.status is RecordingStatus.DELETED:
                error = error or "deleted meanwhile"
            if not error:
                recording.mp4_status, recording.mp4_progress, recording.mp4_error = JobStatus.DONE, 100.0, ""
                recording.mp4_file = mp4
                recording.poster_file = poster if files.safe_path(self.root, poster).exists() else ""
                self.completed += 1
                log.info("mp4 jobs: recording %s done in %.1f s (%.1f s of media)", recording_id,
                         time.monotonic() - started, recording.duration_seconds)
                return True
            recording.mp4_error = error[-ERROR_TAIL:]
            if recording.mp4_attempts >= self.settings.mp4_attempts or recording.status is RecordingStatus.DELETED:
                recording.mp4_status = JobStatus.FAILED
                self.failed += 1
                log.error("mp4 jobs: recording %s failed after %d attempt(s): %s", recording_id,
                          recording.mp4_attempts, error)
            else:
                recording.mp4_status = JobStatus.PENDING
                recording.mp4_not_before = utcnow() + timedelta(
                    seconds=self.settings.mp4_retry_seconds * recording.mp4_attempts)
                log.warning("mp4 jobs: recording %s attempt %d failed, retrying: %s", recording_id,
                            recording.mp4_attempts, error)
            return False

    async def _transcode(self, recording_id: int, source: str, mp4: str, poster: str) -> str:
        """Run the child process; the error text, empty on success."""
        nice = self.settings.mp4_nice
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.recording.transcode", str(files.safe_path(self.root, source)),
            str(files.safe_path(self.root, mp4)), str(files.safe_path(self.root, poster)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=(lambda: os.nice(nice)) if nice else None)
        self._process = process
        assert process.stdout is not None and process.stderr is not None
        errors = asyncio.create_task(process.stderr.read())
        last_write = 0.0
        while line := await process.stdout.readline():
            word, _, value = line.decode("ascii", "replace").strip().partition(" ")
            if word != "progress" or time.monotonic() - last_write < PROGRESS_EVERY:
                continue
            try:
                percent = min(99.9, max(0.0, float(value)))
            except ValueError:
                continue
            last_write = time.monotonic()
            async with self.database.session() as db:
                await db.execute(update(Recording).where(Recording.id == recording_id)
                                 .values(mp4_progress=percent))
        code = await process.wait()
        self._process = None
        stderr = (await errors).decode("utf-8", "replace").strip()
        if code == 0:
            return ""
        return stderr or f"the transcoder exited with status {code}"
