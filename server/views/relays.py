"""The hub's API for its relays (issue 14), under ``/api/v1/relay/``: only a relay's token opens it.

A relay token (``bcr_…``) is no user's: the auth middleware leaves these
paths alone, every handler here checks the token against the relays table,
and no other route accepts it. What a relay may do:

- beat (``POST /api/v1/relay/heartbeat``): it is alive, carries these
  sessions' uplinks and serves this many viewers; the answer says which live
  sessions it should carry and who its parent is;
- take the program once per session (``POST …/sessions/{id}/feed``, SDP in,
  SDP out): the uplink (a relay below a relay takes it from its parent, which
  asks here who the token belongs to: ``POST …/children``);
- vouch for a viewer (``POST …/sessions/{id}/viewers``): the viewer's own
  token (or the ticket of the hub's redirect) goes with it, and the viewer
  joins the roster and the attendance record here as if it watched here;
  ``PATCH`` says the program reaches it, ``DELETE`` that it left.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from aiohttp import web

from server import keys, schemas
from server.auth.tokens import TokenError
from server.errors import Forbidden, NotFound, Unauthorized
from server.live.events import relay_key
from server.live.nodes import NodeInfo
from server.storage import relays as relay_store
from server.storage.relays import RelayRecord
from server.views.api import read_json
from server.views.auth import bearer_token, principal_from_token
from server.views.forms import path_id
from server.signaling.room import LiveRoom
from server.views.forms import read_sdp
from server.views.live import _admit, _answer_errors, _room

# How often the hub writes a relay's heartbeat down in the database (`relay list` without Redis).
SEEN_EVERY_SECONDS = 5.0
_TOKENS_FOR_SECONDS = 5.0


async def relay_of(request: web.Request) -> RelayRecord:
    """The relay whose token came with the request (401 otherwise)."""
    token = bearer_token(request)
    if token is None or not relay_store.looks_like_relay_token(token):
        raise Unauthorized("a relay token is needed here", code="relay_token")
    cache = request.app[keys.RELAY_TOKENS]
    digest = relay_store.digest(token)
    cached = cache.get(digest)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    async with request.app[keys.DATABASE].session() as db:
        relay = await relay_store.relay_by_token(db, token)
    if relay is None:
        cache.pop(digest, None)
        raise Unauthorized("this relay token is unknown or disabled", code="invalid_token")
    if len(cache) > 10_000:
        cache.clear()
    cache[digest] = (relay, now + _TOKENS_FOR_SECONDS)
    return relay


async def heartbeat(request: web.Request) -> web.StreamResponse:
    relay = await relay_of(request)
    values = await read_json(request, schemas.RELAY_HEARTBEAT)
    settings = request.app[keys.SETTINGS].cascade
    now = time.time()
    info = NodeInfo(name=relay.name, kind="relay", url=relay.url, unit_id=relay.unit_id, parent=relay.parent,
                    sessions=tuple(sorted(set(values["sessions"]))), viewers=values["viewers"], beat_at=now,
                    health={"cpu_percent": values["cpu_percent"], "rss_mib": values["rss_mib"]})
    await request.app[keys.NODES].beat(info, settings.ttl_seconds)
    seen = request.app[keys.RELAYS_SEEN]
    if now - seen.get(relay.id, 0.0) >= SEEN_EVERY_SECONDS:
        seen[relay.id] = now
        async with request.app[keys.DATABASE].session() as db:
            await relay_store.saw(db, relay.id, datetime.fromtimestamp(now, timezone.utc))
    database = request.app[keys.DATABASE]

    async def load(unit_id: int) -> list[dict[str, object]]:
        async with database.session() as db:
            return await relay_store.sessions_for(db, unit_id)

    sessions = await request.app[keys.RELAY_WATCH].carried(relay.unit_id, load)
    parent_url = None
    if relay.parent is not None:
        async with database.session() as db:
            parent_url = next((r.url for r in await relay_store.list_relays(db) if r.name == relay.parent), None)
    # The viewers the hub still holds for this relay: one it ended (removed, signed out, expired) goes there too.
    live = request.app[keys.LIVE]
    held = {}
    for session in sessions:
        room = live.existing(int(session["id"]))  # type: ignore[call-overload]
        if room is not None:
            held[str(session["id"])] = sorted(r.endpoint_id for r in room.resources.served_by(relay.name))
    return web.json_response({
        "relay": relay.name, "unit_id": relay.unit_id, "parent": relay.parent, "parent_url": parent_url,
        "sessions": sessions, "viewers": held, "heartbeat_seconds": settings.heartbeat_seconds,
        "ttl_seconds": settings.ttl_seconds,
    })


async def forget(request: web.Request) -> web.StreamResponse:
    """A relay stopping cleanly: no viewer is sent to it from now on, what it still served is dropped."""
    relay = await relay_of(request)
    await request.app[keys.NODES].forget(relay.name)
    watch = request.app[keys.RELAY_WATCH]
    await watch.check()
    return web.Response(status=204)


async def _carried_room(request: web.Request, relay: RelayRecord) -> tuple[int, LiveRoom]:
    session_id = path_id(request)
    async with request.app[keys.DATABASE].session() as db:
        carried = {s["id"] for s in await relay_store.sessions_for(db, relay.unit_id)}
    if session_id not in carried:
        raise NotFound("this relay carries no such live session", code="not_carried")
    return session_id, await _room(request, session_id)


async def feed(request: web.Request) -> web.StreamResponse:
    """The relay's uplink: one subscription to the program, answered like WHEP."""
    relay = await relay_of(request)
    sdp = await read_sdp(request)
    session_id, room = await _carried_room(request, relay)
    with _answer_errors():
        answer = await room.open_uplink(relay.name, sdp)
    location = f"/api/v1/relay/sessions/{session_id}/feed/{answer.endpoint_id}"
    return web.Response(status=201, text=answer.sdp, content_type="application/sdp", headers={"Location": location})


async def child(request: web.Request) -> web.StreamResponse:
    """A relay asks who shows it this token: one of the relays below it (to take its uplink there), or 404."""
    relay = await relay_of(request)
    values = await read_json(request, schemas.RELAY_CHILD)
    token = values["token"]
    found = None
    if relay_store.looks_like_relay_token(token):
        async with request.app[keys.DATABASE].session() as db:
            found = await relay_store.relay_by_token(db, token)
    if found is None or found.parent != relay.name:
        raise NotFound("no relay below this one holds that token", code="not_a_child")
    return web.json_response({"name": found.name, "unit_id": found.unit_id})


async def feed_close(request: web.Request) -> web.StreamResponse:
    """The relay ends its uplink (it is making a new one, or stopping)."""
    relay = await relay_of(request)
    session_id = path_id(request)
    room = request.app[keys.LIVE].existing(session_id)
    endpoint = request.match_info["resource"]
    mine = room is not None and any(e.id == endpoint for e in room.media.endpoints(relay_key(relay.name)))
    if room is None or not mine:
        raise NotFound("no such uplink")
    await room.media.close_endpoint(endpoint)
    return web.Response(status=204)


async def viewer_open(request: web.Request) -> web.StreamResponse:
    """A viewer at the relay: checked here with its own token, then in the roster and on record."""
    relay = await relay_of(request)
    values = await read_json(request, schemas.RELAY_VIEWER)
    session_id, room = await _carried_room(request, relay)
    try:
        principal = await principal_from_token(request.app, values["token"])
    except TokenError as exc:
        raise Forbidden(f"the viewer's token is refused: {exc}", code="viewer_token") from None
    if principal.session_scope not in (None, session_id):
        raise Forbidden("the viewer's token is for another session", code="viewer_token")
    await _admit(request, principal, session_id)
    with _answer_errors():
        resource = await room.open_relayed_view(principal, relay.name, values["endpoint"])
    return web.json_response({"endpoint": resource.endpoint_id, "key": resource.key, "user_id": principal.user_id,
                              "expires_at": principal.expires_at}, status=201)


def _relayed(request: web.Request, relay: RelayRecord) -> tuple[LiveRoom, str]:
    session_id = path_id(request)
    room = request.app[keys.LIVE].existing(session_id)
    endpoint = request.match_info["resource"]
    resource = room.resources.get(endpoint) if room is not None else None
    if room is None or resource is None:
        raise NotFound("no such viewer")
    if resource.node != relay.name:
        raise Forbidden("this viewer is another relay's")
    return room, endpoint


async def viewer_update(request: web.Request) -> web.StreamResponse:
    relay = await relay_of(request)
    values = await read_json(request, schemas.RELAY_VIEWER_STATE)
    room, endpoint = _relayed(request, relay)
    if values["receiving"]:
        await room.relayed_receiving(endpoint)
    return web.Response(status=204)


async def viewer_close(request: web.Request) -> web.StreamResponse:
    relay = await relay_of(request)
    room, endpoint = _relayed(request, relay)
    dropped = request.query.get("dropped", "") in ("1", "true")
    await room.close_resource(endpoint, dropped=dropped)
    return web.Response(status=204)
