"""Where a viewer takes the program: here, or at a relay (issue 14).

The hub's pages keep their websocket at the hub (presence, the floor,
questions) and take their media where the hub sends them. An ``offer`` for
the ``view`` peer connection is answered with ``redirect`` (the relay's WHEP
URL, with a ticket) when a relay serves the viewer; WHEP's ``POST`` with a
307. What decides is a :class:`ViewDirections`: the cascade's
:class:`~server.signaling.cascade.RelayWatch`, or nothing (a hub alone serves
everyone itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from server.auth.principal import Principal

if TYPE_CHECKING:
    from server.signaling.room import LiveRoom


@dataclass(frozen=True)
class Direction:
    node: str  # the relay's name
    url: str  # its WHEP URL for the session, with a ticket that stands for the viewer's token


class ViewDirections(Protocol):
    async def direct(self, room: LiveRoom, principal: Principal) -> Direction | None:
        """The relay that should serve this viewer's program now, or None: this server does."""
