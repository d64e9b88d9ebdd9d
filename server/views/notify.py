"""What the views tell the live rooms after changing data: events on the bus, never a direct call."""

from __future__ import annotations

from aiohttp import web

from server import keys
from server.live import events as ev
from server.storage.models import User


async def session_changed(app: web.Application, session_id: int) -> None:
    """The session was edited or cancelled: its room (if open) reloads it."""
    await app[keys.EVENTS].publish([ev.make(ev.SessionChanged, session_id=session_id)])


async def signed_out(app: web.Application, user_id: int, token_id: str | None = None) -> None:
    """The user's tokens were revoked (or one of them, ``token_id``): the live connections with them end."""
    await app[keys.EVENTS].publish([ev.make(ev.UserSignedOut, user_id=user_id, token_id=token_id)])


async def user_updated(app: web.Application, before: tuple[int, int | None, int | None], user: User) -> None:
    """After an administrator's change: ``before`` is (token_version, unit_id, bridge_point_id) as it was.

    Revoked tokens end the user's live connections; a move to another bridge
    point or unit makes them join afresh, in the seat they now have.
    """
    if user.token_version != before[0]:
        await signed_out(app, user.id)
    elif (user.unit_id, user.bridge_point_id) != before[1:]:
        await app[keys.EVENTS].publish([ev.make(ev.UserChanged, user_id=user.id)])


def account_state(user: User) -> tuple[int, int | None, int | None]:
    """What :func:`user_updated` compares."""
    return user.token_version, user.unit_id, user.bridge_point_id
