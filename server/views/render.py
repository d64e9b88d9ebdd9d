"""Page rendering: Jinja2 templates with the request's user, locale and CSRF token."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from server import keys
from server.collation import sorted_by_name, vietnamese_key
from server.i18n import LOCALE_NAMES, LOCALES, Translator, pick_locale
from server.views.auth import LANG_COOKIE, csrf_token, current

TEMPLATE_DIR = Path(__file__).resolve().parent.parent.parent / "web" / "templates"


def create_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Lists in Vietnamese alphabetical order, the same as the storage's (server/collation.py).
    env.filters["by_name"] = sorted_by_name
    env.filters["collate"] = lambda texts: sorted(texts, key=vietnamese_key)
    env.filters["hms"] = hms
    return env


def hms(seconds: int | float | None) -> str:
    """A duration as H:MM:SS (exact to the second, as attendance is counted)."""
    total = max(0, int(seconds or 0))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def locale_of(request: web.Request) -> str:
    settings = request.app[keys.SETTINGS]
    return pick_locale(request.cookies.get(LANG_COOKIE), settings.i18n.default_locale)


def translator(request: web.Request) -> Translator:
    found = request.get(keys.TRANSLATOR)
    if not isinstance(found, Translator):
        found = request.app[keys.CATALOGUES].translator(locale_of(request))
        request[keys.TRANSLATOR] = found
    return found


def format_datetime(request: web.Request, value: datetime | None, with_date: bool = True) -> str:
    if value is None:
        return "—"
    local = value.astimezone(request.app[keys.SETTINGS].zone)
    return local.strftime("%d/%m/%Y %H:%M" if with_date else "%H:%M")


def input_datetime(request: web.Request, value: datetime | None) -> str:
    """A value for <input type="datetime-local"> in the configured zone."""
    if value is None:
        return ""
    return value.astimezone(request.app[keys.SETTINGS].zone).strftime("%Y-%m-%dT%H:%M")


def static_url(request: web.Request, path: str) -> str:
    """A static file's URL with a content hash, so browsers drop stale copies after an upgrade."""
    return str(request.app.router["static"].url_for(filename=path, append_version=True))


def render(request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200) -> web.Response:
    env = request.app[keys.TEMPLATES]
    _ = translator(request)
    values: dict[str, Any] = {
        "_": _,
        "user": current(request),
        "locale": _.locale,
        "locales": [(code, LOCALE_NAMES[code]) for code in LOCALES],
        "csrf_token": csrf_token(request),
        "request_path": request.path_qs,
        "nav": request.path,
        "fmt": lambda value, with_date=True: format_datetime(request, value, with_date),
        "input_dt": lambda value: input_datetime(request, value),
        "timezone": request.app[keys.SETTINGS].i18n.timezone,
        "static": lambda path: static_url(request, path),
        "errors": {},
        "form": {},
    }
    values.update(context or {})
    html = env.get_template(template).render(values)
    response = web.Response(text=html, content_type="text/html", charset="utf-8", status=status)
    response.headers["Content-Language"] = _.locale
    response.headers["Cache-Control"] = "no-store"
    return response
