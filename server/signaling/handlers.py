"""What each client message does: one handler per type, one table (docs/protocol.md).

A handler validates nothing itself (``server.signaling.messages`` did) and
decides nothing itself (``server.live.session`` does): it calls the domain
with the sender as actor, and the room publishes the events that result.
Every handler but ``offer`` and ``candidate`` runs under the room's lock;
those two negotiate media (ICE gathering can take a while) outside it and
take the lock only to record the outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from server.live.permissions import PermissionDenied
from server.live.quality import PageReport
from server.signaling import outgoing
from server.signaling.connections import Member
from server.signaling.messages import ProtocolError

if TYPE_CHECKING:
    from server.signaling.room import LiveRoom

Handler = Callable[["LiveRoom", Member, dict[str, Any]], Awaitable[None]]


async def offer(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    pc, actor = values["pc"], member.participant
    if pc == "publish":
        room.session.check_publish(actor)
        if room.resources.publishing(actor.key):
            # OBS (or another WHIP encoder) is this speaker's camera: the console's must not replace it.
            raise ProtocolError("studio_feed", "a studio encoder publishes this feed over WHIP; "
                                               "the console's camera is used when it stops")
    old = member.endpoints.pop(pc, None)
    if old:
        await room.media.close_endpoint(old)
    member.relayed.pop(pc, None)
    if pc == "view" and not values["here"] and room.directions is not None:
        direction = await room.directions.direct(room, member.principal)
        if direction is not None:
            # The page offers this SDP at the relay; its socket (presence, the floor) stays here.
            member.relayed[pc] = direction.node
            await member.connection.send(outgoing.redirect(pc, direction.url))
            if old:
                async with room.lock:
                    await room.commit(room.media_state(actor.key))
            return
    ticket = room.endpoint_ticket(member.principal)
    try:
        if pc == "publish":
            answer = await room.media.publish(actor.key, values["sdp"], on_close=ticket.release)
        else:
            answer = await room.media.view(actor.key, values["sdp"], on_close=ticket.release)
    except BaseException:
        ticket.release()
        raise
    async with room.lock:
        if pc == "publish":
            try:
                # Negotiating took time outside the lock: the floor may have moved meanwhile.
                room.session.check_publish(actor)
            except PermissionDenied:
                await room.media.close_endpoint(answer.endpoint_id)
                raise PermissionDenied(actor.role.value, "publish", "the floor was taken back meanwhile") from None
        if room.members.get(member.connection.id) is not member:
            # The socket left (or was removed) while the offer was negotiated.
            await room.media.close_endpoint(answer.endpoint_id)
            return
        member.endpoints[pc] = answer.endpoint_id
        room.owners[answer.endpoint_id] = member
        await member.connection.send(outgoing.answer(pc, answer.sdp))
        await room.commit(room.media_state(actor.key))


async def candidate(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    endpoint_id = member.endpoints.get(values["pc"])
    if endpoint_id is None:
        raise ProtocolError("no_peer_connection", "send an offer for this pc first")
    await room.media.add_candidate(endpoint_id, values.get("candidate") or "", values.get("sdpMid"),
                                   values.get("sdpMLineIndex"))


async def close_pc(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    endpoint_id = member.endpoints.pop(values["pc"], None)
    if endpoint_id:
        await room.media.close_endpoint(endpoint_id)
        await room.commit(room.media_state(member.key))


async def raise_hand(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    await room.commit(room.session.raise_hand(member.participant))


async def lower_hand(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    await room.commit(room.session.lower_hand(member.participant, values.get("point_id")))


async def grant_floor(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    await room.commit(room.session.grant_floor(member.participant, values["point_id"], values.get("limit_seconds")))


async def revoke_floor(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    await room.commit(room.session.revoke_floor(member.participant))


async def show(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    await room.commit(room.session.show(member.participant, values["source"]))


async def mute(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    await room.commit(room.session.mute(member.participant, values["point_id"], values["muted"]))


async def remove(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    _, events = room.session.remove(member.participant, values["key"])
    await room.commit(events)


async def question(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    asked, events = room.session.ask(member.participant, member.principal.full_name, values["text"])
    await room.commit(events)
    await member.connection.send({"type": "question_received", "id": asked.id})


async def stats(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    level = values.get("audio_level")
    room.session.report_page(member.participant, PageReport(
        frames_decoded=values["frames_decoded"], freezes=values["freezes"], fps=values.get("fps"),
        audio_level=None if level is None else level / 100))


async def start(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    await room.do_start(member.participant)


async def end(room: LiveRoom, member: Member, values: dict[str, Any]) -> None:
    await room.do_end(member.participant)


HANDLERS: dict[str, Handler] = {
    "offer": offer,
    "candidate": candidate,
    "close_pc": close_pc,
    "raise_hand": raise_hand,
    "lower_hand": lower_hand,
    "grant_floor": grant_floor,
    "revoke_floor": revoke_floor,
    "show": show,
    "mute": mute,
    "remove": remove,
    "question": question,
    "stats": stats,
    "start": start,
    "end": end,
}
# Negotiating media can take a while (ICE gathering): these run outside the
# room's lock, which guards the domain state, so nobody waits behind them.
UNLOCKED = frozenset({"offer", "candidate"})
