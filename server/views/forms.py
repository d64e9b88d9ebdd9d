"""Reading forms and query strings into the shared schemas."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server import keys
from server.errors import AppError, PayloadTooLarge, UnsupportedMediaType
from server.validation import Schema, digits


async def form_values(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The posted form as a plain dict; list fields keep every value."""
    posted = await request.post()
    values: dict[str, Any] = {}
    list_fields = {f.name for f in schema.fields if f.kind == "integer_list"}
    for name in set(posted.keys()):
        if name in list_fields:
            values[name] = [v for v in posted.getall(name) if isinstance(v, str)]
        else:
            value = posted.get(name)
            values[name] = value if isinstance(value, str) else ""
    return values


async def parse_form(request: web.Request, schema: Schema) -> tuple[dict[str, Any], dict[str, Any]]:
    """(raw values for re-display, parsed values); ValidationFailed propagates."""
    raw = await form_values(request, schema)
    parsed = schema.parse(raw, forms=True, local_zone=request.app[keys.SETTINGS].zone)
    return raw, parsed


def int_arg(request: web.Request, name: str, default: int, *, minimum: int = 0, maximum: int = 10**9) -> int:
    value = digits(request.query.get(name, ""), maximum=max(maximum, 10**9))
    return default if value is None else max(minimum, min(maximum, value))


def path_id(request: web.Request, name: str = "id") -> int:
    value = digits(request.match_info.get(name, ""))
    if value is None:
        raise web.HTTPNotFound()
    return value


async def read_body(request: web.Request, limit: int, what: str = "the body") -> bytes:
    """The whole request body, refused with 413 past ``limit`` bytes.

    ``request.content.read(n)`` returns only what has arrived so far, so a body
    split over several TCP segments must be read to its end.
    """
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"{what} is too large")
    raw = b""
    while chunk := await request.content.read(limit + 1 - len(raw)):
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"{what} is too large")
    return raw


# An offer of a dozen media sections with every candidate is a few kilobytes: far below this.
MAX_SDP_BYTES = 200_000


async def read_sdp(request: web.Request) -> str:
    """An SDP offer (WHIP, WHEP, a relay's uplink): ``application/sdp``, UTF-8, at most MAX_SDP_BYTES."""
    if request.content_type != "application/sdp":
        raise UnsupportedMediaType("send the offer as application/sdp")
    raw = await read_body(request, MAX_SDP_BYTES, "the offer")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AppError("the offer is not UTF-8 text", code="bad_sdp") from None
