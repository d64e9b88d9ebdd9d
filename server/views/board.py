"""The roll-call board outside the console: ``GET /api/v1/sessions/{id}/roll-call`` and its page.

The session's speaker and administrators see every invited point, connected
or not, with its grade, figures, reconnects, last connection test and its
sparkline samples, points needing attention first; and the session's
alarms, newest first. While the session's room is open on this server the
figures are live; otherwise every point is ``absent`` with its last test.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from server import keys
from server.auth.roles import Role
from server.errors import Forbidden
from server.live.events import hall_key
from server.live.quality import ATTENTION, PointQuality
from server.live.roles import may_host
from server.signaling import outgoing
from server.storage import sessions as session_store
from server.views.auth import current, require
from server.views.forms import path_id
from server.views.render import render


async def _board(request: web.Request) -> dict[str, Any]:
    principal = current(request)
    assert principal is not None
    session_id = path_id(request)
    if principal.session_scope not in (None, session_id):
        raise Forbidden("this token is for another session")
    async with request.app[keys.DATABASE].session() as db:
        session = await session_store.visible_session(db, principal, session_id)
        points = await session_store.points_by_id(db, session.invited_point_ids)
    if not may_host(principal, session):
        raise Forbidden("only the session's speaker or an administrator sees the roll call")
    store = request.app[keys.QUALITY]
    room = request.app[keys.LIVE].existing(session_id)
    alarms = await store.alarms(session_id)
    served: dict[str, str] = {}
    relays: list[dict[str, Any]] = []
    if room is not None and not room.closed:
        served = {r.key: r.node for r in room.resources.all() if r.node is not None}
        uplinks = room.uplinks()
        for info in sorted((await request.app[keys.RELAY_WATCH].alive()).values(), key=lambda n: n.name):
            if session_id in info.sessions or info.name in uplinks:
                relays.append({"name": info.name, "unit_id": info.unit_id, "url": info.url, "parent": info.parent,
                               "uplinks": uplinks.get(info.name, 0),
                               "carrying": session_id in info.sessions, "viewers": info.viewers,
                               "cpu_percent": info.health.get("cpu_percent"), "rss_mib": info.health.get("rss_mib"),
                               "beat_age_seconds": round(max(0.0, time.time() - info.beat_at), 1)})
    if room is not None and not room.closed:
        live = room.session
        quality = {p.point_id: p for p in live.quality_points()}
        states = {entry.point_id: entry for entry in live.roll_call()}
        prechecks = live.prechecks
    else:
        quality, states = {}, {}
        prechecks = {event.point_id: event for event in await store.prechecks(session_id)}
    rows = []
    for point_id in session.invited_point_ids:
        point = points.get(point_id)
        if point is None:
            continue
        entry = quality.get(point_id) or PointQuality(point_id)
        row = outgoing.quality_point(entry, point.name, prechecks.get(point_id))
        state = states.get(point_id)
        row["roll_call"] = state.state if state is not None else "not_connected"
        # Whose media reaches it: a relay's name, or the hub ("hub" also before it connects).
        row["served_by"] = served.get(hall_key(point_id), "hub")
        rows.append((entry, row))
    rows.sort(key=lambda item: (item[0].alarm is None, ATTENTION[item[0].grade], item[1]["name"]))
    thresholds = request.app[keys.SETTINGS].quality
    return {"session_id": session.id, "title": session.title, "status": session.status.value,
            "thresholds": {"rtt_ms": [thresholds.rtt_amber_ms, thresholds.rtt_red_ms],
                           "loss_pct": [thresholds.loss_amber_pct, thresholds.loss_red_pct],
                           "jitter_ms": [thresholds.jitter_amber_ms, thresholds.jitter_red_ms],
                           "freezes_per_min": [thresholds.freezes_amber, thresholds.freezes_red]},
            "points": [row for _, row in rows], "alarms": alarms, "relays": relays}


@require(Role.ADMIN, Role.SPEAKER, scoped=True)
async def roll_call(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _board(request))


@require(Role.ADMIN, Role.SPEAKER)
async def board_page(request: web.Request) -> web.StreamResponse:
    """The operator-of-operators view: the board alone, refreshed every two seconds, with its alarms."""
    board = await _board(request)
    return render(request, "board.html", {"board": board, "session_id": board["session_id"],
                                          "title": board["title"]})
