"""Middlewares: errors to responses, authentication, CSRF, security headers."""

from __future__ import annotations

import re

import hmac
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from server import keys, logs
from server.errors import HTTP_CODES, AppError, Forbidden, Unauthorized, error_body
from server.logs import Throttled
from server.storage.db import database_unavailable
from server.views.auth import CSRF_COOKIE, apply_cookies, authenticate, is_api

log = logging.getLogger(__name__)
# Lines a client can cause, at most a few a minute (server/logs.py).
_throttled = Throttled(log)

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
def content_security_policy(connect: Iterable[str] = ()) -> str:
    """The pages' policy; ``connect``: other origins a page's script may reach (the relays a live page views at)."""
    sources = " ".join(["'self'", "ws:", "wss:", *sorted(connect)])
    return ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
            f"connect-src {sources}; style-src 'self'; script-src 'self'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


CSP = content_security_policy()




def _error_response(request: web.Request, status: int, code: str, message: str, details: object = None,
                    headers: dict[str, str] | None = None) -> web.StreamResponse:
    if is_api(request):
        return web.json_response(error_body(code, message, details), status=status, headers=headers)
    from server.views.render import render

    response = render(request, "error.html", {"status": status, "code": code, "message": message}, status=status)
    if headers:
        response.headers.update(headers)
    return response


DATABASE_RETRY_AFTER = 5


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn domain errors and HTTP errors into one error shape; never leak a traceback."""
    try:
        response = await handler(request)
    except AppError as exc:
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        if isinstance(exc, Unauthorized) and is_api(request):
            headers = {"WWW-Authenticate": 'Bearer realm="bridgecast"'}
        response = _error_response(request, exc.status, exc.code, exc.message, exc.details, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            # Redirects are raised (returning an exception is deprecated in aiohttp).
            apply_cookies(request, exc)
            raise
        else:
            code = HTTP_CODES.get(exc.status, "http_error")
            message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
            kept = {name: exc.headers[name] for name in ("Allow", "Retry-After") if name in exc.headers}
            response = _error_response(request, exc.status, code, message, headers=kept or None)
    except Exception as exc:
        if database_unavailable(exc):
            # Not a bug: the database is away (a restart, a network cut). Say so, and when to retry.
            _throttled.warning("database", "database unavailable in %s %s: %s", request.method, request.path,
                               type(exc).__name__)
            response = _error_response(request, 503, "database_unavailable",
                                       "the database is unavailable: try again in a few seconds",
                                       headers={"Retry-After": str(DATABASE_RETRY_AFTER)})
        else:
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = _error_response(request, 500, "internal_error", "internal server error")
    if isinstance(response, web.Response) or not response.prepared:
        apply_cookies(request, response)
    return response


@web.middleware
async def authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(("/static/", RELAY_API)) or request.path == "/metrics":
        # /metrics has a bearer of its own (the scraper's token, not a user's): see server/views/metrics.py;
        # so has the relays' API (a relay's token): see server/views/relays.py.
        request[keys.PRINCIPAL] = None
        return await handler(request)
    principal = await authenticate(request)
    request[keys.PRINCIPAL] = principal
    # Every line logged for this request (a websocket's whole life) says whose and which session.
    session = _SESSION_PATH.match(request.path)
    with logs.bind(user=getattr(principal, "user_id", None), session=int(session[1]) if session else None):
        return await handler(request)


RELAY_API = "/api/v1/relay/"
_SESSION_PATH = re.compile(r"^/(?:api/v1/|ws/|whip/|whep/)?sessions/(\d{1,12})(?:/|$)")


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse cross-site writes.

    Any unsafe request with an ``Origin`` of another site is refused.  Pages'
    form posts must carry the CSRF cookie's value in ``csrf_token``; API calls
    authenticated by the cookie must carry it in ``X-CSRF-Token``.  Bearer-token
    API calls carry no ambient credential and need neither.
    """
    if request.method in UNSAFE:
        origin = request.headers.get("Origin")
        if origin and origin != "null" and not same_origin(request, origin):
            raise Forbidden("cross-site request refused", code="bad_origin")
        if is_api(request):
            if request.get(keys.TOKEN_SOURCE) == "cookie":
                _check_csrf(request, request.headers.get("X-CSRF-Token", ""))
        else:
            form = await request.post()
            value = form.get("csrf_token", "")
            _check_csrf(request, value if isinstance(value, str) else "")
    return await handler(request)


def _check_csrf(request: web.Request, supplied: str) -> None:
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not supplied or not hmac.compare_digest(expected.encode(), supplied.encode()):
        raise Forbidden("the form has expired: reload the page and try again", code="csrf_failed")


def same_origin(request: web.Request, origin: str) -> bool:
    public = request.app[keys.SETTINGS].server.public_url
    allowed = {f"{request.scheme}://{request.host}"}
    if public:
        parts = urlsplit(public)
        allowed.add(f"{parts.scheme}://{parts.netloc}")
    return origin in allowed


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if response.content_type == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)
    return response


MIDDLEWARES = [security_headers, errors, authentication, csrf]
