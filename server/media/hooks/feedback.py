"""What a viewer's RTCP says to its sender (PLI/FIR, receiver reports, REMB), and what aiortc counts of a sender."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpRrPacket, RtcpSrPacket, unpack_remb_fci



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
    jitter: int = 0  # interarrival jitter, in the stream's RTP clock units


class ReceiverReports(Protocol):
    """What :func:`on_receiver_report` tells about one viewer's view of a sender's stream."""

    def report(self, report: ReceiverReport) -> None:
        """One receiver report block about the stream."""

    def bandwidth(self, bits_per_second: int, octets_sent: int) -> None:
        """One REMB estimate that names the stream, and the sender's media octets so far."""


def octets_sent(sender: RTCRtpSender) -> int:
    """Media payload octets ``sender`` has sent (what its sender reports count; no RTX, no headers)."""
    return sender._RTCRtpSender__octet_count  # type: ignore[attr-defined,no-any-return]


def on_receiver_report(sender: RTCRtpSender, *listeners: ReceiverReports) -> None:
    """Tell each listener what the remote viewer reports about ``sender``'s stream."""
    handle = sender._handle_rtcp_packet

    async def handle_and_report(packet: Any) -> None:
        await handle(packet)
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for block in packet.reports:
                if block.ssrc == sender._ssrc:
                    report = ReceiverReport(block.fraction_lost / 256, block.packets_lost, block.highest_sequence,
                                            octets_sent(sender), block.jitter)
                    for listener in listeners:
                        listener.report(report)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if sender._ssrc in ssrcs:
                for listener in listeners:
                    listener.bandwidth(bitrate, octets_sent(sender))

    sender._handle_rtcp_packet = handle_and_report  # type: ignore[method-assign]


def round_trip(sender: RTCRtpSender) -> float | None:
    """aiortc's smoothed round-trip estimate for ``sender`` (seconds), from the receiver reports
    that answer its sender reports; None until one has."""
    return sender._RTCRtpSender__rtt  # type: ignore[attr-defined,no-any-return]


def transport_counts(pc: RTCPeerConnection) -> tuple[int, int, int, int]:
    """Packets and bytes the connection's DTLS transports sent and received (RTP, RTCP, data):
    (packets sent, bytes sent, packets received, bytes received)."""
    seen: set[int] = set()
    totals = [0, 0, 0, 0]
    for transceiver in pc.getTransceivers():
        transport = transceiver.sender.transport
        if transport is None or id(transport) in seen:
            continue
        seen.add(id(transport))  # one transport for every bundled section
        totals[0] += transport._RTCDtlsTransport__tx_packets
        totals[1] += transport._RTCDtlsTransport__tx_bytes
        totals[2] += transport._RTCDtlsTransport__rx_packets
        totals[3] += transport._RTCDtlsTransport__rx_bytes
    return totals[0], totals[1], totals[2], totals[3]
