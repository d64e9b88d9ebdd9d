"""The address rule inside aioice: gather, accept and send only where a connection's rule allows."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import aioice.ice
from aiortc import RTCPeerConnection

from server.media.addresses import AddressRule, Network

log = logging.getLogger(__name__)

def restrict_addresses(addresses: Iterable[str], pc: RTCPeerConnection | None = None, *,
                       allowed_networks: Iterable[Network] = ()) -> AddressRule:
    """Put ICE under an :class:`AddressRule`: for ``pc`` only, or (no ``pc``) for every connection of the process.

    The server puts each of its peer connections under one (``server.media.peer``);
    tests and benchmarks also confine the whole process, so that a client
    they forget to confine still never leaves the addresses they name.  A
    connection's own rule wins over the process's.  Call it on ``pc`` before
    any transceiver is added.
    """
    rule = AddressRule(addresses, allowed_networks)
    if pc is None and not rule.confined:
        raise ValueError("a rule for the whole process names at least one address")
    _install_address_guards()
    if pc is None:
        aioice.ice.Connection._bridgecast_rule = rule
        return rule
    create = pc._RTCPeerConnection__createDtlsTransport  # type: ignore[attr-defined]

    def create_confined() -> Any:
        dtls = create()
        dtls.transport.iceGatherer._connection._bridgecast_rule = rule
        return dtls

    pc._RTCPeerConnection__createDtlsTransport = create_confined  # type: ignore[attr-defined]
    return rule


def address_rule(connection: aioice.ice.Connection) -> AddressRule | None:
    """The rule an ICE connection is under (its own, the process's, or none)."""
    return getattr(connection, "_bridgecast_rule", None)


def _install_address_guards() -> None:
    """Once per process: aioice asks each connection's rule before it gathers, accepts or sends."""
    connection = aioice.ice.Connection
    if "_bridgecast_rule" in vars(connection):
        return
    connection._bridgecast_rule = None  # type: ignore[attr-defined]  # unrestricted unless told

    gather = connection.get_component_candidates

    async def gather_confined(self: Any, component: int, addresses: list[str], timeout: int = 5) -> Any:
        rule = self._bridgecast_rule
        # A relay-only connection gathers no host candidate, confined or not (RFC 9429 section 3.5.3).
        if rule is not None and self._transport_policy is not aioice.TransportPolicy.RELAY:
            addresses = rule.local_addresses(addresses)
        return await gather(self, component, addresses, timeout)

    add_remote = connection.add_remote_candidate

    async def add_remote_confined(self: Any, candidate: Any) -> None:
        rule = self._bridgecast_rule
        if candidate is not None and rule is not None and not rule.allows(candidate.host):
            log.debug("refused remote candidate %s: not an address media may use (ice.addresses, "
                      "ice.allowed_networks)", candidate.host)
            return
        await add_remote(self, candidate)

    request_received = connection.request_received

    def request_received_confined(self: Any, message: Any, addr: tuple[str, int], protocol: Any) -> None:
        # Not even a peer-reflexive candidate is learned from an address not allowed.
        rule = self._bridgecast_rule
        if rule is None or rule.allows(addr[0]):
            request_received(self, message, addr, protocol)

    connection.get_component_candidates = gather_confined  # type: ignore[method-assign]
    connection.add_remote_candidate = add_remote_confined  # type: ignore[method-assign]
    connection.request_received = request_received_confined  # type: ignore[method-assign]

    # The backstop: whatever the agent decided, nothing goes to an address not allowed.
    send_stun = aioice.ice.StunProtocol.send_stun
    send_data = aioice.ice.StunProtocol.send_data

    def send_stun_confined(self: Any, message: Any, addr: tuple[str, int]) -> None:
        rule = self.receiver._bridgecast_rule
        if rule is None or rule.allows(addr[0]):
            send_stun(self, message, addr)

    async def send_data_confined(self: Any, data: bytes, addr: tuple[str, int]) -> None:
        rule = self.receiver._bridgecast_rule
        if rule is None or rule.allows(addr[0]):
            await send_data(self, data, addr)

    aioice.ice.StunProtocol.send_stun = send_stun_confined  # type: ignore[method-assign]
    aioice.ice.StunProtocol.send_data = send_data_confined  # type: ignore[method-assign]
