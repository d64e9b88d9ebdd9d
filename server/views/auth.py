"""Authentication for every way in: pages, the JSON API, websockets, WHIP/WHEP.

:func:`principal_from_token` is the one verify-to-claims path: signature and
pinned algorithm (``server.auth.tokens``), then revocation (the user's token
version and active flag, from the database).  :func:`authenticate` applies it
to a request the same way for HTTP and websockets.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from server import keys
from server.auth.principal import Principal
from server.auth.tokens import Claims, TokenError, issue_token, verify_token
from server.errors import Forbidden, Unauthorized
from server.auth.roles import Role
from server.storage.models import RevokedToken, User

TOKEN_COOKIE = "bc_token"
CSRF_COOKIE = "bc_csrf"
LANG_COOKIE = "bc_lang"

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[web.StreamResponse]])


async def principal_from_token(app: web.Application, token: str) -> Principal:
    """Verify a token and check it against the user's current state."""
    claims: Claims = verify_token(app[keys.JWT_SECRET], token)
    async with app[keys.DATABASE].session() as db:
        user = await db.get(User, claims.user_id)
        # A signed-out token (its id on the revocation list until it would have expired anyway).
        revoked = bool(claims.token_id) and await db.get(RevokedToken, claims.token_id) is not None
    if user is None or not user.active:
        raise TokenError("token_revoked", "the account is unknown or inactive")
    if user.token_version != claims.token_version:
        raise TokenError("token_revoked", "the token has been revoked")
    if revoked:
        raise TokenError("token_revoked", "the token was signed out")
    return principal_of(user, session_scope=claims.session_id, token_id=claims.token_id,
                        expires_at=claims.connection_expires_at)


def principal_of(user: User, session_scope: int | None = None, *, token_id: str = "",
                 expires_at: int | None = None) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.username,
        full_name=user.full_name,
        role=user.role,
        unit_id=user.unit_id,
        bridge_point_id=user.bridge_point_id,
        token_version=user.token_version,
        session_scope=session_scope,
        token_id=token_id,
        expires_at=expires_at,
    )


def bearer_token(request: web.BaseRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def authenticate(request: web.Request) -> Principal | None:
    """The caller, from a Bearer header or the session cookie; None if anonymous.

    A Bearer token that fails is an error (the client meant to authenticate);
    a stale cookie just makes the caller anonymous.
    """
    token = bearer_token(request)
    if token is not None:
        request[keys.TOKEN_SOURCE] = "bearer"
        try:
            return await principal_from_token(request.app, token)
        except TokenError as exc:
            raise Unauthorized(str(exc), code=exc.code) from None
    token = request.cookies.get(TOKEN_COOKIE)
    if token:
        request[keys.TOKEN_SOURCE] = "cookie"
        try:
            return await principal_from_token(request.app, token)
        except TokenError:
            request[keys.CLEAR_TOKEN_COOKIE] = True
    return None


def current(request: web.Request) -> Principal | None:
    principal = request.get(keys.PRINCIPAL)
    return principal if isinstance(principal, Principal) else None


def require(*roles: Role, scoped: bool = False) -> Callable[[Handler], Handler]:
    """Refuse callers without one of ``roles`` (any signed-in user if none given).

    Anonymous: 401 for the API, a redirect to the login page for pages.
    Wrong role: 403.  A token scoped to one session is refused unless the
    handler says ``scoped=True`` (and then checks the session itself).
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            principal = current(request)
            if principal is None:
                if is_api(request):
                    raise Unauthorized("sign in first")
                raise web.HTTPSeeOther(f"/login?next={_quote(request.path_qs)}")
            if roles and principal.role not in roles:
                raise Forbidden("your role does not allow this")
            if principal.session_scope is not None and not scoped:
                raise Forbidden("this token is limited to one session")
            return await handler(request)

        wrapper.required_roles = roles  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def is_api(request: web.BaseRequest) -> bool:
    """Machine endpoints: errors as JSON, 401 instead of the login page."""
    return request.path.startswith(("/api/", "/whip/", "/whep/", "/ws/"))


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def safe_next(target: str | None) -> str:
    """Only same-site paths may be a post-login destination (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    # Control characters are dropped by URL parsers ("/\t/evil" becomes "//evil").
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return "/"
    return target


def is_secure(request: web.BaseRequest) -> bool:
    public = request.app[keys.SETTINGS].server.public_url
    return request.secure or public.startswith("https://")


def set_login_cookie(request: web.Request, response: web.StreamResponse, user: User) -> None:
    settings = request.app[keys.SETTINGS]
    token = issue_token(request.app[keys.JWT_SECRET], user.id, user.token_version, settings.auth.token_ttl_seconds)
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=settings.auth.token_ttl_seconds,
        httponly=True,
        samesite="Lax",
        secure=is_secure(request),
        path="/",
    )


def clear_login_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(TOKEN_COOKIE, path="/")


def csrf_token(request: web.Request) -> str:
    """This browser's CSRF token (double-submit: cookie and form field must agree)."""
    token = request.get(keys.CSRF_TOKEN) or request.cookies.get(CSRF_COOKIE)
    if not token or len(token) != 43:
        token = secrets.token_urlsafe(32)
        request[keys.NEW_CSRF_TOKEN] = token
    request[keys.CSRF_TOKEN] = token
    return token


def apply_cookies(request: web.Request, response: web.StreamResponse) -> None:
    """Cookies decided while handling the request, set on whatever response goes out."""
    new_csrf = request.get(keys.NEW_CSRF_TOKEN)
    if new_csrf:
        response.set_cookie(CSRF_COOKIE, new_csrf, httponly=False, samesite="Strict", secure=is_secure(request),
                            path="/", max_age=60 * 60 * 24 * 30)
    if request.get(keys.CLEAR_TOKEN_COOKIE):
        clear_login_cookie(response)
