"""Health for load balancers and monitoring.

``/healthz``: the process serves and its database answers (kept as it was).
``/readyz``: ready for traffic — 200 only when every dependency answers
within a short time (the database; Redis too once relays configure it),
503 naming the one that is down otherwise. Attendance's write queue is
shown too: while the database is away, joins wait in the local spool.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import text

from server import keys

# A dependency that takes longer than this to answer counts as down.
CHECK_TIMEOUT = 2.0


async def _database_ok(request: web.Request) -> tuple[bool, str]:
    async def ping() -> None:
        async with request.app[keys.DATABASE].session() as db:
            await db.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(ping(), CHECK_TIMEOUT)
    except (TimeoutError, asyncio.TimeoutError):
        return False, "timeout"
    except Exception as exc:  # any database failure means "not ready"
        return False, type(exc).__name__
    return True, "ok"


async def healthz(request: web.Request) -> web.StreamResponse:
    ok, detail = await _database_ok(request)
    if not ok:
        return web.json_response({"status": "error", "database": detail}, status=503)
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    ok, detail = await _database_ok(request)
    presence = request.app.get(keys.PRESENCE)
    if ok and presence is not None and not presence.healthy:
        # It answers reads but refuses attendance's writes (e.g. a SQLite file locked by another process).
        ok, detail = False, "writes failing"
    body: dict[str, object] = {"status": "ok" if ok else "unavailable", "database": "ok" if ok else "down"}
    if not ok:
        body["down"] = ["database"]
        body["database_error"] = detail
    if presence is not None:
        body["presence"] = {"queued": presence.queued, "spooled": presence.spooled,
                            "writing": presence.healthy}
    return web.json_response(body, status=200 if ok else 503)
