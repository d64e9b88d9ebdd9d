"""Which IP addresses media may use: the rule every ICE agent of the server is put under.

The rule itself is plain Python; ``server.media.hooks.restrict_addresses``
puts an agent under one (aioice's private internals are there).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import ifaddr

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """An address of the internet at large: not loopback, private, link-local (the cloud
    metadata address 169.254.169.254 among them), shared, reserved, multicast or unspecified."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip.is_global and not ip.is_multicast


class AddressRule:
    """Which IP addresses an ICE agent may use: every peer connection of the server has one.

    Confined (``ice.addresses`` lists some), it gathers host candidates only
    on the listed addresses that belong to this machine, and ignores remote
    candidates, drops incoming checks and refuses to send to any address not
    listed.  aioice skips 127.0.0.1 when it gathers by itself; listed,
    127.0.0.1 is gathered like any other.

    Unconfined (production), it gathers everywhere but refuses remote
    addresses that point inside (:func:`is_public` is false), so that a
    member's offer cannot make the server probe 127.0.0.1, the private
    network or the metadata service.  ``allowed_networks`` (``ice.allowed_networks``)
    are allowed in both modes: a closed installation's hall network.
    """

    def __init__(self, addresses: Iterable[str] = (), allowed_networks: Iterable[Network] = ()) -> None:
        self.addresses = tuple(dict.fromkeys(str(ipaddress.ip_address(a)) for a in addresses))
        self.networks = tuple(allowed_networks)
        self._allowed = frozenset(self.addresses)
        # host -> allowed.  The send guard asks for every packet: parsing the
        # address each time cost 8 % of the server's CPU in the fan-out
        # benchmark.  Few distinct hosts ever come by; the bound is a backstop.
        self._verdicts: dict[str, bool] = {}

    @property
    def confined(self) -> bool:
        return bool(self.addresses)

    def allows(self, host: str) -> bool:
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = self._verdict(host)
            if len(self._verdicts) > 1024:
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict

    def _verdict(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            # A hostname. An mDNS ".local" name is a browser's private address: aioice would
            # resolve it on the local network, so it is used only where private networks are
            # allowed (and the send guard still checks what it resolves to). Nothing else.
            return not self.confined and bool(self.networks) and host.endswith(".local")
        if self.confined and str(ip) in self._allowed:
            return True
        if any(ip.version == network.version and ip in network for network in self.networks):
            return True
        return not self.confined and is_public(ip)

    def local_addresses(self, default: list[str]) -> list[str]:
        """Where host candidates are gathered: the listed addresses this machine has, or ``default``."""
        if not self.confined:
            return default
        own = {str(ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0]))
               for adapter in ifaddr.get_adapters() for ip in adapter.ips}
        return [a for a in self.addresses if a in own or ipaddress.ip_address(a).is_loopback]
