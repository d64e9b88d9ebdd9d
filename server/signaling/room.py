"""One live session on this server: its websockets, the domain and the media, tied together.

The live domain (:class:`~server.live.session.LiveSession`) decides and
returns events; :meth:`LiveRoom.commit` publishes them on the event bus, where
the room's own subscribers act on them — the media director
(``server.signaling.director``) first, then the socket broadcaster
(``server.signaling.broadcaster``) — after the stores that subscribe to every
session. Client messages are parsed by ``server.signaling.messages`` and
dispatched through one table (``server.signaling.handlers``).

The room's lock guards the domain state: a command and the publishing of
its events happen under it, so every subscriber sees a session's events in
order. Media callbacks (an endpoint connected, another picture went on air)
arrive outside it and are committed in a task of their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from server.auth.principal import Principal
from server.errors import AppError
from server.live.bus import Delivery, EventBus, Subscription
from server.live.errors import LiveError
from server.live.events import Event, LiveRole, relay_key
from server.live.lifecycle import SessionAction, SessionStatus
from server.live.quotas import QuotaExceeded, Quotas, Ticket
from server.live.permissions import Action, PermissionDenied, require
from server.live.session import LiveSession
from server.live.store import LiveStore, SessionInfo
from server import logs
from server.logs import Throttled
from server.live.events import ParticipantRef
from server.media.peer import IceConfig
from server.media.stats import MediaStats
from server.media.room import EndpointState, MediaError, MediaRoom
from server.signaling import messages, outgoing
from server.signaling.broadcaster import Broadcaster
from server.signaling.connections import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_ROLE_CHANGED,
    CLOSE_SIGNED_OUT,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TRY_AGAIN,
    Connection,
    HeldConnection,
    Member,
    Members,
)
from server.signaling.director import Director
from server.signaling.directions import ViewDirections
from server.signaling.precheck import start_precheck
from server.signaling.quality import QualityMonitor
from server.signaling.handlers import HANDLERS, UNLOCKED
from server.signaling.messages import ProtocolError
from server.signaling.resources import (Resource, Resources, close_resource, open_relayed_view, open_resource,
                                        relayed_receiving)
from server.media.room import Answer

log = logging.getLogger(__name__)
# A member sending what its role may not send is one line a minute, not one per message.
_throttled = Throttled(log)

# A room that is not live and has nobody left closes after this long.
IDLE_SECONDS = 60.0
# Floor time limits and reconnect grace periods are checked this often.
TICK_SECONDS = 0.5
# Tokens of open connections are checked for expiry every this many ticks.
TOKEN_CHECK_TICKS = 4


class LiveRoom:
    """The live state of one session on this server."""

    def __init__(self, session: LiveSession, store: LiveStore, bus: EventBus, ice: IceConfig,
                 on_closed: Callable[[LiveRoom], Awaitable[None]] | None = None,
                 quotas: Quotas | None = None, stats: MediaStats | None = None) -> None:
        self.session = session
        self.quotas = quotas or Quotas.unlimited()
        self.store = store
        self.bus = bus
        self.media = MediaRoom(ice, on_endpoint=self._media_changed, on_air=self._on_air, stats=stats)
        self.media.set_live(session.info.status is SessionStatus.LIVE)
        self.members = Members()
        self.resources = Resources()
        # Who sends a page's view to a relay (the cascade's RelayWatch); None: this server serves every view.
        self.directions: ViewDirections | None = None
        # Media endpoint id -> the socket that owns it.
        self.owners: dict[str, Member] = {}
        self.lock = asyncio.Lock()
        self._on_closed = on_closed
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        # Tasks started from callbacks, kept so they are not collected mid-run.
        self._tasks: set[asyncio.Future[Any]] = set()
        self._idle: asyncio.TimerHandle | None = None
        self.broadcaster = Broadcaster(session, self.members, self.spawn)
        self.director = Director(self.media)
        self.quality = QualityMonitor(session, self.media.link_readings, self.broadcaster, self._locked_commit,
                                      self.spawn)
        # The media follows first (a revoked hall's camera is closed), then the sockets are told.
        self._subscriptions: list[Subscription] = [
            bus.subscribe(self.director.handle, session_id=session.info.id, name="media-director"),
            bus.subscribe(self.broadcaster.handle, session_id=session.info.id, name="socket-broadcaster",
                          batch_done=self.broadcaster.batch_done),
            bus.subscribe(self.quality.handle, session_id=session.info.id, name="quality-monitor"),
        ]
        # The room's own tasks log as the session's, not as the request that happened to open it.
        self._context = logs.fresh_context(session=session.info.id)
        self._context.run(self.quality.start)
        # The publishers' videos as last told to the hosts, and which hosts were told.
        self._sources_sent: dict[str, Any] | None = None
        self._sources_told: set[int] = set()
        self._ticker = asyncio.create_task(self._tick(), name=f"live-room-{session.info.id}", context=self._context)
        if session.info.status is SessionStatus.LIVE:
            # Opened after a restart mid-session: what follows the session from its start resumes.
            self.spawn(self._locked_commit(self.session.resumed))

    @property
    def info(self) -> SessionInfo:
        return self.session.info

    @property
    def closed(self) -> bool:
        return self._closed

    async def commit(self, events: Iterable[Event]) -> Delivery:
        """Publish what the domain returned (call it holding the lock).

        The delivery holds what subscribers still have under way (attendance's
        durable write of a join): await ``settled()`` after the lock is released.
        """
        batch = list(events)
        if batch:
            return await self.bus.publish(batch)
        return Delivery()

    def endpoint_ticket(self, principal: Principal) -> Ticket:
        """Count one more peer connection against the caller and the session (QuotaExceeded beyond).

        Give it to the media room as the endpoint's ``on_close``: it comes back
        when the endpoint closes, however it closes.
        """
        return self.quotas.endpoints.take(principal.user_id, self.info.id)

    def spawn(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # connections -----------------------------------------------------------------

    async def handle(self, connection: Connection, principal: Principal, raw: str) -> None:
        """Handle one text frame: parse, check, dispatch; answer errors, never raise."""
        kind = "?"
        try:
            # Counted before parsing: a flood of garbage costs its sender, not the room.
            if not self.members.allow(connection.id):
                raise ProtocolError("rate_limited", "too many messages: slow down")
            kind, values = messages.parse(raw)
            member = self.members.get(connection.id)
            if kind == "ping":
                await connection.send(outgoing.pong(values.get("t")))
            elif kind == "join":
                await self._join(connection, principal, values)
            elif kind == "leave":
                await self.disconnect(connection, dropped=False)
                await connection.close(CLOSE_NORMAL, "left")
            elif member is None:
                raise ProtocolError("not_joined", "send join first")
            elif kind in UNLOCKED:
                await HANDLERS[kind](self, member, values)
            else:
                async with self.lock:
                    await HANDLERS[kind](self, member, values)
        except ProtocolError as exc:
            await connection.send(messages.error(exc.code, exc.message, request=exc.request or kind,
                                                 details=exc.details))
        except PermissionDenied as exc:
            member = self.members.get(connection.id)
            _throttled.warning(("refused", principal.user_id), "session %s: refused %s from user %s (%s)",
                               self.info.id, kind, principal.user_id, member.role.value if member else "not joined")
            await connection.send(messages.error(exc.code, exc.message, request=kind))
        except (LiveError, MediaError) as exc:
            await connection.send(messages.error(exc.code, exc.message, request=kind))
        except QuotaExceeded as exc:
            await connection.send(messages.error(exc.code, exc.message, request=kind,
                                                 details={"retry_after": exc.retry_after}))
        except Exception:
            # A bug must not end the connection's loop: log it, tell the client, carry on.
            log.exception("session %s: %s from user %s failed", self.info.id, kind, principal.user_id)
            await connection.send(messages.error("internal_error", "the server could not handle this message",
                                                 request=kind))

    async def _join(self, connection: Connection, principal: Principal, values: dict[str, Any]) -> None:
        if self.members.get(connection.id) is not None:
            raise ProtocolError("already_joined", "this connection has joined already")
        # The socket's messages wait behind its welcome until the join is on record.
        held = HeldConnection(connection)
        async with self.lock:
            participant, events = self.session.join(connection.id, "socket", principal, values.get("as"))
            delivery = await self.commit(events)
            self.members.add(Member(held, principal, participant.ref))
            await held.send(outgoing.welcome(self.session, participant))
            if participant.role is LiveRole.HOST:
                # A host who reconnects (or reloads the page) still sees the questions asked so far.
                for question in self.session.questions:
                    await held.send(outgoing.question_message(question))
        # Outside the lock, so that a storm of joins commits in groups, not one by one.
        if not await delivery.settled():
            # Not on record anywhere (the database away and the local spool failing): no welcome.
            await self.disconnect(held, dropped=False)
            await connection.send(messages.error("try_again", "the join could not be recorded: try again"))
            await connection.close(CLOSE_TRY_AGAIN, "try again")
            return
        await held.release()

    async def disconnect(self, connection: Connection, *, dropped: bool = True) -> None:
        """The socket closed: cleanly (it said leave, or closed normally) or lost (``dropped``).

        Its media ends; its participant leaves with its last endpoint, and a
        hall that was lost keeps its floor for the grace period.
        """
        member = self.members.pop(connection.id)
        if member is None:
            self.check_idle()
            return
        async with self.lock:
            # Taken out first: while one peer connection closes, the other may close by itself,
            # and its callback must find nothing left to take out.
            endpoints = list(member.endpoints.values())
            member.endpoints.clear()
            try:
                for endpoint_id in endpoints:
                    self.owners.pop(endpoint_id, None)
                    await self.media.close_endpoint(endpoint_id)
            finally:
                # Whatever closing the media did, the participant leaves: never a ghost on the roll call.
                await self.commit(self.session.leave(connection.id, dropped=dropped))
        self.check_idle()

    async def sign_out(self, user_id: int, token_id: str | None = None) -> None:
        """Close every socket and WHIP/WHEP resource of a user whose tokens were revoked (or of one token)."""
        await self._end_where(lambda principal: principal.user_id == user_id
                              and token_id in (None, principal.token_id), CLOSE_SIGNED_OUT, "signed out")

    async def reseat(self, user_id: int) -> None:
        """The user's account changed (moved to another hall or unit): their connections end, to join afresh."""
        await self._end_where(lambda principal: principal.user_id == user_id, CLOSE_ROLE_CHANGED,
                              "your account changed: join again")

    async def _end_where(self, condition: Callable[[Principal], bool], code: int, reason: str,
                         connection_ids: set[str] | None = None) -> None:
        """End the sockets and resources whose principal meets ``condition`` (and, if given, whose id is listed)."""
        def chosen(principal: Principal, connection_id: str) -> bool:
            return condition(principal) and (connection_ids is None or connection_id in connection_ids)

        for member in [m for m in self.members if chosen(m.principal, m.connection.id)]:
            await self.disconnect(member.connection, dropped=False)
            self.spawn(member.connection.close(code, reason))
        for resource in [r for r in self.resources.all() if chosen(r.principal, r.connection_id)]:
            await close_resource(self, resource.endpoint_id)

    async def expire_tokens(self, now: float) -> None:
        """End the connections whose token has expired: an open socket is no longer proof of a valid token."""
        await self._end_where(lambda p: p.expires_at is not None and p.expires_at < now, CLOSE_TOKEN_EXPIRED,
                              "your sign-in expired")

    async def reload(self, info: SessionInfo) -> None:
        """The session was edited or cancelled outside the room: follow it.

        Seats are re-evaluated: a speaker replaced on the session is no longer
        a host, a hall no longer invited no longer a hall; those connections
        end and join again in the seat they now have.
        """
        async with self.lock:
            stale = set(self.session.reload(info))
        if info.status in (SessionStatus.ENDED, SessionStatus.CANCELLED):
            await self.close(CLOSE_NORMAL, f"the session was {info.status.value}")
            return
        if stale:
            log.info("session %s: %d connection(s) changed seat with the session's edit", info.id, len(stale))
            await self._end_where(lambda principal: True, CLOSE_ROLE_CHANGED, "your role in this session changed",
                                  connection_ids=stale)
        await self.broadcaster.broadcast(outgoing.session_message(self.session))

    # WHIP and WHEP ------------------------------------------------------------------

    async def open_resource(self, principal: Principal, pc: str, sdp: str) -> Answer:
        if self.info.status in (SessionStatus.ENDED, SessionStatus.CANCELLED):
            raise LiveError("session_closed", f"the session is {self.info.status.value}")
        return await open_resource(self, principal, pc, sdp)

    async def start_precheck(self, principal: Principal, sdp: str) -> Answer:
        if self.info.status in (SessionStatus.ENDED, SessionStatus.CANCELLED):
            raise LiveError("session_closed", f"the session is {self.info.status.value}")
        return await start_precheck(self, principal, sdp)

    def resource_owner(self, endpoint_id: str) -> int | None:
        resource = self.resources.get(endpoint_id)
        return resource.user_id if resource else None

    def resource_kind(self, endpoint_id: str) -> str | None:
        """"whip" or "whep": the URL a resource lives under."""
        resource = self.resources.get(endpoint_id)
        return resource.connection_id.split(":", 1)[0] if resource else None

    async def close_resource(self, endpoint_id: str, *, dropped: bool = False) -> bool:
        return await close_resource(self, endpoint_id, dropped=dropped)

    # the cascade (issue 14) -------------------------------------------------------------

    async def open_uplink(self, node: str, sdp: str) -> Answer:
        """A relay's one subscription to the program: it hears everything (its viewers' mixes are its to make).

        A relay that connects again replaces its previous uplink: one per relay, always.
        """
        if self.info.status is not SessionStatus.LIVE:
            raise LiveError("not_live", f"the session is {self.info.status.value}: nothing to relay")
        key = relay_key(node)
        await self.media.close_key(key, "view")
        # The full picture always: the relay forwards it to every viewer behind it, whatever one link says.
        return await self.media.view(key, sdp, adaptive=False)

    def uplinks(self) -> dict[str, int]:
        """The relays holding an uplink to this room's program: how many each (one, but for a moment)."""
        counts: dict[str, int] = {}
        for endpoint in self.media.endpoints():
            if endpoint.kind == "view" and endpoint.key.startswith("relay:") and not endpoint.closed:
                name = endpoint.key.split(":", 1)[1]
                counts[name] = counts.get(name, 0) + 1
        return counts

    async def open_relayed_view(self, principal: Principal, node: str, endpoint_id: str) -> Resource:
        if self.info.status in (SessionStatus.ENDED, SessionStatus.CANCELLED):
            raise LiveError("session_closed", f"the session is {self.info.status.value}")
        return await open_relayed_view(self, principal, node, endpoint_id)

    async def relayed_receiving(self, endpoint_id: str) -> bool:
        return await relayed_receiving(self, endpoint_id)

    async def drop_node(self, node: str) -> int:
        """A relay died: its viewers are dropped here (the gap is on record), its uplink closed.

        The pages it served are told to offer their view again now (here, or at a sibling relay),
        instead of waiting for their peer connection to fail.
        """
        lost = self.resources.served_by(node)
        for resource in lost:
            await close_resource(self, resource.endpoint_id, dropped=True)
        await self.media.close_key(relay_key(node), "view")
        await self.move_views(lambda member, at: at == node, "relay_lost")
        return len(lost)

    def nodes_in_use(self) -> set[str]:
        """The relays this room depends on: serving its viewers, holding an uplink, or sent a page's view."""
        nodes = {r.node for r in self.resources.all() if r.node is not None} | set(self.uplinks())
        return nodes | {node for member in self.members for node in member.relayed.values()}

    async def move_views(self, chosen: Callable[[Member, str], bool], reason: str) -> int:
        """Tell the pages whose view a relay serves, where ``chosen(member, relay)``, to offer it again here."""
        moved = 0
        for member in self.members:
            node = member.relayed.get("view")
            if node is not None and chosen(member, node):
                del member.relayed["view"]
                await member.connection.send(outgoing.renegotiate("view", reason))
                moved += 1
        return moved

    # media callbacks ------------------------------------------------------------------

    def media_state(self, key: str) -> list[Event]:
        """The domain's view of ``key``'s media, refreshed from the media room (and the relays serving it)."""
        receiving = self.media.is_receiving(key) or self.resources.remote_receiving(key)
        return self.session.media_state(key, receiving=receiving, publishing=self.media.is_publishing(key))

    def _media_changed(self, state: EndpointState) -> None:
        """A media endpoint connected, started receiving or closed."""
        if self._closed:
            return
        if state.closed:
            owner = self.owners.pop(state.id, None)
            if owner is not None:
                for pc, endpoint_id in list(owner.endpoints.items()):
                    if endpoint_id == state.id:
                        del owner.endpoints[pc]
            if state.id in self.resources:
                # A WHIP/WHEP peer failed or closed without a DELETE.
                self.spawn(close_resource(self, state.id, dropped=True))
                return
        self.spawn(self._locked_commit(lambda: self.media_state(state.key)))

    def _on_air(self, key: str | None) -> None:
        """Another picture went on air (at its keyframe, after the floor change)."""
        if not self._closed:
            self.spawn(self._locked_commit(lambda: self.session.on_air_changed(key)))

    async def locked_commit(self, change: Callable[[], list[Event]]) -> None:
        """Commit what ``change`` returns, under the lock (from a callback or a task of its own)."""
        await self._locked_commit(change)

    async def _locked_commit(self, change: Callable[[], list[Event]]) -> None:
        async with self.lock:
            if not self._closed:
                await self.commit(change())

    # lifecycle (also called by the HTTP API) ---------------------------------------------

    async def start(self) -> None:
        async with self.lock:
            await self._start()

    async def end(self) -> None:
        async with self.lock:
            await self._end()

    async def do_start(self, actor: ParticipantRef) -> None:
        require(actor.role, Action.START)
        await self._start()

    async def do_end(self, actor: ParticipantRef) -> None:
        require(actor.role, Action.END)
        await self._end()

    async def _start(self) -> None:
        info = await self._transition(SessionAction.START)
        await self.commit(self.session.started(info))

    async def _end(self) -> None:
        info = await self._transition(SessionAction.END)
        await self.commit(self.session.ended(info))
        # In a task of its own: closing the sockets ends the handler that asked
        # for the end, and its cancellation must not cut the clean-up short.
        self._closing = asyncio.create_task(self.close(CLOSE_NORMAL, "the session has ended"))

    async def _transition(self, action: SessionAction) -> SessionInfo:
        try:
            return await self.store.transition(self.info.id, action)
        except AppError as exc:
            raise ProtocolError(exc.code, exc.message) from None

    async def _tick(self) -> None:
        """Enforce floor time limits, reconnect grace periods and token expiry."""
        ticks = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            ticks += 1
            try:
                async with self.lock:
                    await self.commit(self.session.tick())
                await self._send_sources()
                if ticks % TOKEN_CHECK_TICKS == 0:
                    await self.expire_tokens(time.time())
            except Exception:
                # One failure must not stop time limits for the session.
                log.exception("session %s: tick failed", self.info.id)

    async def _send_sources(self) -> None:
        """Tell the hosts what each publisher sends, when that changes (or a host came)."""
        message = outgoing.sources_message(self.media.sources())
        hosts = {id(member) for member in self.broadcaster.hosts()}
        if message == self._sources_sent and hosts <= self._sources_told:
            return
        self._sources_sent, self._sources_told = message, hosts
        await self.broadcaster.send_to_hosts(message)

    def check_idle(self) -> None:
        """Close a room nobody uses before (or without) going live, after a grace period."""
        if self._closed or self._idle is not None or self.info.status is SessionStatus.LIVE:
            return
        if len(self.members) or len(self.resources):
            return
        self._idle = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._idle = None
        if not (len(self.members) or len(self.resources) or self._closed or self.info.status is SessionStatus.LIVE):
            self.spawn(self.close(CLOSE_NORMAL, "idle"))

    async def close(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        if self._closed:
            # Closing already (the session ended): wait for that to finish.
            if self._closing is not None and self._closing is not asyncio.current_task():
                await asyncio.shield(self._closing)
            return
        self._closed = True
        self._ticker.cancel()
        await self.quality.stop()
        if self._idle is not None:
            self._idle.cancel()
        self.broadcaster.stop()
        members = self.members.clear()
        try:
            # Concurrently: one slow socket must not delay telling the others.
            await asyncio.gather(*(m.connection.close(code, reason) for m in members), return_exceptions=True)
            async with self.lock:
                await self.commit(self.session.closing())
        finally:
            for subscription in self._subscriptions:
                subscription.cancel()
            await self.media.close()
            if self._on_closed is not None:
                await self._on_closed(self)
