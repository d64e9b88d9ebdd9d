"""What the views tell the live rooms after changing data: events on the bus, never a direct call."""

from __future__ import annotations

from aiohttp import web

from server import keys
from server.live import events as ev


async def session_changed(app: web.Application, session_id: int) -> None:
    """The session was edited or cancelled: its room (if open) reloads it."""
    await app[keys.EVENTS].publish([ev.make(ev.SessionChanged, session_id=session_id)])


async def signed_out(app: web.Application, user_id: int) -> None:
    """The user's tokens were revoked: their live connections end."""
    await app[keys.EVENTS].publish([ev.make(ev.UserSignedOut, user_id=user_id)])
