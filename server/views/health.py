"""Liveness for load balancers and monitoring: the database answers."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text

from server import keys


async def healthz(request: web.Request) -> web.StreamResponse:
    try:
        async with request.app[keys.DATABASE].session() as db:
            await db.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means "not healthy"
        return web.json_response({"status": "error", "database": type(exc).__name__}, status=503)
    return web.json_response({"status": "ok"})
