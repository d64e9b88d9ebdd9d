"""Live sessions over HTTP: the websocket, WHIP/WHEP resources, start/end, and the live pages.

Handlers authenticate, check the session, then hand over to the session's
:class:`~server.signaling.room.LiveRoom`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from server import keys
from server.auth.principal import Principal
from server.auth.roles import Role
from server.auth.tokens import issue_token
from server.errors import AppError, Conflict, Forbidden, NotFound, ServiceUnavailable, TooManyRequests
from server.live.errors import LiveError
from server.live.events import LiveRole
from server.live.lifecycle import SessionStatus
from server.live.permissions import PermissionDenied
from server.live.quotas import QuotaExceeded
from server.live.roles import live_role, may_host
from server.logs import Throttled
from server.media.ice import browser_ice_servers
from server.media.room import MediaError
from server.signaling.messages import MAX_MESSAGE_BYTES, ProtocolError, error
from server.signaling.room import LiveRoom
from server.storage import relays as relay_store
from server.storage import sessions as session_store
from server.storage import units as unit_store
from server.storage.models import Session, User
from server.views import checkins
from server.views.auth import current, require
from server.views.forms import path_id, read_sdp
from server.views.middleware import content_security_policy, same_origin
from server.views.render import render

log = logging.getLogger(__name__)
_throttled = Throttled(log)


class WebSocketConnection:
    """aiohttp's websocket as the room's Connection, with its own outbox.

    ``send`` only queues: one writer task per socket drains the queue, so a
    client that reads slowly delays nobody else.  A client that falls more
    than OUTBOX_LIMIT messages behind is disconnected (it will rejoin and get
    the current state) instead of holding memory without bound.
    """

    OUTBOX_LIMIT = 1000

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.id = uuid.uuid4().hex
        self.ws = ws
        self._outbox: deque[str] = deque()
        self._ready = asyncio.Event()
        self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.id}")

    async def send(self, message: dict[str, Any] | str) -> None:
        if self.ws.closed:
            return
        if len(self._outbox) >= self.OUTBOX_LIMIT:
            _throttled.warning("slow", "websocket %s is %d messages behind: closing it", self.id, len(self._outbox))
            self._outbox.clear()
            asyncio.ensure_future(self.close(WSCloseCode.POLICY_VIOLATION, "too slow to keep up"))
            return
        self._outbox.append(message if isinstance(message, str) else json.dumps(message))
        self._ready.set()

    async def _write(self) -> None:
        try:
            while True:
                while not self._outbox:
                    self._ready.clear()
                    await self._ready.wait()
                text = self._outbox.popleft()
                if self.ws.closed:
                    return
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return  # the socket is gone; the handler's clean-up runs

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait (a little) until queued messages are written, before a close."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._outbox and not self.ws.closed and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def close(self, code: int, reason: str) -> None:
        await self.flush()
        self._writer.cancel()
        if not self.ws.closed:
            await self.ws.close(code=code, message=reason.encode())

    @property
    def queued(self) -> int:
        """Messages waiting in the outbox (/metrics)."""
        return len(self._outbox)

    def stop(self) -> None:
        self._writer.cancel()


def _valid_key(key: str) -> bool:
    """RFC 6455 4.1: the key is 16 random bytes in base64 (aiohttp's own check trips on non-ASCII)."""
    if len(key) != 24 or not key.isascii():
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


async def _visible(request: web.Request, principal: Principal, session_id: int) -> Session:
    if principal.session_scope not in (None, session_id):
        raise Forbidden("this token is for another session")
    async with request.app[keys.DATABASE].session() as db:
        return await session_store.visible_session(db, principal, session_id)


async def _admit(request: web.Request, principal: Principal, session_id: int) -> None:
    """``_visible`` for the way into a live room (a socket, WHIP, WHEP): one query, nothing loaded."""
    if principal.session_scope not in (None, session_id):
        raise Forbidden("this token is for another session")
    async with request.app[keys.DATABASE].session() as db:
        await session_store.check_visible(db, principal, session_id)


async def _room(request: web.Request, session_id: int) -> LiveRoom:
    try:
        return await request.app[keys.LIVE].room(session_id)
    except ProtocolError as exc:
        raise Conflict(exc.message, code=exc.code) from None


@require(scoped=True)
async def session_socket(request: web.Request) -> web.StreamResponse:
    """``/ws/sessions/{id}``: one websocket per endpoint (docs/protocol.md)."""
    principal = current(request)
    assert principal is not None
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(request, origin):
        raise Forbidden("cross-origin websocket refused", code="bad_origin")
    session_id = path_id(request)
    await _admit(request, principal, session_id)
    room = await _room(request, session_id)
    try:
        # Before the upgrade: a script opening sockets in a loop gets 429s, not a writer task each.
        ticket = room.quotas.sockets.take(principal.user_id)
    except QuotaExceeded as exc:
        raise TooManyRequests(exc.message, retry_after=exc.retry_after, code=exc.code) from None

    # A frame of MAX_MESSAGE_BYTES is taken; aiohttp's limit refuses a frame of the size given.
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES + 1, heartbeat=20, autoping=True)
    if not _valid_key(request.headers.get("Sec-WebSocket-Key", "")):
        ticket.release()
        raise AppError("not a websocket upgrade request (Sec-WebSocket-Key)", code="bad_upgrade")
    try:
        await ws.prepare(request)
    except BaseException:
        ticket.release()
        raise
    connection = WebSocketConnection(ws)
    sockets = request.app[keys.SOCKETS]
    sockets.add(ws)
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await room.handle(connection, principal, message.data)
            elif message.type == WSMsgType.BINARY:
                await connection.send(error("binary_not_supported", "send JSON text messages"))
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        ticket.release()
        sockets.discard(ws)
        connection.stop()
        # A client that closed normally left; anything else (a reload, a lost
        # network, a crash) is a drop, and a hall keeps its floor for a while.
        dropped = ws.close_code != WSCloseCode.OK
        # aiohttp cancels this handler when the client goes away; the clean-up
        # (closing its media, leaving the roster) must still run to the end.
        await asyncio.shield(room.disconnect(connection, dropped=dropped))
    return ws


# Start and end from the API ------------------------------------------------------------

async def _host_room(request: web.Request) -> LiveRoom:
    principal = current(request)
    assert principal is not None
    session_id = path_id(request)
    session = await _visible(request, principal, session_id)
    if not may_host(principal, session):
        raise Forbidden("only the session's speaker or an administrator starts and ends it")
    return await _room(request, session_id)


async def _lifecycle(request: web.Request, action: str) -> web.StreamResponse:
    room = await _host_room(request)
    try:
        await (room.start() if action == "start" else room.end())
    except ProtocolError as exc:
        raise Conflict(exc.message, code=exc.code) from None
    return await _session_json(request, room.info.id)


@require(Role.ADMIN, Role.SPEAKER, scoped=True)
async def start_session(request: web.Request) -> web.StreamResponse:
    return await _lifecycle(request, "start")


@require(Role.ADMIN, Role.SPEAKER, scoped=True)
async def end_session(request: web.Request) -> web.StreamResponse:
    return await _lifecycle(request, "end")


async def _session_json(request: web.Request, session_id: int) -> web.StreamResponse:
    from server.views.api import session_json

    async with request.app[keys.DATABASE].session() as db:
        session = await session_store.get_session(db, session_id)
    return web.json_response(session_json(session))


# WHIP (RFC 9725) and WHEP ------------------------------------------------------------------

@contextlib.contextmanager
def _answer_errors() -> Iterator[None]:
    """What refuses an offer (WHIP, WHEP, the connection test), as the HTTP error it is."""
    try:
        yield
    except PermissionDenied as exc:
        raise Forbidden(exc.message) from None
    except QuotaExceeded as exc:
        raise TooManyRequests(exc.message, retry_after=exc.retry_after, code=exc.code) from None
    except LiveError as exc:
        if exc.code == "try_again":
            raise ServiceUnavailable(exc.message, code=exc.code) from None
        error_class = {"removed": Forbidden, "session_closed": Conflict, "role_conflict": Conflict}.get(exc.code,
                                                                                                       AppError)
        raise error_class(exc.message, code=exc.code) from None
    except (ProtocolError, MediaError) as exc:
        raise AppError(exc.message, code=exc.code) from None


async def _open_resource(request: web.Request, pc: str, prefix: str) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    session_id = path_id(request)
    await _admit(request, principal, session_id)
    sdp = await read_sdp(request)
    room = await _room(request, session_id)
    if pc == "view":
        await _to_relay(request, room, principal)
    with _answer_errors():
        answer = await room.open_resource(principal, pc, sdp)
    location = f"/{prefix}/sessions/{session_id}/{answer.endpoint_id}"
    headers = {"Location": location, "ETag": f'"{answer.endpoint_id}"'}
    for server in browser_ice_servers(request.app[keys.SETTINGS].ice, principal.user_id):
        for url in server["urls"]:
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                link += f'; username="{server["username"]}"; credential="{server["credential"]}"'
            headers.setdefault("Link", "")
            headers["Link"] = f"{headers['Link']}, {link}" if headers["Link"] else link
    return web.Response(status=201, text=answer.sdp, content_type="application/sdp", headers=headers)


# A redirect's ticket is taken at once; the connection it opens lasts as long as the caller's token.
TICKET_SECONDS = 60


def relay_ticket(app: web.Application, principal: Principal, session_id: int) -> str:
    """A token for one session, to be taken within a minute, standing for ``principal``'s own.

    A redirect's URL carries it: a client drops its Authorization header when
    it follows a redirect to another origin. The connection it opens ends
    when the caller's own token would.
    """
    until = principal.expires_at or int(time.time()) + app[keys.SETTINGS].auth.token_ttl_seconds
    return issue_token(app[keys.JWT_SECRET], principal.user_id, principal.token_version, TICKET_SECONDS,
                       session_id=session_id, connection_until=until)


async def _to_relay(request: web.Request, room: LiveRoom, principal: Principal) -> None:
    """Send a hall or member to the relay serving its unit (307, RFC 9725 section 4.6), if one is alive."""
    if request.query.get("relay") == "no":
        return  # the relay sent it back (it could not reach the program): the hub serves it
    direction = await request.app[keys.RELAY_WATCH].direct(room, principal)
    if direction is not None:
        raise web.HTTPTemporaryRedirect(direction.url)


async def _delete_resource(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    session_id = path_id(request)
    if principal.session_scope not in (None, session_id):
        raise Forbidden("this token is for another session")
    room = request.app[keys.LIVE].existing(session_id)
    resource = request.match_info["resource"]
    owner = room.resource_owner(resource) if room else None
    kind = "whip" if request.path.startswith("/whip/") else "whep"
    if room is None or owner is None or room.resource_kind(resource) != kind:
        raise NotFound("no such resource")
    if owner != principal.user_id and not principal.is_admin:
        raise Forbidden("this resource belongs to someone else")
    await room.close_resource(resource)
    return web.Response(status=200)


# The hall's connection test ---------------------------------------------------------------------

@require(Role.OPERATOR, Role.ADMIN, scoped=True)
async def precheck_start(request: web.Request) -> web.StreamResponse:
    """A hall's camera and microphone through the hub and back (SDP in, SDP out, as WHIP)."""
    principal = current(request)
    assert principal is not None
    session_id = path_id(request)
    await _admit(request, principal, session_id)
    sdp = await read_sdp(request)
    room = await _room(request, session_id)
    with _answer_errors():
        answer = await room.start_precheck(principal, sdp)
    headers = {"Location": f"/api/v1/sessions/{session_id}/precheck/{answer.endpoint_id}"}
    return web.Response(status=201, text=answer.sdp, content_type="application/sdp", headers=headers)


@require(Role.OPERATOR, Role.ADMIN, scoped=True)
async def precheck_end(request: web.Request) -> web.StreamResponse:
    """End the test; what the server measured (kept as the point's connection test)."""
    principal = current(request)
    assert principal is not None
    session_id = path_id(request)
    if principal.session_scope not in (None, session_id):
        raise Forbidden("this token is for another session")
    room = request.app[keys.LIVE].existing(session_id)
    echo_id = request.match_info["resource"]
    key = room.media.echo_key(echo_id) if room is not None else None
    if room is None or key is None:
        raise NotFound("no such connection test")
    if key != live_role(principal, room.info).key and not principal.is_admin:
        raise Forbidden("this connection test is another hall's")
    result = await room.media.end_echo(echo_id)
    if result is None:
        raise NotFound("no such connection test")
    return web.json_response({"ok": result.ok, "seconds": result.seconds, "rtt_ms": result.rtt_ms,
                              "bitrate_kbps": result.bitrate_kbps, "video_frames": result.video_frames,
                              "audio": result.audio_packets >= 50, "detail": result.detail})


async def _no_trickle(request: web.Request) -> web.StreamResponse:
    # RFC 9725 section 4.3.1: a server without trickle ICE answers 405.
    raise web.HTTPMethodNotAllowed("PATCH", ["DELETE"])


@require(scoped=True)
async def whip_publish(request: web.Request) -> web.StreamResponse:
    return await _open_resource(request, "publish", "whip")


@require(scoped=True)
async def whep_view(request: web.Request) -> web.StreamResponse:
    return await _open_resource(request, "view", "whep")


@require(scoped=True)
async def resource_delete(request: web.Request) -> web.StreamResponse:
    return await _delete_resource(request)


@require(scoped=True)
async def resource_patch(request: web.Request) -> web.StreamResponse:
    return await _no_trickle(request)


async def resource_options(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204, headers={"Allow": "POST, OPTIONS", "Accept-Post": "application/sdp"})


# Pages ------------------------------------------------------------------------------------------

@require()
async def live_page(request: web.Request) -> web.StreamResponse:
    """The speaker console, the hall's big screen, or the member's player, by who asks."""
    principal = current(request)
    assert principal is not None
    session_id = path_id(request)
    session = await _visible(request, principal, session_id)
    if session.status in (SessionStatus.ENDED, SessionStatus.CANCELLED):
        raise web.HTTPSeeOther(f"/sessions/{session_id}")
    async with request.app[keys.DATABASE].session() as db:
        points = await session_store.points_by_id(db, session.invited_point_ids)
        speaker = await db.get(User, session.speaker_id) if session.speaker_id else None
    role = live_role(principal, session).role
    template = {LiveRole.HOST: "live_console.html", LiveRole.HALL: "live_hall.html",
                LiveRole.MEMBER: "live_member.html"}[role]
    settings = request.app[keys.SETTINGS]
    config = {
        "sessionId": session.id,
        "role": role.value,
        "ws": f"/ws/sessions/{session.id}",
        "iceServers": browser_ice_servers(settings.ice, principal.user_id),
        "pointId": principal.bridge_point_id if role is LiveRole.HALL else None,
    }
    own_point = points.get(principal.bridge_point_id) if role is LiveRole.HALL and principal.bridge_point_id else None
    # The hall's screen shows its check-in code (an operator's hall, not an admin watching as a hall).
    checkin = (await checkins.code_state(request, session.id, own_point.id)
               if own_point is not None and principal.role is Role.OPERATOR else None)
    response = render(request, template, {
        "session": session, "speaker": speaker, "own_point": own_point, "checkin": checkin,
        "invited": sorted(points.values(), key=lambda p: p.name),
        # Embedded in a <script type="application/json">: "<" escaped so no
        # value can close the element.
        "live_config": json.dumps(config).replace("<", "\\u003c"),
    })
    if role is not LiveRole.HOST and principal.unit_id is not None:
        # The page may be sent to view at the relays of its unit's chain (issue 14): its script reaches them.
        response.headers["Content-Security-Policy"] = content_security_policy(
            await _relay_origins(request, principal.unit_id))
    return response


async def _relay_origins(request: web.Request, unit_id: int) -> set[str]:
    async with request.app[keys.DATABASE].session() as db:
        chain = set(await unit_store.ancestor_ids(db, unit_id))
        relays = await relay_store.list_relays(db)
    origins = set()
    for relay in relays:
        if relay.active and relay.unit_id in chain:
            parts = urlsplit(relay.url)
            origins.add(f"{parts.scheme}://{parts.netloc}")
    return origins


def setup(app: web.Application) -> None:
    """Close every live room and socket on shutdown (GOING_AWAY)."""

    async def close_sockets(app: web.Application) -> None:
        for ws in list(app[keys.SOCKETS]):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    app.on_shutdown.append(close_sockets)
