"""Health for load balancers and monitoring.

``/healthz``: the process is alive and its event loop runs (200, always,
while it can answer): a liveness probe that restarts it when it is not.
``/readyz``: ready for traffic — 200 only when every dependency answers
within a short time (the database; Redis too once relays configure it),
503 naming the one that is down otherwise. Attendance's write queue is
shown too: while the database is away, joins wait in the local spool. A
database outage must not restart a server whose lecture goes on (issue 12):
that is why the database is the readiness probe's, not the liveness one's.
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
    telemetry = request.app.get(keys.TELEMETRY)
    body: dict[str, object] = {"status": "ok"}
    if telemetry is not None:
        body["event_loop_lag_ms"] = round(telemetry.last_lag * 1000, 1)
    return web.json_response(body)


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
