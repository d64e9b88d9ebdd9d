"""Sign-in, sign-out, password change and the language switch."""

from __future__ import annotations

from aiohttp import web

from server import keys
from server.auth.passwords import needs_rehash, verify_password_async
from server.errors import TooManyRequests, ValidationFailed
from server.i18n import LOCALES
from server.schemas import LOGIN, PASSWORD_CHANGE
from server.storage.models import User
from server.storage.users import change_password, user_by_username
from server.views import notify
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


async def check_credentials(request: web.Request, username: str, password: str) -> User | None:
    """The active user these credentials belong to, counting failures against the limits."""
    limiter = request.app[keys.LOGIN_LIMITER]
    ip = request.remote or "unknown"
    wait = limiter.retry_after(ip, username)
    if wait:
        raise TooManyRequests("too many failed sign-ins: wait and try again", retry_after=wait)
    limiter.attempt(ip, username)
    async with request.app[keys.DATABASE].session() as db:
        user = await user_by_username(db, username)
        ok = await verify_password_async(user.password_hash if user else None, password)
        if ok and user is not None and user.active:
            limiter.succeeded(ip, username)
            if needs_rehash(user.password_hash):
                from server.auth.passwords import hash_password_async

                user.password_hash = await hash_password_async(password)
            return user
    return None


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
    if user.locale in LOCALES:
        redirect.set_cookie(LANG_COOKIE, user.locale, max_age=365 * 86400, samesite="Lax", path="/")
    raise redirect


async def logout(request: web.Request) -> web.StreamResponse:
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
    async with request.app[keys.DATABASE].session() as db:
        user = await db.get(User, principal.user_id)
        assert user is not None
        if not await verify_password_async(user.password_hash, values["current_password"]):
            return render(request, "password.html", {"errors": {"current_password": "wrong_password"}}, status=422)
        await change_password(db, user, values["new_password"])
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
