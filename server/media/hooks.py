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
* :func:`unused_receiver` — a viewer's receivers never receive: their
  bandwidth estimator (1,000 objects each) is dropped.
* :func:`round_trip`, :func:`transport_counts`, :func:`receive_counters` —
  what aiortc already counts of a connection (its round-trip estimate, its
  DTLS transport's packets and bytes, our receiver's sequence and jitter
  counters), read about once a second for the quality board and /metrics.
* :func:`restrict_addresses` — gather only on named addresses, and ignore,
  never answer and never send to any other (``ice.addresses``; tests and
  benchmarks name 127.0.0.1, see "Networks in tests").
* :func:`answer_as_dtls_server` — answer ``a=setup:passive`` to an ``actpass``
  offer, so publishers whose DTLS certificate is RSA (GStreamer) connect.
* :func:`register_h264_profiles` — aiortc knows H.264 only as constrained
  baseline and baseline, packetization-mode 1, level 3.1: studio publishers
  (OBS, GStreamer, FFmpeg) offer main and high profiles, packetization-mode
  0, 1080p; each is added to aiortc's codec table (once, at import).
* :func:`send_encoded` — a viewer's sender that sends the shared payloads of
  each forwarded frame (:func:`rtp_payloads`, :func:`opus_payload`) under the
  viewer's own headers (:mod:`server.media.rtp`), with SRTP and the send
  straight to the ICE pair's socket: aiortc's sender makes a packet object,
  reads the clock and awaits four coroutines per packet per viewer. Each
  video frame goes with its own codec's payload type (VP8 or H.264), so one
  viewer follows the program across sources that send different codecs;
  aiortc's sender packs every frame with the first negotiated codec.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import aioice.ice
import aiortc.codecs
import av
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver, clock
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTP_HISTORY_SIZE, random_sequence_number
from aiortc.rtp import (RTCP_PSFB_APP, RtcpPsfbPacket, RtcpRrPacket, RtcpSrPacket, RtpPacket, unpack_remb_fci,
                        wrap_rtx)
from aiortc.sdp import SessionDescription
from aiortc.utils import random32, uint16_add

from server.media.addresses import AddressRule, Network
from server.media.codecs import VIDEO_CODECS, EncodedFrame, ParameterSets, VideoCodec, is_vp8_keyframe, parse_sprop
from server.media.rtp import ExtensionIds, RtpStream

log = logging.getLogger(__name__)

_OPUS_TIME_BASE = fractions.Fraction(1, 48000)



class _EncodedFrameQueue:
    """Stands in for a receiver's decoder queue.

    The receiver puts ``(codec, JitterFrame)`` here from the event loop; we
    make an :class:`~server.media.codecs.EncodedFrame` of it and hand it
    straight to the receiver's track. H.264 frames pass through the
    publisher's :class:`~server.media.codecs.ParameterSets` (seeded from the
    offer's ``sprop-parameter-sets``), so every IDR carries its SPS and PPS.
    The receiver's decoder thread still runs, but only ever takes the stop
    marker from this queue, so it never creates a decoder and still ends the
    track when the receiver stops.
    """

    def __init__(self, receiver: RTCRtpReceiver, pc: RTCPeerConnection | None) -> None:
        self._receiver = receiver
        self._pc = pc
        self._stop: queue.Queue[None] = queue.Queue()
        self._parameter_sets: dict[int, ParameterSets] = {}

    def put(self, item: Any) -> None:
        if item is None:
            self._stop.put(None)
            return
        codec, frame = item
        name = codec.name.lower()
        if name == "vp8":
            encoded = EncodedFrame("vp8", frame.data, frame.timestamp, is_vp8_keyframe(frame.data))
        elif name == "h264":
            sets = self._parameter_sets.get(codec.payloadType)
            if sets is None:
                sets = self._parameter_sets[codec.payloadType] = ParameterSets(
                    _sprop(self._pc, codec.payloadType))
            data, keyframe = sets.repair(frame.data)
            encoded = EncodedFrame("h264", data, frame.timestamp, keyframe)
        elif name == "opus":
            # A relay's uplink: the parent's mix, forwarded as it came (server/media/uplink.py).
            packet = av.Packet(frame.data)
            packet.pts = frame.timestamp
            packet.time_base = _OPUS_TIME_BASE
            self._receiver._track._queue.put_nowait(packet)
            return
        else:  # only VP8 and H.264 are ever negotiated for video
            return
        self._receiver._track._queue.put_nowait(encoded)

    def get(self, block: bool = True, timeout: float | None = None) -> None:
        return self._stop.get(block, timeout)


def _sprop(pc: RTCPeerConnection | None, payload_type: int) -> list[bytes]:
    """The SPS and PPS an offer gave for ``payload_type`` in ``sprop-parameter-sets``."""
    if pc is None or pc.remoteDescription is None:
        return []
    for media in SessionDescription.parse(pc.remoteDescription.sdp).media:
        for codec in media.rtp.codecs if media.kind == "video" else []:
            if codec.payloadType == payload_type:
                for key, value in codec.parameters.items():
                    if key.strip().lower() == "sprop-parameter-sets" and isinstance(value, str):
                        return parse_sprop(value)
    return []


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


def receive_encoded(receiver: RTCRtpReceiver, pc: RTCPeerConnection | None = None) -> None:
    """Make ``receiver``'s video track yield :class:`~server.media.codecs.EncodedFrame`\\ s (pts in RTP clock units).

    On an audio receiver (a relay's uplink) the track yields the Opus packets
    as ``av.Packet``\\ s, pts in 1/48000 s.

    ``pc`` is the receiver's connection: its remote description gives the
    H.264 parameter sets of the SDP. Call it before the connection starts
    receiving.
    """
    if receiver._RTCRtpReceiver__decoder_thread is not None:
        raise RuntimeError("receive_encoded() must be installed before the receiver starts")
    receiver._RTCRtpReceiver__decoder_queue = _EncodedFrameQueue(receiver, pc)
    if receiver._RTCRtpReceiver__kind == "video":
        receiver._RTCRtpReceiver__jitter_buffer = MarkerJitterBuffer(capacity=512, is_video=True)


def release_at_marker(receiver: RTCRtpReceiver) -> None:
    """Give a decoding receiver (a test's viewer) the marker-releasing jitter buffer.

    aiortc's own buffer hands a frame over when the next frame's first packet
    arrives, labelled with *that* packet's codec: where the payload type
    changes (a VP8 source cut to an H.264 one) the old codec's last frame goes
    to the new codec's decoder and fails. Released at its marker, each frame
    goes with its own packets' codec.
    """
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


def unused_receiver(receiver: RTCRtpReceiver) -> None:
    """Drop what a receiver that will never receive keeps for it (a viewer's, in a sendonly section).

    aiortc gives every video receiver a bandwidth estimator of 1,000 small
    objects: on a server with hundreds of viewers, hundreds of thousands of
    objects the garbage collector walks, for nothing (measured, bench/soak.py).
    """
    receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]


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


def receive_counters(receiver: RTCRtpReceiver) -> tuple[int, int, int, int] | None:
    """What our receiver counted of its first remote stream: (packets expected, packets received,
    interarrival jitter in RTP units, clock rate); None before a packet arrived."""
    streams = receiver._RTCRtpReceiver__remote_streams
    for stream in list(streams.values())[:1]:
        if stream.max_seq is None:
            return None
        return stream.packets_expected, stream.packets_received, stream.jitter, stream._clockrate
    return None


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


# H.264 as studio publishers offer it, in aiortc's codec table. aiortc matches
# an offered H.264 codec by profile and packetization mode only; the level we
# state is what we can receive (5.2: 1080p60 and more), and with
# level-asymmetry-allowed a publisher sends at its own level.
H264_LEVEL = "34"
H264_PROFILES = ("42001f", "42e01f", "4d001f", "64001f", "640c1f")  # baseline, constrained baseline, main, high, constrained high


def register_h264_profiles() -> None:
    """Make aiortc's video codecs VP8 and H.264 in every profile and packetization mode above (idempotent)."""
    global _h264_registered
    if _h264_registered:
        return
    feedback = [RTCRtcpFeedback(type="nack"), RTCRtcpFeedback(type="nack", parameter="pli"),
                RTCRtcpFeedback(type="goog-remb")]
    table: list[RTCRtpCodecParameters] = []
    payload_type = 97

    def add(mime: str, parameters: dict[str, Any]) -> None:
        nonlocal payload_type
        table.append(RTCRtpCodecParameters(mimeType=mime, clockRate=90_000, payloadType=payload_type,
                                           rtcpFeedback=list(feedback), parameters=parameters))
        table.append(RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90_000, payloadType=payload_type + 1,
                                           parameters={"apt": payload_type}))
        payload_type += 2

    add("video/VP8", {})
    for mode in ("1", "0"):
        for profile in H264_PROFILES:
            add("video/H264", {"level-asymmetry-allowed": "1", "packetization-mode": mode,
                               "profile-level-id": profile[:4] + H264_LEVEL})
    assert payload_type <= 128, "dynamic payload types run from 96 to 127"
    aiortc.codecs.CODECS["video"][:] = table
    _h264_registered = True


_h264_registered = False


def prefer_codecs(transceiver: RTCRtpTransceiver, first: VideoCodec = "vp8") -> None:
    """Negotiate VP8 and H.264 (with RTX) for video, Opus for audio: what the program forwards.

    ``first`` leads the list: in an answer to a publisher it is the codec the
    publisher will send, if it offers both. On the answering side this must
    run before ``setRemoteDescription``.
    """
    codecs = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    if transceiver.kind == "video":
        order = {first: 0, **{name: 1 + i for i, name in enumerate(VIDEO_CODECS) if name != first}}
        video = [codec for codec in codecs if codec.mimeType.lower().removeprefix("video/") in order]
        video.sort(key=lambda codec: order[codec.mimeType.lower().removeprefix("video/")])  # stable
        rtx = [codec for codec in codecs if codec.mimeType.lower() == "video/rtx"]
        transceiver.setCodecPreferences(video + rtx)
    else:
        transceiver.setCodecPreferences([codec for codec in codecs if codec.mimeType.lower() == "audio/opus"])


def negotiated_video_codecs(transceiver: RTCRtpTransceiver) -> frozenset[VideoCodec]:
    """The video codecs a negotiated transceiver can send: VP8, and H.264 in packetization mode 1.

    Forwarded H.264 frames are packed in FU-A and STAP-A packets, which
    packetization mode 0 does not allow.
    """
    return frozenset(_sending_codecs(transceiver._codecs))


def _sending_codecs(codecs: list[RTCRtpCodecParameters]) -> dict[VideoCodec, RTCRtpCodecParameters]:
    chosen: dict[VideoCodec, RTCRtpCodecParameters] = {}
    for codec in codecs:
        name = codec.mimeType.lower()
        if name == "video/vp8":
            chosen.setdefault("vp8", codec)
        elif name == "video/h264" and str(codec.parameters.get("packetization-mode", "0")) == "1":
            chosen.setdefault("h264", codec)
    return chosen


def rtp_payloads(frame: EncodedFrame) -> list[bytes] | None:
    """The frame's RTP payloads, made by the first viewer's sender and shared by every other one.

    They are the same for every viewer: an H.264 frame's always, a VP8
    frame's once its stream has numbered it (``picture_id``, which the
    payload descriptor carries). None: a VP8 frame without one (each sender
    numbers it itself).
    """
    if frame.payloads is None:
        if frame.codec == "h264":
            frame.payloads = H264Encoder._packetize(H264Encoder._split_bitstream(frame.data))
        elif frame.picture_id is not None:
            frame.payloads = Vp8Encoder._packetize(frame.data, frame.picture_id)
    return frame.payloads


def opus_payload(packet: av.Packet) -> bytes:
    """An Opus packet's RTP payload, made by the first viewer's sender and shared by every other one."""
    payload = packet.opaque
    if payload is None:
        payload = packet.opaque = bytes(packet)
    return payload  # type: ignore[no-any-return]


def _extension_ids(extensions_map: Any) -> ExtensionIds:
    ids = extensions_map._HeaderExtensionsMap__ids
    return ExtensionIds(mid=ids.mid or 0, abs_send_time=ids.abs_send_time or 0)


class _Wire:
    """How one sender's RTP reaches the wire: SRTP, then ``sendto`` on the ICE pair's socket.

    The path (the DTLS transport's SRTP session, the nominated pair, its
    socket and address) is found again only when the pair changes; aiortc's
    own path, four awaited coroutines a packet, carries what is not plain
    UDP: a relayed (TURN) pair, or an address the connection's rule refuses
    (its guard drops what goes there).
    """

    def __init__(self, dtls: Any) -> None:
        self._dtls = dtls  # None until the sender starts
        self._pair: Any = None
        self._path: tuple[Callable[[bytes], bytes], Callable[[bytes, Any], None], Any] | None = None

    def _find(self) -> tuple[Callable[[bytes], bytes], Callable[[bytes, Any], None], Any] | None:
        dtls = self._dtls
        if dtls._state is not DtlsState.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        connection = dtls.transport._connection
        pair = connection._nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        if pair is not self._pair:
            self._pair, self._path = pair, None
            protocol = pair.protocol
            rule = getattr(connection, "_bridgecast_rule", None)
            address = pair.remote_addr
            if type(protocol) is aioice.ice.StunProtocol and protocol.transport is not None and (
                    rule is None or rule.allows(address[0])):
                self._path = dtls._tx_srtp.protect, protocol.transport.sendto, address
        return self._path

    def ready(self) -> bool:
        """Whether :meth:`send_now` can send (raises ``ConnectionError`` when nothing can)."""
        return self._dtls is not None and self._find() is not None

    async def send(self, packets: list[bytes]) -> None:
        """SRTP and the send of one frame's packets, by aiortc's path where it must."""
        if self._find() is None:
            for packet in packets:
                await self._dtls._send_rtp(packet)
            return
        self.send_now(packets)

    def send_now(self, packets: list[bytes]) -> None:
        """SRTP and ``sendto`` of one frame's packets, on the path :meth:`ready` found."""
        assert self._path is not None
        protect, sendto, address = self._path
        octets = 0
        for packet in packets:
            data = protect(packet)
            octets += len(data)
            sendto(data, address)
        # The transport's counters (transport_counts() reads them), once per frame.
        self._dtls._RTCDtlsTransport__tx_bytes += octets
        self._dtls._RTCDtlsTransport__tx_packets += len(packets)


# The sender-report state aiortc's RTCP loop reads, which send_encoded's loop keeps (it replaces aiortc's).
_OCTET_COUNT, _PACKET_COUNT = "_RTCRtpSender__octet_count", "_RTCRtpSender__packet_count"
_NTP_TIMESTAMP, _RTP_TIMESTAMP = "_RTCRtpSender__ntp_timestamp", "_RTCRtpSender__rtp_timestamp"


class _EncodedSender:
    """One viewer's sender of shared encoded frames (:func:`send_encoded`): its stream, history and counters."""

    def __init__(self, transceiver: RTCRtpTransceiver) -> None:
        self.transceiver = transceiver
        self.sender = sender = transceiver.sender
        self.video = sender.kind == "video"
        # The packets sent last, by sequence number modulo the size, for NACKs.
        self.history: list[bytes | None] = [None] * RTP_HISTORY_SIZE
        # Each codec's RTX payload type (by its "apt"), known once the sender starts.
        self.rtx_types: dict[Any, int] = {}
        self.codecs: dict[str, RTCRtpCodecParameters] = {}
        self.stream: RtpStream | None = None
        self.wire = _Wire(None)
        self.picture_id = self.octet_count = self.packet_count = 0
        self.failed = False
        sender._run_rtp = self.run_rtp  # type: ignore[method-assign]
        sender._retransmit = self.retransmit  # type: ignore[method-assign]

    def _get(self, name: str) -> Any:
        return getattr(self.sender, "_RTCRtpSender__" + name)

    def _start(self, first: RTCRtpCodecParameters) -> None:
        transceiver, sender = self.transceiver, self.sender
        self.codecs = dict(_sending_codecs(transceiver._codecs)) if self.video else {"opus": first}
        self.rtx_types.update({codec.parameters.get("apt"): codec.payloadType
                               for codec in transceiver._codecs if codec.mimeType.lower() == "video/rtx"})
        self.stream = RtpStream(sender._ssrc, _extension_ids(self._get("rtp_header_extensions_map")),
                                self._get("mid"), random_sequence_number(), random32())
        self.wire = _Wire(sender.transport)

    def _packets(self, frame: Any) -> tuple[list[bytes], int, int, int] | None:
        """The frame's packets for this viewer (kept for NACKs), its RTP timestamp, clock and payload octets."""
        stream = self.stream
        if stream is None or not self.sender._enabled:
            return None
        if isinstance(frame, EncodedFrame):
            codec = self.codecs.get(frame.codec)
            if codec is None:
                return None
            payloads = rtp_payloads(frame)
            if payloads is None:  # a VP8 frame its stream did not number: this viewer's own numbering
                payloads = Vp8Encoder._packetize(frame.data, self.picture_id)
                self.picture_id = (self.picture_id + 1) % (1 << 15)
            media_time = frame.pts
        elif isinstance(frame, av.Packet) and not self.video and frame.pts is not None:
            codec = self.codecs["opus"]
            payloads = [opus_payload(frame)]
            media_time = frame.pts if frame.time_base == _OPUS_TIME_BASE \
                else int(frame.pts * frame.time_base / _OPUS_TIME_BASE)
        else:
            return None
        if not payloads:
            return None
        timestamp = stream.timestamp(media_time)
        # One clock reading per frame: its packets leave back to back.
        ntp = clock.current_ntp_time()
        first_number = stream.sequence_number
        packets = stream.frame(payloads, codec.payloadType, timestamp, ntp)
        for index, packet in enumerate(packets):  # RTP_HISTORY_SIZE divides 2**16: the index wraps too
            self.history[(first_number + index) % RTP_HISTORY_SIZE] = packet
        return packets, timestamp, ntp, sum(map(len, payloads))

    def _sent(self, packets: list[bytes], timestamp: int, ntp: int, octets: int) -> None:
        # The sender-report counters, once per frame (octets_sent() reads them between frames).
        self.octet_count += octets
        self.packet_count += len(packets)
        sender = self.sender
        setattr(sender, _OCTET_COUNT, self.octet_count)
        setattr(sender, _PACKET_COUNT, self.packet_count)
        setattr(sender, _NTP_TIMESTAMP, ntp)
        setattr(sender, _RTP_TIMESTAMP, timestamp)

    def deliver(self, frame: Any) -> bool:
        """Send ``frame`` now, from the fan-out's own loop over its viewers; False: queue it for :meth:`run_rtp`.

        No task wakes per frame per viewer: where the path to the socket is
        plain UDP the frame goes out in the fan-out's call. Anything else (a
        TURN pair, a connection going away, a failure) leaves it to the task.
        """
        if self.failed:
            return False
        try:
            if not self.wire.ready():
                return False
            made = self._packets(frame)
            if made is not None:
                self.wire.send_now(made[0])
                self._sent(*made)
            return True
        except ConnectionError:
            return False
        except Exception:
            # Never into the fan-out's loop over the other viewers: this viewer falls back to its task.
            self.failed = True
            log.exception("%s sender: direct send failed; the sender's task sends", self.sender.kind)
            return False

    async def run_rtp(self, first: RTCRtpCodecParameters) -> None:
        sender = self.sender
        self._get("rtp_started").set()
        self._start(first)
        try:
            while True:
                track = self._get("track")
                if track is None:
                    await asyncio.sleep(0.02)
                    continue
                if getattr(track, "deliver", False) is None:
                    track.deliver = self.deliver  # the fan-out sends at once from now on
                frame = await track.recv()
                made = self._packets(frame)
                if made is not None:
                    await self.wire.send(made[0])
                    self._sent(*made)
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        except Exception:
            # The exit must be signalled whatever happens, or RTCRtpSender.stop() hangs.
            log.exception("%s sender stopped", sender.kind)
        track = self._get("track")
        if track is not None:
            if getattr(track, "deliver", None) is not None:
                track.deliver = None
            track.stop()
            setattr(sender, "_RTCRtpSender__track", None)
        self._get("rtp_exited").set()

    async def retransmit(self, sequence_number: int) -> None:
        data = self.history[sequence_number % RTP_HISTORY_SIZE]
        if data is None or int.from_bytes(data[2:4], "big") != sequence_number:
            return
        extensions_map = self._get("rtp_header_extensions_map")
        packet = RtpPacket.parse(data, extensions_map)
        rtx = self.rtx_types.get(packet.payload_type)
        if rtx is not None:
            number = self._get("rtx_sequence_number")
            packet = wrap_rtx(packet, payload_type=rtx, sequence_number=number, ssrc=self.sender._rtx_ssrc)
            setattr(self.sender, "_RTCRtpSender__rtx_sequence_number", uint16_add(number, 1))
            data = packet.serialize(extensions_map)
        await self.sender.transport._send_rtp(data)


def send_encoded(transceiver: RTCRtpTransceiver) -> None:
    """Make a sender send its track's shared encoded frames: per viewer, only what differs per viewer.

    Video: each :class:`EncodedFrame` goes with its own codec's payload type,
    so one viewer follows the program across sources that send different
    codecs (aiortc packs every frame with the first negotiated codec); a frame
    of a codec the viewer did not negotiate is dropped (the program never
    sends one: it gives such a viewer a shared transcode). Audio: Opus
    ``av.Packet``\\ s. The payloads are shared by every viewer
    (:func:`rtp_payloads`, :func:`opus_payload`); a viewer's own headers are
    written by :class:`~server.media.rtp.RtpStream`, the clock is read once
    a frame, SRTP and the send go straight to the socket, and the history kept
    for retransmissions holds the packets' bytes. A track with a ``deliver``
    slot (:class:`~server.media.fanout.ForwardTrack`) is given the sender's
    :meth:`_EncodedSender.deliver` once it runs: the fan-out then sends each
    frame in its own loop over the viewers, and the sender's task only carries
    what cannot go that way. Sequence numbers, timestamps and SSRC run on
    across a change of codec, which happens only at a keyframe. Install
    before the connection starts sending.
    """
    _EncodedSender(transceiver)


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


register_h264_profiles()
