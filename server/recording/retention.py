"""Deleting a recording's media: by an administrator (audited), or by the retention setting.

Only the files go. The recording's row, its chapters, the members' replay
credit and the attendance records that count it stay: a member's yearly
evaluation does not change because a video was removed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from server.errors import Conflict, NotFound
from server.recording import files
from server.storage import recordings as catalogue
from server.storage.db import Database
from server.storage.models import JobStatus, Recording, RecordingStatus, utcnow

log = logging.getLogger(__name__)

SWEEP_SECONDS = 3600.0


async def delete_media(database: Database, root: Path, recording_id: int, *, actor_id: int | None,
                       reason: str) -> Recording:
    """Remove every file of the recording; its row becomes ``deleted``. Refused while it is being written."""
    async with database.session() as db:
        recording = await db.get(Recording, recording_id)
        if recording is None:
            raise NotFound(f"recording {recording_id} not found")
        if recording.status is RecordingStatus.RECORDING:
            raise Conflict("the recording is being written: end the session first", code="recording_in_progress")
        if recording.status is RecordingStatus.DELETED:
            return recording
        names = {recording.file, recording.mp4_file, recording.poster_file}
        names |= {part.file for part in await catalogue.parts(db, recording_id)}
        recording.status = RecordingStatus.DELETED
        recording.deleted_at = utcnow()
        if recording.mp4_status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.WAITING):
            recording.mp4_status = JobStatus.FAILED
            recording.mp4_error = "deleted"
        recording.file = recording.mp4_file = recording.poster_file = ""
        await catalogue.audit(db, recording_id, actor_id, "delete" if actor_id is not None else "retention", reason)
    for name in sorted(n for n in names if n):
        try:
            path = await asyncio.to_thread(files.safe_file, root, name)
        except files.UnsafePath:
            log.error("recording %s: refusing to delete %r, outside the recordings folder", recording_id, name[:300])
            continue
        if path is None:
            continue  # gone already, or not a file (a folder named by a tampered row): left alone
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:
            log.error("recording %s: could not delete %s: %s", recording_id, path, exc.strerror)
    log.info("recording %s: media deleted (%s)", recording_id, reason or "no reason given")
    return recording


class Retention:
    """Deletes the media of recordings that ended more than ``days`` ago, every hour (0 days: never)."""

    def __init__(self, database: Database, root: Path, days: int) -> None:
        self.database = database
        self.root = root
        self.days = days
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.days > 0:
            self._task = asyncio.create_task(self._loop(), name="recording-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5.0)

    async def sweep(self) -> int:
        """Delete what is due now; how many recordings lost their media."""
        if self.days <= 0:
            return 0
        cutoff = utcnow() - timedelta(days=self.days)
        async with self.database.session() as db:
            due = list(await db.scalars(select(Recording.id).where(
                Recording.ended_at < cutoff,
                Recording.status.in_([RecordingStatus.READY, RecordingStatus.INTERRUPTED, RecordingStatus.FAILED]))))
        for recording_id in due:
            await delete_media(self.database, self.root, recording_id, actor_id=None,
                               reason=f"retention: older than {self.days} days")
        return len(due)

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("retention: the sweep failed; trying again in an hour")
            await asyncio.sleep(SWEEP_SECONDS)
