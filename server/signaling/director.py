"""The media director: a subscriber of one session's events that makes the media follow them.

The live domain decides (whose picture, who is muted, whose floor ended); the
director tells the media room, which knows nothing of floors or roles.
"""

from __future__ import annotations

from server.live import events as ev
from server.live.bus import dispatcher
from server.live.events import hall_key
from server.media.room import MediaRoom


class Director:
    def __init__(self, media: MediaRoom) -> None:
        self.media = media
        self.handle = dispatcher({
            ev.ProgramSourceChanged: self._show,
            ev.FloorEnded: self._floor_ended,
            ev.ParticipantMuted: self._muted,
            ev.ParticipantRemoved: self._removed,
            ev.SessionStarted: self._started,
        })

    async def _show(self, event: ev.ProgramSourceChanged) -> None:
        self.media.show(event.key)

    async def _floor_ended(self, event: ev.FloorEnded) -> None:
        # A hall without the floor sends nothing more: its camera's connection closes.
        await self.media.close_key(hall_key(event.point_id), "publish")

    async def _muted(self, event: ev.ParticipantMuted) -> None:
        self.media.mute(hall_key(event.point_id), event.muted)

    async def _removed(self, event: ev.ParticipantRemoved) -> None:
        # Every feed of theirs ends: the sockets' peer connections and WHIP/WHEP resources alike.
        await self.media.close_key(event.participant.key)

    async def _started(self, event: ev.SessionStarted) -> None:
        self.media.set_live(True)
