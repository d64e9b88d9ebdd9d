"""How the server builds its peer connections: ICE configuration and the one constructor.

Every ``RTCPeerConnection`` the server makes comes from :func:`new_peer`, so
the rule on which addresses media may use lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from server.config import IceSettings
from server.media import hooks


@dataclass
class IceConfig:
    """What the server's own ICE agents may do (browsers get ``server.media.ice`` instead)."""

    servers: list[RTCIceServer] = field(default_factory=list)
    loopback_only: bool = False

    @classmethod
    def from_settings(cls, settings: IceSettings) -> IceConfig:
        # The server gathers host candidates only: it is reachable where it runs,
        # and a STUN server would make every answer wait for gathering. The STUN
        # and TURN settings are for browsers (server/media/ice.py).
        return cls(loopback_only=settings.loopback_only)


def new_peer(ice: IceConfig) -> RTCPeerConnection:
    """A peer connection under ``ice``'s address rules."""
    if ice.loopback_only:
        hooks.restrict_to_loopback()
    # An explicit (possibly empty) list: None would make aiortc use a public STUN server.
    return RTCPeerConnection(RTCConfiguration(iceServers=list(ice.servers)))
