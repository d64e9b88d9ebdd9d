"""How the server builds its peer connections: ICE configuration and the one constructor.

Every ``RTCPeerConnection`` the server makes comes from :func:`new_peer`, so
the rule on which addresses media may use (``ice.addresses``,
``ice.allowed_networks``) lives in one place.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from server.config import IceSettings
from server.media import hooks

LOOPBACK = ("127.0.0.1",)


@dataclass
class IceConfig:
    """What the server's own ICE agents may do (browsers get ``server.media.ice`` instead).

    ``addresses``: the only IP addresses media may use (gathered on where they
    are this machine's, accepted and sent to otherwise); empty: any public
    address.  ``allowed_networks``: remote addresses allowed although they
    point inside (loopback, private, link-local).  ``connect_timeout``:
    seconds an endpoint may take to connect before it is closed.
    """

    servers: list[RTCIceServer] = field(default_factory=list)
    addresses: tuple[str, ...] = ()
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    connect_timeout: float = 20.0

    @classmethod
    def from_settings(cls, settings: IceSettings) -> IceConfig:
        # The server gathers host candidates only: it is reachable where it runs,
        # and a STUN server would make every answer wait for gathering. The STUN
        # and TURN settings are for browsers (server/media/ice.py).
        return cls(addresses=settings.address_list, allowed_networks=settings.allowed_network_list,
                   connect_timeout=settings.connect_timeout_seconds)


def new_peer(ice: IceConfig) -> RTCPeerConnection:
    """A peer connection under ``ice``'s address rule."""
    # An explicit (possibly empty) list: None would make aiortc use a public STUN server.
    # Confined, it has none: a STUN or TURN server is an address not listed.
    servers = [] if ice.addresses else list(ice.servers)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
    hooks.restrict_addresses(ice.addresses, pc, allowed_networks=ice.allowed_networks)
    return pc
