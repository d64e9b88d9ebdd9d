"""WHIP and WHEP (RFC 9725): one HTTP resource is one endpoint of a participant, with one peer connection.

A studio encoder publishes the speaker's feed without a websocket (WHIP); a
player, or a hall's operator on a bare player, views the program (WHEP). In
the roster each resource is an endpoint like a socket, so a hall watching by
WHEP shows on the roll call and a member's player counts toward attendance.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.auth.principal import Principal
from server.live.errors import LiveError
from server.live.events import LiveRole
from server.live.permissions import PermissionDenied
from server.live.roles import live_role
from server.media.room import Answer

if TYPE_CHECKING:
    from server.signaling.room import LiveRoom


@dataclass(frozen=True)
class Resource:
    endpoint_id: str  # the media endpoint (the resource id in the URL)
    connection_id: str  # the roster endpoint
    key: str
    principal: Principal  # who opened it, with the token it came with
    # The relay whose media serves it (issue 14); None: this server's own media room.
    node: str | None = None
    # A relay's viewer: its quota ticket (the media room holds a local one's), and whether the
    # program reaches it, as the relay reported.
    release: Callable[[], None] | None = field(default=None, compare=False)
    receiving: bool = False

    @property
    def user_id(self) -> int:
        return self.principal.user_id


class Resources:
    """The open WHIP/WHEP resources of a room."""

    def __init__(self) -> None:
        self._by_endpoint: dict[str, Resource] = {}

    def __len__(self) -> int:
        return len(self._by_endpoint)

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._by_endpoint

    def add(self, resource: Resource) -> None:
        self._by_endpoint[resource.endpoint_id] = resource

    def get(self, endpoint_id: str) -> Resource | None:
        return self._by_endpoint.get(endpoint_id)

    def pop(self, endpoint_id: str) -> Resource | None:
        return self._by_endpoint.pop(endpoint_id, None)

    def publishing(self, key: str) -> bool:
        """A WHIP resource (a studio encoder) publishes ``key``'s feed."""
        return any(r.key == key and r.connection_id.startswith("whip:") for r in self._by_endpoint.values())

    def all(self) -> list[Resource]:
        return list(self._by_endpoint.values())

    def served_by(self, node: str) -> list[Resource]:
        return [r for r in self._by_endpoint.values() if r.node == node]

    def remote_receiving(self, key: str) -> bool:
        """A relay reported that the program reaches one of ``key``'s viewers there."""
        return any(r.key == key and r.node is not None and r.receiving for r in self._by_endpoint.values())


async def open_resource(room: LiveRoom, principal: Principal, pc: str, sdp: str) -> Answer:
    """Publish (WHIP: the speaker's feed) or view (WHEP); the answer's endpoint id names the resource."""
    kind = "whip" if pc == "publish" else "whep"
    connection_id = f"{kind}:{uuid.uuid4().hex}"
    seat = live_role(principal, room.session.info)
    if pc == "publish" and seat.role is not LiveRole.HOST:
        raise PermissionDenied(seat.role.value, "publish", "WHIP ingest takes the session speaker's token")
    # Counted first, before anything is recorded or built: a loop of offers stops here.
    ticket = room.endpoint_ticket(principal)
    try:
        async with room.lock:
            # Into the roster first: a refusal (removed, role_conflict) leaves nothing half-made.
            participant, events = room.session.join(connection_id, kind, principal)
            delivery = await room.commit(events)
    except BaseException:
        ticket.release()
        raise
    try:
        # On record (attendance) before the resource is answered; inside the try, so that a
        # failure or a cancellation here takes the join back.
        if not await delivery.settled():
            raise LiveError("try_again", "the join could not be recorded: try again")
        if pc == "publish":
            answer = await room.media.publish(participant.key, sdp, on_close=ticket.release)
        else:
            answer = await room.media.view(participant.key, sdp, on_close=ticket.release)
    except BaseException:
        ticket.release()
        async with room.lock:
            await room.commit(room.session.leave(connection_id, dropped=False))
        raise
    async with room.lock:
        room.resources.add(Resource(answer.endpoint_id, connection_id, participant.key, principal))
        await room.commit(room.media_state(participant.key))
    return answer


async def open_relayed_view(room: LiveRoom, principal: Principal, node: str, endpoint_id: str) -> Resource:
    """A viewer whose media a relay serves (WHEP there): in the roster and on record here, like a local one.

    The relay names the endpoint; asked again with the same name (it resent a
    request whose answer it lost) the answer is the same resource, joined once.
    """
    existing = room.resources.get(endpoint_id)
    if existing is not None:
        if existing.node != node or existing.user_id != principal.user_id:
            raise LiveError("endpoint_taken", "another viewer holds this endpoint id")
        return existing
    connection_id = f"whep:{endpoint_id}"
    ticket = room.endpoint_ticket(principal)
    try:
        async with room.lock:
            participant, events = room.session.join(connection_id, "whep", principal)
            delivery = await room.commit(events)
    except BaseException:
        ticket.release()
        raise
    if not await delivery.settled():
        ticket.release()
        async with room.lock:
            await room.commit(room.session.leave(connection_id, dropped=False))
        raise LiveError("try_again", "the join could not be recorded: try again")
    resource = Resource(endpoint_id, connection_id, participant.key, principal, node=node, release=ticket.release)
    room.resources.add(resource)
    return resource


async def relayed_receiving(room: LiveRoom, endpoint_id: str) -> bool:
    """The relay says the program reaches this viewer now (the roll call shows it)."""
    resource = room.resources.get(endpoint_id)
    if resource is None or resource.node is None:
        return False
    if not resource.receiving:
        room.resources.add(dataclasses.replace(resource, receiving=True))
        async with room.lock:
            await room.commit(room.media_state(resource.key))
    return True


async def close_resource(room: LiveRoom, endpoint_id: str, *, dropped: bool = False) -> bool:
    """End a resource: its DELETE (``dropped`` False), or its peer connection (or its relay) failed (True)."""
    resource = room.resources.pop(endpoint_id)
    if resource is None:
        return False
    if resource.release is not None:
        resource.release()
    async with room.lock:
        await room.media.close_endpoint(endpoint_id)
        await room.commit(room.session.leave(resource.connection_id, dropped=dropped))
        if resource.node is not None:
            await room.commit(room.media_state(resource.key))
    room.check_idle()
    return True
