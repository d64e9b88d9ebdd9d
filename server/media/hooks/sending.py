"""A viewer's sender of shared encoded frames: its own headers around shared payloads, SRTP, the socket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aioice.ice
import av
from aiortc import RTCRtpTransceiver, clock
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTP_HISTORY_SIZE, random_sequence_number
from aiortc.rtp import RtpPacket, wrap_rtx
from aiortc.utils import random32, uint16_add

from server.media.codecs import EncodedFrame
from server.media.hooks.negotiation import _sending_codecs
from server.media.hooks.receiving import _OPUS_TIME_BASE
from server.media.rtp import ExtensionIds, RtpStream

log = logging.getLogger(__name__)

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
