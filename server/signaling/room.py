"""One live session on this server: its connections, the domain rules and the media, tied together.

The domain (``server.live``: roster, floor, permissions, lifecycle) decides;
the media room (``server.media``) carries the pictures and sound; this module
turns client messages into domain calls and domain events into messages and
media actions.  One dispatch table, one envelope (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from server.live.events import (
    Event,
    FloorGranted,
    FloorRevoked,
    LiveRole,
    ParticipantLeft,
)
from server.live.floor import Floor, FloorError
from server.errors import AppError
from server.live.lifecycle import SessionAction, SessionStatus
from server.live.permissions import Action, PermissionDenied, allowed, may_publish, require, require_publish
from server.live.store import LiveStore, SessionInfo
from server.live.roster import Roster, RosterError, participant_key
from server.media.room import Endpoint, MediaError, MediaRoom
from server.signaling import messages
from server.signaling.messages import ProtocolError

log = logging.getLogger(__name__)

# Per connection: a burst of this many messages, refilled at RATE per second.
BURST = 40
RATE = 20.0
MAX_QUESTIONS = 500
HOST_REFRESH = 0.25
# Negotiating media can take a while (ICE gathering): these run outside the
# room's lock, which guards the domain state, so nobody waits behind them.
UNLOCKED = frozenset({"offer", "candidate"})
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_REMOVED = 4003
CLOSE_SIGNED_OUT = 4001
# A room that is not live and has nobody left closes after this long.
IDLE_SECONDS = 60.0


class Connection(Protocol):
    """A client's websocket as the room sees it (the view layer adapts aiohttp's).

    ``send`` must not wait on the client: a slow client's messages queue up
    (boundedly) behind it, never in front of everyone else's.
    """

    id: str

    async def send(self, message: dict[str, Any] | str) -> None:
        """Send a message (a dict, or one already serialized to JSON text)."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True)
class Identity:
    """The authenticated user behind a connection."""

    user_id: int
    full_name: str
    account_role: str  # admin | speaker | operator | member
    bridge_point_id: int | None


@dataclass
class Member:
    """One joined connection."""

    connection: Connection
    identity: Identity
    role: LiveRole
    key: str
    point_id: int | None
    endpoints: dict[str, str] = field(default_factory=dict)  # pc name -> media endpoint id
    tokens: float = BURST
    refilled: float = field(default_factory=time.monotonic)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LiveRoom:
    """The live state of one session on this server."""

    def __init__(self, info: SessionInfo, media: MediaRoom, store: LiveStore,
                 on_closed: Callable[[LiveRoom], Awaitable[None]] | None = None) -> None:
        self.info = info
        self.media = media
        self.store = store
        self.roster = Roster()
        self.floor = Floor()
        self.members: dict[str, Member] = {}  # connection id -> member
        self.program_source = "floor"  # "floor": the holder if any; "speaker": always the host
        self.host_key: str | None = None  # the host whose camera is the speaker source
        self.muted: set[int] = set()
        self.banned: set[str] = set()
        self.questions: deque[dict[str, Any]] = deque(maxlen=MAX_QUESTIONS)
        self._grant_ids: dict[int, int] = {}
        # WHIP/WHEP resources: media endpoint id -> (roster connection id, participant key, user id).
        self.resources: dict[str, tuple[str, str, int]] = {}
        self._on_closed = on_closed
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        # What was last told, so unchanged state is not sent again; the hosts'
        # board is refreshed at most every HOST_REFRESH seconds.
        self._last_floor: str | None = None
        # Tasks started from callbacks, kept so they are not collected mid-run.
        self._tasks: set[asyncio.Future[Any]] = set()
        self._idle: asyncio.TimerHandle | None = None
        self._host_refresh: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        media.set_live(info.status is SessionStatus.LIVE)
        media.video.on_switch = self._on_air_changed
        self._ticker = asyncio.create_task(self._tick(), name=f"live-room-{info.id}")
        self._handlers: dict[str, Callable[[Member, dict[str, Any]], Awaitable[None]]] = {
            "offer": self._offer,
            "candidate": self._candidate,
            "close_pc": self._close_pc,
            "raise_hand": self._raise_hand,
            "lower_hand": self._lower_hand,
            "grant_floor": self._grant_floor,
            "revoke_floor": self._revoke_floor,
            "show": self._show,
            "mute": self._mute,
            "remove": self._remove,
            "question": self._question,
            "start": self._start,
            "end": self._end,
        }

    # connections -----------------------------------------------------------------

    async def handle(self, connection: Connection, identity: Identity, raw: str) -> None:
        """Handle one text frame: parse, check, dispatch; answer errors, never raise."""
        kind = "?"
        try:
            kind, values = messages.parse(raw)
            member = self.members.get(connection.id)
            if member is not None and not self._allow_rate(member):
                raise ProtocolError("rate_limited", "too many messages: slow down")
            if kind == "ping":
                await connection.send({"type": "pong", "t": values.get("t")})
            elif kind == "join":
                await self._join(connection, identity, values)
            elif kind == "leave":
                await self.disconnect(connection)
                await connection.close(CLOSE_NORMAL, "left")
            elif member is None:
                raise ProtocolError("not_joined", "send join first")
            elif kind in UNLOCKED:
                await self._handlers[kind](member, values)
            else:
                async with self._lock:
                    await self._handlers[kind](member, values)
        except ProtocolError as exc:
            await connection.send(messages.error(exc.code, exc.message, request=kind, details=exc.details))
        except PermissionDenied as exc:
            member = self.members.get(connection.id)
            log.warning("session %s: refused %s from user %s (%s)", self.info.id, kind, identity.user_id,
                        member.role.value if member else "not joined")
            await connection.send(messages.error(exc.code, exc.message, request=kind))
        except (FloorError, RosterError, MediaError) as exc:
            await connection.send(messages.error(exc.code, exc.message, request=kind))
        except Exception:
            # A bug must not end the connection's loop: log it, tell the client, carry on.
            log.exception("session %s: %s from user %s failed", self.info.id, kind, identity.user_id)
            await connection.send(messages.error("internal_error", "the server could not handle this message",
                                                 request=kind))

    def _allow_rate(self, member: Member) -> bool:
        now = time.monotonic()
        member.tokens = min(BURST, member.tokens + (now - member.refilled) * RATE)
        member.refilled = now
        if member.tokens < 1:
            return False
        member.tokens -= 1
        return True

    async def _join(self, connection: Connection, identity: Identity, values: dict[str, Any]) -> None:
        if connection.id in self.members:
            raise ProtocolError("already_joined", "this connection has joined already")
        if self.info.status in (SessionStatus.ENDED, SessionStatus.CANCELLED):
            raise ProtocolError("session_closed", f"the session is {self.info.status.value}")
        role, point_id = self._live_role(identity, values.get("as"))
        key = participant_key(role, identity.user_id, point_id)
        if key in self.banned:
            raise ProtocolError("removed", "you were removed from this session")
        name = self.info.invited.get(point_id, identity.full_name) if point_id else identity.full_name
        async with self._lock:
            _, events = self.roster.join(connection_id=connection.id, role=role, user_id=identity.user_id,
                                         display_name=name, point_id=point_id, now=_utcnow())
            member = Member(connection, identity, role, key, point_id)
            self.members[connection.id] = member
            await connection.send(self._welcome(member))
            if role is LiveRole.HOST:
                # A host who reconnects (or reloads the page) still sees the questions asked so far.
                for question in self.questions:
                    await connection.send(question)
            await self._apply(events)

    def _live_role(self, identity: Identity, wanted: str | None) -> tuple[LiveRole, int | None]:
        may_host = identity.account_role == "admin" or identity.user_id == self.info.speaker_id
        hall_point = identity.bridge_point_id if identity.bridge_point_id in self.info.invited else None
        if wanted == "member":
            return LiveRole.MEMBER, None
        if wanted == "host" and not may_host:
            raise PermissionDenied("member", "host", "only the session's speaker or an administrator hosts")
        if wanted == "hall" and (identity.account_role != "operator" or hall_point is None):
            raise PermissionDenied("member", "hall", "only the operator of an invited bridge point joins as a hall")
        if may_host and wanted in (None, "host"):
            return LiveRole.HOST, None
        if identity.account_role == "operator" and hall_point is not None:
            return LiveRole.HALL, hall_point
        return LiveRole.MEMBER, None

    async def disconnect(self, connection: Connection) -> None:
        """The connection closed (or left): its media ends; the participant leaves with its last connection."""
        member = self.members.pop(connection.id, None)
        if member is None:
            self._check_idle()
            return
        async with self._lock:
            for endpoint_id in member.endpoints.values():
                await self.media.close_endpoint(endpoint_id)
            await self._apply(self.roster.leave(member.key, connection.id, _utcnow()))
        self._check_idle()

    async def sign_out(self, user_id: int) -> None:
        """Close every socket and WHIP/WHEP resource of a user whose tokens were revoked."""
        for member in [m for m in self.members.values() if m.identity.user_id == user_id]:
            await self.disconnect(member.connection)
            self._spawn(member.connection.close(CLOSE_SIGNED_OUT, "signed out"))
        for endpoint_id, (_, _, owner) in list(self.resources.items()):
            if owner == user_id:
                await self.close_resource(endpoint_id)

    def _check_idle(self) -> None:
        """Close a room nobody uses before (or without) going live, after a grace period."""
        if self._closed or self._idle is not None or self.info.status is SessionStatus.LIVE:
            return
        if self.members or self.resources:
            return
        self._idle = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._idle = None
        if not (self.members or self.resources or self._closed or self.info.status is SessionStatus.LIVE):
            self._spawn(self.close(CLOSE_NORMAL, "idle"))

    # WHIP and WHEP: one HTTP resource is one participant connection with one peer ------

    async def open_resource(self, identity: Identity, pc: str, sdp: str) -> Endpoint:
        """Publish (WHIP, the speaker's feed) or view (WHEP) without a websocket."""
        if self.info.status in (SessionStatus.ENDED, SessionStatus.CANCELLED):
            raise ProtocolError("session_closed", f"the session is {self.info.status.value}")
        role, point_id = self._live_role(identity, None)
        if pc == "publish" and role is not LiveRole.HOST:
            raise PermissionDenied(role.value, "publish", "WHIP ingest takes the session speaker's token")
        key = participant_key(role, identity.user_id, point_id)
        if key in self.banned:
            raise ProtocolError("removed", "you were removed from this session")
        name = self.info.invited.get(point_id, identity.full_name) if point_id else identity.full_name
        connection_id = f"{'whip' if pc == 'publish' else 'whep'}:{uuid.uuid4().hex}"
        async with self._lock:
            # Into the roster first: a refusal (role_conflict) leaves nothing half-made.
            _, events = self.roster.join(connection_id=connection_id, role=role, user_id=identity.user_id,
                                         display_name=name, point_id=point_id, now=_utcnow())
            await self._apply(events)
        try:
            endpoint = await (self.media.publish(key, sdp) if pc == "publish" else self.media.view(key, sdp))
        except BaseException:
            async with self._lock:
                await self._apply(self.roster.leave(key, connection_id, _utcnow()))
            raise
        self.resources[endpoint.id] = (connection_id, key, identity.user_id)
        if pc == "publish":
            self.host_key = key
            self._update_program()
        return endpoint

    def resource_owner(self, endpoint_id: str) -> int | None:
        resource = self.resources.get(endpoint_id)
        return resource[2] if resource else None

    async def close_resource(self, endpoint_id: str) -> bool:
        """End a WHIP/WHEP resource (its DELETE); False if there is none."""
        resource = self.resources.pop(endpoint_id, None)
        if resource is None:
            return False
        connection_id, key, _ = resource
        async with self._lock:
            await self.media.close_endpoint(endpoint_id)
            await self._apply(self.roster.leave(key, connection_id, _utcnow()))
        self._check_idle()
        return True

    # the protocol -----------------------------------------------------------------

    async def _offer(self, member: Member, values: dict[str, Any]) -> None:
        pc = values["pc"]
        if pc == "publish":
            require(member.role, Action.PUBLISH)
            require_publish(member.role, member.point_id, self.floor.holder)
        old = member.endpoints.pop(pc, None)
        if old:
            await self.media.close_endpoint(old)
        if pc == "publish":
            endpoint = await self.media.publish(member.key, values["sdp"])
            # Negotiating took time outside the lock: the floor may have moved meanwhile.
            if not may_publish(member.role, member.point_id, self.floor.holder):
                await self.media.close_endpoint(endpoint.id)
                raise PermissionDenied(member.role.value, "publish", "the floor was taken back meanwhile")
            if member.role is LiveRole.HOST:
                self.host_key = member.key
            self._update_program()
        else:
            endpoint = await self.media.view(member.key, values["sdp"])
        member.endpoints[pc] = endpoint.id
        await member.connection.send({"type": "answer", "pc": pc, "sdp": endpoint.pc.localDescription.sdp})
        self.media_changed(endpoint)

    async def _candidate(self, member: Member, values: dict[str, Any]) -> None:
        endpoint_id = member.endpoints.get(values["pc"])
        if endpoint_id is None:
            raise ProtocolError("no_peer_connection", "send an offer for this pc first")
        await self.media.add_candidate(endpoint_id, values.get("candidate") or "", values.get("sdpMid"),
                                       values.get("sdpMLineIndex"))

    async def _close_pc(self, member: Member, values: dict[str, Any]) -> None:
        endpoint_id = member.endpoints.pop(values["pc"], None)
        if endpoint_id:
            await self.media.close_endpoint(endpoint_id)
            await self._broadcast_state()

    async def _raise_hand(self, member: Member, values: dict[str, Any]) -> None:
        require(member.role, Action.RAISE_HAND)
        assert member.point_id is not None
        await self._apply(self.floor.raise_hand(member.point_id, time.monotonic()))

    async def _lower_hand(self, member: Member, values: dict[str, Any]) -> None:
        require(member.role, Action.LOWER_HAND)
        point_id = values.get("point_id", member.point_id)
        if member.role is LiveRole.HALL and point_id != member.point_id:
            raise PermissionDenied("hall", "lower_hand", "a hall lowers only its own hand")
        if point_id is None:
            raise ProtocolError("invalid_message", "say which point's hand to lower")
        await self._apply(self.floor.lower_hand(point_id))

    async def _grant_floor(self, member: Member, values: dict[str, Any]) -> None:
        require(member.role, Action.GRANT_FLOOR)
        point_id = values["point_id"]
        hall = self.roster.by_point(point_id)
        if point_id not in self.info.invited or hall is None or not hall.connected:
            raise ProtocolError("not_connected", "that bridge point is not connected")
        await self._apply(self.floor.grant(point_id, time.monotonic(), values.get("limit_seconds")))

    async def _revoke_floor(self, member: Member, values: dict[str, Any]) -> None:
        require(member.role, Action.REVOKE_FLOOR)
        await self._apply(self.floor.revoke(time.monotonic(), "revoked"))

    async def _show(self, member: Member, values: dict[str, Any]) -> None:
        require(member.role, Action.GRANT_FLOOR)
        self.program_source = values["source"]
        self._update_program()
        await self._broadcast_state()

    async def _mute(self, member: Member, values: dict[str, Any]) -> None:
        require(member.role, Action.MUTE)
        point_id = values["point_id"]
        if values["muted"]:
            self.muted.add(point_id)
        else:
            self.muted.discard(point_id)
        self.media.audio.muted = {f"point:{p}" for p in self.muted}
        await self._send_to(f"point:{point_id}", {"type": "mute", "muted": values["muted"]})
        await self._broadcast_state()

    async def _remove(self, member: Member, values: dict[str, Any]) -> None:
        require(member.role, Action.REMOVE)
        key = values["key"]
        if key == member.key:
            raise ProtocolError("invalid_target", "you cannot remove yourself")
        if self.roster.get(key) is None:
            raise ProtocolError("unknown_participant", "no such participant")
        self.banned.add(key)
        _, events = self.roster.remove(key, _utcnow())
        for other in [m for m in self.members.values() if m.key == key]:
            self.members.pop(other.connection.id, None)
            await other.connection.send({"type": "removed"})
            # Not awaited under the lock: a client that stopped reading must not freeze the room.
            self._spawn(other.connection.close(CLOSE_REMOVED, "removed by the host"))
        # Every feed of theirs ends: sockets' peer connections and WHIP/WHEP resources alike.
        for endpoint_id, (_, resource_key, _) in list(self.resources.items()):
            if resource_key == key:
                self.resources.pop(endpoint_id, None)
        await self.media.close_key(key)
        await self._apply(events)

    async def _question(self, member: Member, values: dict[str, Any]) -> None:
        require(member.role, Action.QUESTION)
        question = {"type": "question", "id": uuid.uuid4().hex[:12], "from": member.identity.full_name,
                    "key": member.key, "point_id": member.point_id, "text": values["text"],
                    "at": _utcnow().isoformat()}
        self.questions.append(question)
        await self._send_to_hosts(question)
        await member.connection.send({"type": "question_received", "id": question["id"]})

    async def _start(self, member: Member, values: dict[str, Any]) -> None:
        require(member.role, Action.START)
        await self._do_start()

    async def _end(self, member: Member, values: dict[str, Any]) -> None:
        require(member.role, Action.END)
        await self._do_end()

    # lifecycle (also called by the HTTP API) ---------------------------------------------

    async def start(self) -> None:
        async with self._lock:
            await self._do_start()

    async def end(self) -> None:
        async with self._lock:
            await self._do_end()

    async def _do_start(self) -> None:
        try:
            self.info = await self.store.transition(self.info.id, SessionAction.START)
        except AppError as exc:
            raise ProtocolError(exc.code, exc.message) from None
        self.media.set_live(True)
        self._update_program()
        await self._broadcast(self._session_message())

    async def _do_end(self) -> None:
        try:
            self.info = await self.store.transition(self.info.id, SessionAction.END)
        except AppError as exc:
            raise ProtocolError(exc.code, exc.message) from None
        await self._apply(self.floor.revoke(time.monotonic(), "revoked"))
        await self._broadcast(self._session_message())
        # In a task of its own: closing the sockets ends the handler that asked
        # for the end, and its cancellation must not cut the clean-up short.
        self._closing = asyncio.create_task(self.close(CLOSE_NORMAL, "the session has ended"))

    async def close(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        if self._closed:
            # Closing already (the session ended): wait for that to finish.
            if self._closing is not None and self._closing is not asyncio.current_task():
                await asyncio.shield(self._closing)
            return
        self._closed = True
        self._ticker.cancel()
        for timer in (self._host_refresh, self._idle):
            if timer is not None:
                timer.cancel()
        members = list(self.members.values())
        self.members.clear()
        try:
            # Concurrently: one slow socket must not delay telling the others.
            await asyncio.gather(*(m.connection.close(code, reason) for m in members), return_exceptions=True)
            for grant_id in list(self._grant_ids.values()):
                await self.store.floor_ended(grant_id, _utcnow(), "left")
            self._grant_ids.clear()
        finally:
            await self.media.close()
            if self._on_closed is not None:
                await self._on_closed(self)

    # events to messages and media -----------------------------------------------------

    async def _apply(self, events: list[Event]) -> None:
        """Act on domain events, then tell everyone the new state."""
        queue = list(events)
        while queue:
            event = queue.pop(0)
            if isinstance(event, FloorGranted):
                self._grant_ids[event.point_id] = await self.store.floor_started(
                    self.info.id, event.point_id, _utcnow(),
                    int(event.limit_seconds) if event.limit_seconds else None)
                await self._send_to(f"point:{event.point_id}", {"type": "floor_granted",
                                                                "limit_seconds": event.limit_seconds})
            elif isinstance(event, FloorRevoked):
                grant_id = self._grant_ids.pop(event.point_id, None)
                if grant_id is not None:
                    await self.store.floor_ended(grant_id, _utcnow(), event.reason)
                await self.media.close_key(f"point:{event.point_id}", "publish")
                for member in self.members.values():
                    if member.point_id == event.point_id:
                        member.endpoints.pop("publish", None)
                await self._send_to(f"point:{event.point_id}", {"type": "floor_revoked", "reason": event.reason})
            elif isinstance(event, ParticipantLeft) and event.point_id is not None:
                reason = "removed" if event.reason == "removed" else "left"
                queue.extend(self.floor.forget(event.point_id, time.monotonic(), reason))
        self._update_program()
        await self._broadcast_state()

    def _update_program(self) -> None:
        holder = self.floor.holder
        if self.program_source == "floor" and holder is not None and self.media.is_publishing(f"point:{holder}"):
            self.media.show(f"point:{holder}")
        elif self.host_key is not None:
            self.media.show(self.host_key)

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_air_changed(self, key: str | None) -> None:
        """Another picture went on air (at its keyframe, after the floor change): tell everyone."""
        if not self._closed:
            self._spawn(self._broadcast_state())

    def media_changed(self, endpoint: Endpoint) -> None:
        """A media endpoint connected, started receiving or closed: reflect it in the roster."""
        if self._closed:
            return
        if endpoint.id in self.resources and endpoint.id not in self.media.endpoints:
            # A WHIP/WHEP peer failed or closed without a DELETE.
            self._spawn(self.close_resource(endpoint.id))
            return
        if self.roster.get(endpoint.key) is None:
            return
        receiving = self.media.is_receiving(endpoint.key)
        publishing = self.media.is_publishing(endpoint.key)
        try:
            events = self.roster.set_media(endpoint.key, _utcnow(), receiving=receiving, publishing=publishing)
        except RosterError:
            return
        if events:
            self._spawn(self._broadcast_state())

    async def _tick(self) -> None:
        """Enforce floor time limits."""
        while True:
            await asyncio.sleep(0.5)
            try:
                events = self.floor.expire(time.monotonic())
                if events:
                    async with self._lock:
                        await self._apply(events)
            except Exception:
                # One failure (a locked database) must not stop time limits for the session.
                log.exception("session %s: floor tick failed", self.info.id)

    # messages -------------------------------------------------------------------------

    def _welcome(self, member: Member) -> dict[str, Any]:
        return {
            "type": "welcome",
            "you": {"key": member.key, "role": member.role.value, "point_id": member.point_id,
                    "name": self.roster.get(member.key).display_name if self.roster.get(member.key) else ""},
            "session": self._session_message(),
            "floor": self._floor_message(),
        }

    def _session_message(self) -> dict[str, Any]:
        return {"type": "session", "id": self.info.id, "title": self.info.title, "status": self.info.status.value,
                "actual_start": self.info.actual_start.isoformat() if self.info.actual_start else None}

    def _floor_message(self) -> dict[str, Any]:
        now = time.monotonic()
        grant = self.floor.current
        holder = None
        if grant is not None:
            holder = {"point_id": grant.point_id, "name": self.info.invited.get(grant.point_id, ""),
                      "limit_seconds": grant.limit_seconds, "remaining": self.floor.remaining(now)}
        queue = [{"point_id": p, "name": self.info.invited.get(p, "")} for p in self.floor.queue]
        return {"type": "floor", "holder": holder, "queue": queue, "program": self.program_source,
                "on_air": self.media.video.on_air}

    def _roll_call_message(self) -> dict[str, Any]:
        now = time.monotonic()
        points = []
        for entry in self.roster.roll_call(list(self.info.invited), self.floor.holder):
            points.append({"point_id": entry.point_id, "name": self.info.invited[entry.point_id],
                           "state": entry.state, "muted": entry.point_id in self.muted,
                           "hand": entry.point_id in self.floor.queue,
                           "talk_seconds": round(self.floor.talk_time(entry.point_id, now))})
        return {"type": "roll_call", "points": points}

    def _roster_message(self) -> dict[str, Any]:
        # Hosts and halls by name; members (possibly thousands) as counts.
        shown = [p.to_dict() for p in self.roster.participants if p.role is not LiveRole.MEMBER]
        members = [p for p in self.roster.participants if p.role is LiveRole.MEMBER]
        return {"type": "roster", "participants": shown,
                "members": {"connected": sum(1 for p in members if p.connected), "seen": len(members)}}

    async def _broadcast_state(self) -> None:
        """Tell everyone the floor if it changed; refresh the hosts' board soon."""
        floor = self._floor_message()
        unchanged = {k: v for k, v in floor.items() if k != "holder"}
        holder = floor["holder"]
        key = json.dumps([unchanged, holder and {k: v for k, v in holder.items() if k != "remaining"}])
        if key != self._last_floor:
            self._last_floor = key
            await self._broadcast(floor)
        if self._host_refresh is None and not self._closed:
            self._host_refresh = asyncio.get_running_loop().call_later(HOST_REFRESH, self._refresh_hosts)

    def _refresh_hosts(self) -> None:
        self._host_refresh = None
        # Who sees the board is the permission table's call, not a role test here.
        hosts = [m for m in self.members.values() if allowed(m.role, Action.VIEW_ROLL_CALL)]
        if hosts:
            roll_call, roster = json.dumps(self._roll_call_message()), json.dumps(self._roster_message())
            for member in hosts:
                self._spawn(self._safe_send(member, roll_call))
                self._spawn(self._safe_send(member, roster))

    async def _broadcast(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)  # serialized once for everyone
        for member in list(self.members.values()):
            await self._safe_send(member, text)

    async def _send_to(self, key: str, message: dict[str, Any]) -> None:
        for member in list(self.members.values()):
            if member.key == key:
                await self._safe_send(member, message)

    async def _send_to_hosts(self, message: dict[str, Any]) -> None:
        for member in list(self.members.values()):
            if member.role is LiveRole.HOST:
                await self._safe_send(member, message)

    async def _safe_send(self, member: Member, message: dict[str, Any] | str) -> None:
        try:
            await member.connection.send(message)
        except (ConnectionError, RuntimeError):
            # The socket is closing; its disconnect() will clean up.
            pass
