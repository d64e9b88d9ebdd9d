"""Every use of aiortc's and aioice's private internals, in one place.

aiortc==1.16.0 and aioice==0.13.0 are pinned exactly in pyproject.toml;
tests/media/test_hooks.py fails loudly when an upgrade moves any name used
here.  What each hook is for:

* :func:`receive_encoded` — a receiver that hands the depacketized encoded
  frames to its track as ``av.Packet`` instead of decoding them (aiortc's
  receiver always decodes), as soon as a frame's last packet arrives
  (aiortc's jitter buffer waits for the next frame to begin: one frame
  interval, 33 ms at 30 fps, added to every hop).
* :func:`on_keyframe_request` — in pack mode an ``RTCRtpSender`` only sets a
  flag its own encoder would read when a viewer sends PLI/FIR; we need the
  request forwarded to the source.
* :func:`on_receiver_report` — the viewer's receiver reports and REMB about
  a sender's stream, with the octets the sender had sent by then
  (:func:`octets_sent`), for the layer policy.
* :func:`send_pli` — ask a publisher for a keyframe.
* :func:`restrict_addresses` — gather only on named addresses, and ignore,
  never answer and never send to any other (``ice.addresses``; tests and
  benchmarks name 127.0.0.1, see "Networks in tests").
* :func:`answer_as_dtls_server` — answer ``a=setup:passive`` to an ``actpass``
  offer, so publishers whose DTLS certificate is RSA (GStreamer) connect.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import aioice.ice
import av
import ifaddr
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpRrPacket, RtcpSrPacket, unpack_remb_fci
from aiortc.sdp import SessionDescription

log = logging.getLogger(__name__)

# VP8 payload descriptor stripped: bit 0 of the first byte of the frame is the
# inverse key frame flag (RFC 6386 section 9.1).
def is_vp8_keyframe(data: bytes) -> bool:
    return len(data) > 0 and (data[0] & 1) == 0


class _EncodedFrameQueue:
    """Stands in for a receiver's decoder queue.

    The receiver puts ``(codec, JitterFrame)`` here from the event loop; we
    wrap the frame in an ``av.Packet`` and hand it straight to the receiver's
    track.  The receiver's decoder thread still runs, but only ever takes the
    stop marker from this queue, so it never creates a decoder and still ends
    the track when the receiver stops.
    """

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self._receiver = receiver
        self._stop: queue.Queue[None] = queue.Queue()

    def put(self, item: Any) -> None:
        if item is None:
            self._stop.put(None)
            return
        codec, frame = item
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = Fraction(1, codec.clockRate)
        if codec.name == "VP8":
            packet.is_keyframe = is_vp8_keyframe(frame.data)
        self._receiver._track._queue.put_nowait(packet)

    def get(self, block: bool = True, timeout: float | None = None) -> None:
        return self._stop.get(block, timeout)


class MarkerJitterBuffer(JitterBuffer):
    """A video jitter buffer that releases a frame at its marker packet.

    aiortc's buffer notices a frame is complete only when a packet of the next
    frame arrives. The marker bit (RFC 7741: last packet of the frame) says it
    earlier; a frame whose marker was lost is still released the old way.
    """

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        packets = []
        timestamp = None
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                # The previous frame ended without its marker: release it now.
                self.remove(count)
                return JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
        return None


def receive_encoded(receiver: RTCRtpReceiver) -> None:
    """Make ``receiver``'s track yield encoded ``av.Packet``s (pts in RTP clock units).

    Call it from the peer connection's ``track`` event, before the connection
    starts receiving.
    """
    if receiver._RTCRtpReceiver__decoder_thread is not None:
        raise RuntimeError("receive_encoded() must be installed before the receiver starts")
    receiver._RTCRtpReceiver__decoder_queue = _EncodedFrameQueue(receiver)
    if receiver._RTCRtpReceiver__kind == "video":
        receiver._RTCRtpReceiver__jitter_buffer = MarkerJitterBuffer(capacity=512, is_video=True)


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote viewer asks ``sender`` for a keyframe (PLI or FIR)."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


@dataclass(frozen=True)
class ReceiverReport:
    """One RTCP receiver report block about a sender's stream, and what the sender had sent by then."""

    fraction_lost: float  # 0..1, since the receiver's previous report
    packets_lost: int  # cumulative, as the receiver counts it
    highest_sequence: int  # extended highest sequence number received
    octets_sent: int  # media payload octets the sender had sent when the report arrived


class ReceiverReports(Protocol):
    """What :func:`on_receiver_report` tells about one viewer's view of a sender's stream."""

    def report(self, report: ReceiverReport) -> None:
        """One receiver report block about the stream."""

    def bandwidth(self, bits_per_second: int, octets_sent: int) -> None:
        """One REMB estimate that names the stream, and the sender's media octets so far."""


def octets_sent(sender: RTCRtpSender) -> int:
    """Media payload octets ``sender`` has sent (what its sender reports count; no RTX, no headers)."""
    return sender._RTCRtpSender__octet_count  # type: ignore[attr-defined,no-any-return]


def on_receiver_report(sender: RTCRtpSender, listener: ReceiverReports) -> None:
    """Tell ``listener`` what the remote viewer reports about ``sender``'s stream."""
    handle = sender._handle_rtcp_packet

    async def handle_and_report(packet: Any) -> None:
        await handle(packet)
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for block in packet.reports:
                if block.ssrc == sender._ssrc:
                    listener.report(ReceiverReport(block.fraction_lost / 256, block.packets_lost,
                                                   block.highest_sequence, octets_sent(sender)))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if sender._ssrc in ssrcs:
                listener.bandwidth(bitrate, octets_sent(sender))

    sender._handle_rtcp_packet = handle_and_report  # type: ignore[method-assign]


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send a Picture Loss Indication to the publisher behind ``receiver``."""
    await receiver._send_rtcp_pli(media_ssrc)


def remote_media_ssrc(pc: RTCPeerConnection, kind: str) -> int | None:
    """The SSRC the remote side sends for ``kind`` (its first ``a=ssrc``; a second is RTX)."""
    if pc.remoteDescription is None:
        return None
    description = SessionDescription.parse(pc.remoteDescription.sdp)
    for media in description.media:
        if media.kind == kind and media.ssrc:
            return media.ssrc[0].ssrc
    return None


def prefer_vp8_opus(transceiver: RTCRtpTransceiver) -> None:
    """Negotiate only VP8 (with RTX) or Opus: forwarded packets are VP8 and Opus.

    On the answering side this must run before ``setRemoteDescription``.
    """
    wanted = ("video/vp8", "video/rtx") if transceiver.kind == "video" else ("audio/opus",)
    codecs = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    transceiver.setCodecPreferences([codec for codec in codecs if codec.mimeType.lower() in wanted])


def answer_as_dtls_server(pc: RTCPeerConnection) -> None:
    """After ``setRemoteDescription(offer)``: answer ``a=setup:passive`` when the offer allows it.

    aiortc answers ``active`` (DTLS client) by default and then offers only
    ECDSA suites, which RSA-certificate publishers such as GStreamer's
    webrtcbin refuse ("no shared cipher").
    """
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is not None and transport._role == "auto":
            transport._set_role("server")


class AddressRule:
    """The only IP addresses an ICE agent may use (``ice.addresses``).

    It gathers host candidates on the listed addresses that belong to this
    machine, and it ignores remote candidates, drops incoming checks and
    refuses to send to any address not listed.  aioice skips 127.0.0.1 when
    it gathers by itself; listed, 127.0.0.1 is gathered like any other.
    """

    def __init__(self, addresses: Iterable[str]) -> None:
        self.addresses = tuple(dict.fromkeys(str(ipaddress.ip_address(a)) for a in addresses))
        if not self.addresses:
            raise ValueError("an address rule names at least one address")
        self._allowed = frozenset(self.addresses)
        # host -> allowed.  The send guard asks for every packet: parsing the
        # address each time cost 8 % of the server's CPU in the fan-out
        # benchmark.  Few distinct hosts ever come by; the bound is a backstop.
        self._verdicts: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        verdict = self._verdicts.get(host)
        if verdict is None:
            try:
                verdict = str(ipaddress.ip_address(host)) in self._allowed
            except ValueError:
                # A hostname (an mDNS ".local" name): never resolved, never used.
                verdict = False
            if len(self._verdicts) > 1024:
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict

    def local_addresses(self) -> list[str]:
        """The listed addresses this machine has (where host candidates are gathered)."""
        own = {str(ipaddress.ip_address(ip.ip if isinstance(ip.ip, str) else ip.ip[0]))
               for adapter in ifaddr.get_adapters() for ip in adapter.ips}
        return [a for a in self.addresses if a in own or ipaddress.ip_address(a).is_loopback]


def restrict_addresses(addresses: Iterable[str], pc: RTCPeerConnection | None = None) -> AddressRule:
    """Confine ICE to ``addresses``: for ``pc`` only, or (no ``pc``) for every connection of the process.

    The server confines each of its peer connections (``server.media.peer``);
    tests and benchmarks also confine the whole process, so that a client
    they forget to confine still never leaves the addresses they name.  A
    connection's own rule wins over the process's.  Call it on ``pc`` before
    any transceiver is added.
    """
    rule = AddressRule(addresses)
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
        if rule is not None:
            addresses = rule.local_addresses()
        return await gather(self, component, addresses, timeout)

    add_remote = connection.add_remote_candidate

    async def add_remote_confined(self: Any, candidate: Any) -> None:
        rule = self._bridgecast_rule
        if candidate is not None and rule is not None and not rule.allows(candidate.host):
            log.debug("ignoring remote candidate %s: not in ice.addresses", candidate.host)
            return
        await add_remote(self, candidate)

    request_received = connection.request_received

    def request_received_confined(self: Any, message: Any, addr: tuple[str, int], protocol: Any) -> None:
        # Not even a peer-reflexive candidate is learned from an address not listed.
        rule = self._bridgecast_rule
        if rule is None or rule.allows(addr[0]):
            request_received(self, message, addr, protocol)

    connection.get_component_candidates = gather_confined  # type: ignore[method-assign]
    connection.add_remote_candidate = add_remote_confined  # type: ignore[method-assign]
    connection.request_received = request_received_confined  # type: ignore[method-assign]

    # The backstop: whatever the agent decided, nothing goes to an address not listed.
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
