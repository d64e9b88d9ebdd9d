"""Sign-in, sign-out, password change and the language switch."""

from __future__ import annotations

from aiohttp import web

from server import keys
from server.auth.passwords import Busy, needs_rehash
from server.auth.throttle import Attempt
from server.errors import TooManyRequests, ValidationFailed
from server.i18n import LOCALES
from server.schemas import LOGIN, PASSWORD_CHANGE
from server.storage.models import User
from server.storage.users import change_password, revoke_token, user_by_username
from server.views import notify
from server.views.clients import client_address, device_of, set_device_cookie
from server.views.auth import (
    LANG_COOKIE,
    clear_login_cookie,
    current,
    is_secure,
    require,
    safe_next,
    set_login_cookie,
)
from server.views.forms import parse_form
from server.views.render import render


async def verify_throttled(request: web.Request, account: str, password_hash: str | None,
                           password: str) -> Attempt | None:
    """Check ``password`` for ``account`` under the sign-in throttle: the attempt if right, None if wrong.

    The attempt is counted as a failure before the hash (concurrent guesses all
    see it), the hash waits for a free slot (PasswordChecks), and no database
    session is held meanwhile. TooManyRequests when the caller must wait.
    """
    throttle = request.app[keys.LOGIN_THROTTLE]
    address = client_address(request)
    device = device_of(request, account)
    source = f"device:{device}" if device else f"address:{address}"
    wait = throttle.wait(account, source, address, device=device is not None)
    if wait:
        raise TooManyRequests("too many failed sign-ins: wait and try again", retry_after=wait)
    attempt = throttle.attempt(account, source, address, device=device is not None)
    try:
        ok = await request.app[keys.PASSWORD_CHECKS].verify(password_hash, password)
    except Busy:
        throttle.withdraw(attempt)  # never checked: not a failure
        raise TooManyRequests("the server is busy signing others in: try again in a moment", retry_after=1,
                              code="busy") from None
    except BaseException:
        throttle.withdraw(attempt)
        raise
    if not ok:
        return None
    return attempt


async def check_credentials(request: web.Request, username: str, password: str) -> User | None:
    """The active user these credentials belong to, counting failures against the throttle."""
    database = request.app[keys.DATABASE]
    async with database.session() as db:
        user = await user_by_username(db, username)
        user_id, stored, active = (user.id, user.password_hash, user.active) if user else (None, None, False)
    # Out of the session: the hash takes tens of milliseconds, the pool's connections are for everyone.
    attempt = await verify_throttled(request, username, stored, password)
    if attempt is None or not active or user_id is None or stored is None:
        return None
    request.app[keys.LOGIN_THROTTLE].succeeded(attempt)
    rehashed = None
    if needs_rehash(stored):
        try:
            rehashed = await request.app[keys.PASSWORD_CHECKS].hash(password)
        except Busy:
            pass  # next time
    async with database.session() as db:
        user = await db.get(User, user_id)
        if user is None or not user.active:
            return None
        if rehashed is not None and user.password_hash == stored:
            user.password_hash = rehashed
        return user


async def login_page(request: web.Request) -> web.StreamResponse:
    if current(request) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return render(request, "login.html", {"next": safe_next(request.query.get("next"))})


async def login_submit(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    target = safe_next(str(posted.get("next", "/")))
    try:
        _, values = await parse_form(request, LOGIN)
    except ValidationFailed:
        return render(request, "login.html", {"next": target, "failed": True}, status=400)
    try:
        user = await check_credentials(request, values["username"], values["password"])
    except TooManyRequests as exc:
        response = render(request, "login.html", {"next": target, "throttled": exc.retry_after,
                                                  "form": {"username": values["username"]}}, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if user is None:
        return render(request, "login.html", {"next": target, "failed": True,
                                              "form": {"username": values["username"]}}, status=401)
    redirect = web.HTTPSeeOther(target)
    set_login_cookie(request, redirect, user)
    set_device_cookie(request, redirect, user.username)
    if user.locale in LOCALES:
        redirect.set_cookie(LANG_COOKIE, user.locale, max_age=365 * 86400, samesite="Lax", path="/")
    raise redirect


async def revoke_current_token(request: web.Request) -> None:
    """Sign the caller's token out: refused from now on, and the live connections it opened end."""
    principal = current(request)
    if principal is None or not principal.token_id or principal.expires_at is None:
        return
    async with request.app[keys.DATABASE].session() as db:
        await revoke_token(db, principal.token_id, principal.user_id, principal.expires_at)
    await notify.signed_out(request.app, principal.user_id, principal.token_id)


async def logout(request: web.Request) -> web.StreamResponse:
    await revoke_current_token(request)
    redirect = web.HTTPSeeOther("/login")
    clear_login_cookie(redirect)
    raise redirect


@require()
async def password_page(request: web.Request) -> web.StreamResponse:
    return render(request, "password.html")


@require()
async def password_submit(request: web.Request) -> web.StreamResponse:
    principal = current(request)
    assert principal is not None
    try:
        raw, values = await parse_form(request, PASSWORD_CHANGE)
    except ValidationFailed as exc:
        return render(request, "password.html", {"errors": exc.by_field()}, status=422)
    database = request.app[keys.DATABASE]
    async with database.session() as db:
        user = await db.get(User, principal.user_id)
        assert user is not None
        stored = user.password_hash
    # The same throttle as signing in: a stolen cookie cannot guess the current password at full speed.
    try:
        attempt = await verify_throttled(request, principal.username, stored, values["current_password"])
    except TooManyRequests as exc:
        response = render(request, "password.html", {"throttled": exc.retry_after}, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if attempt is None:
        return render(request, "password.html", {"errors": {"current_password": "wrong_password"}}, status=422)
    request.app[keys.LOGIN_THROTTLE].succeeded(attempt)
    try:
        new_hash = await request.app[keys.PASSWORD_CHECKS].hash(values["new_password"])
    except Busy:
        response = render(request, "password.html", {"throttled": 1}, status=429)
        response.headers["Retry-After"] = "1"
        return response
    async with database.session() as db:
        user = await db.get(User, principal.user_id)
        assert user is not None
        await change_password(db, user, new_hash)
    await notify.signed_out(request.app, user.id)
    # Every other token of this user is now revoked; this browser gets a new one.
    redirect = web.HTTPSeeOther("/?changed=password")
    set_login_cookie(request, redirect, user)
    raise redirect


async def switch_language(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    locale = str(posted.get("locale", ""))
    redirect = web.HTTPSeeOther(safe_next(str(posted.get("next", "/"))))
    if locale in LOCALES:
        redirect.set_cookie(LANG_COOKIE, locale, max_age=365 * 86400, samesite="Lax", path="/",
                            secure=is_secure(request))
        principal = current(request)
        if principal is not None:
            async with request.app[keys.DATABASE].session() as db:
                user = await db.get(User, principal.user_id)
                if user is not None:
                    user.locale = locale
    raise redirect
