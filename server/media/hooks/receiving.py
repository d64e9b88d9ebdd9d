"""Receivers: encoded frames in, released at their marker; a viewer's unused receiver; what aiortc counts of one."""

from __future__ import annotations

import fractions
import queue
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.sdp import SessionDescription

from server.media.codecs import EncodedFrame, ParameterSets, is_vp8_keyframe, parse_sprop


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


def unused_receiver(receiver: RTCRtpReceiver) -> None:
    """Drop what a receiver that will never receive keeps for it (a viewer's, in a sendonly section).

    aiortc gives every video receiver a bandwidth estimator of 1,000 small
    objects: on a server with hundreds of viewers, hundreds of thousands of
    objects the garbage collector walks, for nothing (measured, bench/soak.py).
    """
    receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]


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
