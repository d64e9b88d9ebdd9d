"""A relay node's HTTP side (issue 14): WHEP for its viewers, ``feed`` for the relays below it, ``/healthz``.

The node itself (heartbeat, uplinks, viewers) is ``server/cascade/relay.py``.
The resource URL (``Location``) holds a random 128-bit id: as at the hub
(RFC 9725), whoever holds it may end it with ``DELETE``. Errors have the
hub's shape; what the hub refused goes back to the viewer as the hub said it.

The hub's pages offer their view here from the hub's origin: WHEP answers
CORS for any origin. That opens nothing: no cookie is read here, and the
credential (the ticket in the URL, or a bearer token) is one a page's script
was given by the hub.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from server.cascade.relay import HubClient, HubRefused, RelayNode
from server.errors import HTTP_CODES, AppError, NotFound, Unauthorized, error_body
from server.media.peer import IceConfig
from server.media.room import MediaError
from server.views.forms import MAX_SDP_BYTES, read_sdp

log = logging.getLogger(__name__)

RELAY_NODE: web.AppKey[RelayNode] = web.AppKey("relay_node")


def _session_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if len(raw) > 18:
        raise NotFound("no such session")
    return int(raw)


def _viewer_token(request: web.Request) -> str:
    ticket = request.query.get("ticket")
    if ticket:
        return ticket
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    raise Unauthorized("sign in: a bearer token, or the ticket of the hub's redirect", code="unauthorized")


async def whep_view(request: web.Request) -> web.StreamResponse:
    node = request.app[RELAY_NODE]
    session_id = _session_id(request)
    token = _viewer_token(request)
    sdp = await read_sdp(request)
    try:
        endpoint, answer = await node.open_viewer(session_id, token, sdp)
    except MediaError as exc:
        raise AppError(exc.message, code=exc.code) from None
    location = f"/whep/sessions/{session_id}/{endpoint}"
    return web.Response(status=201, text=answer, content_type="application/sdp",
                        headers={"Location": location, "ETag": f'"{endpoint}"'})


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a relay token is needed here", code="relay_token")
    return token.strip()


async def feed(request: web.Request) -> web.StreamResponse:
    """A relay below this one takes its uplink (the hub's ``feed``, answered here)."""
    node = request.app[RELAY_NODE]
    child = await node.child_of(_bearer(request))
    session_id = _session_id(request)
    sdp = await read_sdp(request)
    try:
        endpoint, answer = await node.open_feed(session_id, child, sdp)
    except MediaError as exc:
        raise AppError(exc.message, code=exc.code) from None
    return web.Response(status=201, text=answer, content_type="application/sdp",
                        headers={"Location": f"/api/v1/relay/sessions/{session_id}/feed/{endpoint}"})


async def feed_close(request: web.Request) -> web.StreamResponse:
    node = request.app[RELAY_NODE]
    child = await node.child_of(_bearer(request))
    if not await node.close_feed(_session_id(request), child, request.match_info["resource"]):
        raise NotFound("no such uplink")
    return web.Response(status=204)


async def whep_delete(request: web.Request) -> web.StreamResponse:
    node = request.app[RELAY_NODE]
    if not await node.close_viewer(_session_id(request), request.match_info["resource"]):
        raise NotFound("no such resource")
    return web.Response(status=200)


async def whep_patch(request: web.Request) -> web.StreamResponse:
    # RFC 9725 section 4.3.1: a server without trickle ICE answers 405 (the answer carries every candidate).
    raise web.HTTPMethodNotAllowed("PATCH", ["DELETE"])


async def whep_options(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204, headers={"Allow": "POST, OPTIONS", "Accept-Post": "application/sdp"})


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[RELAY_NODE].health())


_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Location, ETag, Link, Retry-After"}
_PREFLIGHT = {**_CORS, "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
              "Access-Control-Allow-Headers": "Content-Type, Authorization", "Access-Control-Max-Age": "600"}


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """WHEP from a hub's page (another origin): the preflight answered, every answer readable, errors too."""
    if not request.path.startswith("/whep/"):
        return await handler(request)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        headers = dict(_PREFLIGHT)
        if request.headers.get("Access-Control-Request-Private-Network") == "true":
            # A hub on a public address, its relay on a province's private network (Chromium's
            # Private Network Access asks before such a request).
            headers["Access-Control-Allow-Private-Network"] = "true"
        return web.Response(status=204, headers=headers)
    response = await handler(request)
    response.headers.update(_CORS)
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The hub's error shape; what the hub refused goes back to the viewer as the hub said it."""
    try:
        return await handler(request)
    except HubRefused as exc:
        body = exc.body if "error" in exc.body else error_body("hub_error", str(exc))
        status = exc.status if 400 <= exc.status < 500 else 503
        return web.json_response(body, status=status, headers=exc.headers.get("Retry-After") and
                                 {"Retry-After": exc.headers["Retry-After"]} or None)
    except AppError as exc:
        retry_after = getattr(exc, "retry_after", None)
        return web.json_response(error_body(exc.code, exc.message, exc.details), status=exc.status,
                                 headers={"Retry-After": str(retry_after)} if retry_after else None)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {name: exc.headers[name] for name in ("Allow",) if name in exc.headers}
        return web.json_response(error_body(HTTP_CODES.get(exc.status, "http_error"), exc.reason),
                                 status=exc.status, headers=kept or None)
    except Exception:
        log.exception("relay: unhandled error in %s %s", request.method, request.path)
        return web.json_response(error_body("internal_error", "internal server error"), status=500)


def create_relay_app(hub_url: str, token: str, ice: IceConfig, *, heartbeat_seconds: float = 2.0) -> web.Application:
    app = web.Application(middlewares=[cors, errors], client_max_size=MAX_SDP_BYTES)
    route_id = r"{id:\d+}"
    resource = r"{resource:[0-9a-f]{32}}"
    app.router.add_post(f"/whep/sessions/{route_id}", whep_view)
    app.router.add_route("OPTIONS", f"/whep/sessions/{route_id}", whep_options)
    app.router.add_delete(f"/whep/sessions/{route_id}/{resource}", whep_delete)
    app.router.add_patch(f"/whep/sessions/{route_id}/{resource}", whep_patch)
    app.router.add_post(f"/api/v1/relay/sessions/{route_id}/feed", feed)
    app.router.add_delete(f"/api/v1/relay/sessions/{route_id}/feed/{resource}", feed_close)
    app.router.add_get("/healthz", healthz)

    async def lifetime(app: web.Application) -> Any:
        async with aiohttp.ClientSession() as http:
            node = RelayNode(HubClient(hub_url, token, http), ice, heartbeat_seconds=heartbeat_seconds)
            app[RELAY_NODE] = node
            node.start()
            yield
            await node.stop()

    app.cleanup_ctx.append(lifetime)
    return app
