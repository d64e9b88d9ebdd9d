"""A hall's connection test before the session: its camera and microphone through the hub and back.

The hall's page offers a peer connection that sends its camera and
microphone (``POST /api/v1/sessions/{id}/precheck``, SDP as in WHIP); the
media room sends both straight back (the picture as it came, the sound
mixed for nobody else), and measures on its side what a page could not
fake: the round trip from the hall's receiver reports, the bitrate the
hall sends, the frames sent back, the microphone's packets. The page ends
the test (``DELETE``) after a few seconds, or it ends by itself; the result
is a :class:`~server.live.events.PrecheckDone` event: kept, and on the
hosts' board as the point's connection test. A test is not an endpoint of
the roster: it is not attendance, and it does not show as receiving.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.auth.principal import Principal
from server.live.events import LiveRole, ParticipantRef
from server.live.permissions import PermissionDenied
from server.live.roles import live_role
from server.media.echo import EchoResult
from server.media.offers import Answer

if TYPE_CHECKING:
    from server.signaling.room import LiveRoom


async def start_precheck(room: LiveRoom, principal: Principal, sdp: str) -> Answer:
    seat = live_role(principal, room.session.info)
    if seat.role is not LiveRole.HALL or seat.point_id is None:
        raise PermissionDenied(seat.role.value, "report_quality", "the connection test is a hall's, before or "
                                                                  "during its session")
    actor = ParticipantRef(seat.key, LiveRole.HALL, principal.user_id, seat.point_id,
                           room.session.info.invited.get(seat.point_id, ""))

    def done(result: EchoResult) -> None:
        room.spawn(room.locked_commit(lambda: room.session.precheck_done(
            actor, user_id=principal.user_id, ok=result.ok, rtt_ms=result.rtt_ms, bitrate_kbps=result.bitrate_kbps,
            video_frames=result.video_frames, audio=result.audio_packets >= 50, detail=result.detail)))

    # Counted like any peer connection until it ends (15 s at most): a loop of tests stops at the quota.
    ticket = room.endpoint_ticket(principal)
    return await room.media.echo(seat.key, sdp, on_done=done, on_close=ticket.release)
