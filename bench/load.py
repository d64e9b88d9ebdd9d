"""The load side of the fan-out benchmark: one WHIP publisher and N WHEP viewers.

Runs in its own process (on its own core, under taskset) so that the server's
CPU is measured alone.  Viewers count frames WITHOUT decoding them, as cheaply
as aiortc allows: each viewer's receivers are replaced, after SRTP and RTP
parsing, by a counter (a video frame is complete at the RTP marker bit; audio
packets are only counted), so no jitter buffer, depacketizer or decoder runs
per viewer.  The load's own CPU is reported next to the server's: near 100 %
it, not the server, limits delivery.

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any
from fractions import Fraction

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtp import RtpPacket

from server.media import hooks
from server.media.peer import LOOPBACK
from aiortc import RTCRtpSender

from tests.media.clients import PatternTrack, steady_vp8
from tests.media.studio import ClipTrack, clip

# Media stays on 127.0.0.1: every connection of this process is confined.
hooks.restrict_addresses(LOOPBACK)


class ToneTrack(AudioStreamTrack):
    """440 Hz, 20 ms frames, paced in real time."""

    def __init__(self) -> None:
        super().__init__()
        self._sample = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._sample / 48000 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(960) + self._sample) / 48000
        data = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._sample, Fraction(1, 48000)
        self._sample += 960
        return frame


async def negotiate(http: aiohttp.ClientSession, url: str, token: str, pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url, data=pc.localDescription.sdp,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}) as reply:
        if reply.status != 201:
            raise RuntimeError(f"{url}: {reply.status} {await reply.text()}")
        answer = await reply.text()
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))


def _payload(rtp: bytes) -> bytes:
    offset = 12 + 4 * (rtp[0] & 0x0F)
    if rtp[0] & 0x10:  # header extension
        offset += 4 + 4 * int.from_bytes(rtp[offset + 2:offset + 4], "big")
    return rtp[offset:]


def h264_keyframe_start(rtp: bytes) -> bool:
    """Whether a plaintext RTP packet starts an H.264 keyframe (SPS or IDR; alone, first in a STAP-A, or a FU-A start)."""
    if len(rtp) < 13:
        return False
    payload = _payload(rtp)
    if len(payload) < 2:
        return False
    nal = payload[0] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24 and len(payload) > 3:  # STAP-A: the first unit follows a 2-byte size
        return payload[3] & 0x1F in (5, 7)
    if nal == 28:  # FU-A: start bit and the fragmented unit's type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
    return False


def keyframe_start(rtp: bytes) -> bool:
    return vp8_keyframe_start(rtp) or h264_keyframe_start(rtp)


def vp8_keyframe_start(rtp: bytes) -> bool:
    """Whether a plaintext RTP packet starts a VP8 keyframe (RFC 7741 descriptor, RFC 6386 P bit)."""
    if len(rtp) < 13:
        return False
    offset = 12 + 4 * (rtp[0] & 0x0F)
    if rtp[0] & 0x10:  # header extension
        offset += 4 + 4 * int.from_bytes(rtp[offset + 2:offset + 4], "big")
    descriptor = rtp[offset:]
    if len(descriptor) < 2 or not descriptor[0] & 0x10 or descriptor[0] & 0x07:
        return False  # not the start of partition 0
    index = 1
    if descriptor[0] & 0x80:  # extension byte: I, L, T, K
        flags = descriptor[1]
        index = 2
        if flags & 0x80:
            index += 2 if descriptor[index] & 0x80 else 1
        if flags & 0x40:
            index += 1
        if flags & 0x30:
            index += 1
    return len(descriptor) > index and (descriptor[index] & 0x01) == 0


class SendClock:
    """When the publisher sent each video frame, keyed by its RTP timestamp.

    The publisher and the viewers share this process's clock, so a viewer's
    arrival time minus the send time is the latency the server (and loopback)
    adds, with no clock synchronisation needed.
    """

    def __init__(self) -> None:
        self.sent: dict[int, float] = {}
        self.keyframes: list[tuple[float, int]] = []

    def watch(self, pc: RTCPeerConnection) -> None:
        sender = next(s for s in pc.getSenders() if s.track is not None and s.track.kind == "video")
        ssrc = sender._ssrc
        transport = sender.transport
        send_rtp = transport._send_rtp

        async def recording_send_rtp(data: bytes) -> None:
            await send_rtp(data)
            if len(data) >= 12 and int.from_bytes(data[8:12], "big") == ssrc:
                timestamp, now = int.from_bytes(data[4:8], "big"), time.monotonic()
                if keyframe_start(data):
                    self.keyframes.append((now, timestamp))
                if data[1] & 0x80:  # marker: the frame's last packet is out
                    self.sent[timestamp] = now
                    if len(self.sent) > 2000:
                        self.sent.pop(next(iter(self.sent)))

        transport._send_rtp = recording_send_rtp  # type: ignore[method-assign]

    def keyframe_before(self, moment: float) -> int | None:
        earlier = [timestamp for sent, timestamp in self.keyframes if sent <= moment]
        return earlier[-1] if earlier else None


class _ClearHeaders:
    """A receiving SRTP session that leaves RTP as it came: a counting viewer reads only the header
    (marker, timestamp, sequence), which SRTP does not encrypt. RTCP is unprotected for real."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def unprotect(self, data: bytes) -> bytes:
        return data

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return self._session.unprotect_rtcp(data)


class CountingViewer:
    """A WHEP viewer that counts what arrives and decodes nothing.

    ``clear_headers``: once connected, read the RTP headers it counts as they
    come off the socket, without decrypting payloads it never reads (150 viewers
    then fit on the load's core beside the publisher's encoder).
    """

    def __init__(self, clock: SendClock | None = None, only: str | None = None, *,
                 clear_headers: bool = False) -> None:
        self.clock = clock
        self.offset: int | None = None  # viewer RTP timestamp - publisher RTP timestamp
        self.latencies: list[float] = []
        self.measuring = False
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = 0
        self.audio_packets = 0
        self.started = time.monotonic()
        self.first_frame: float | None = None
        self._video_types: set[int] = set()
        self._rtx_types: set[int] = set()
        video = self.pc.addTransceiver("video", direction="recvonly")
        audio = self.pc.addTransceiver("audio", direction="recvonly")
        if only is not None:  # a viewer that decodes one codec (the program transcodes for it)
            video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                       if c.mimeType.lower() in (f"video/{only}", "video/rtx")])
        # The DTLS transport hands every parsed RTP packet to its receiver:
        # count there instead of feeding aiortc's jitter buffers and decoders.
        video.receiver._handle_rtp_packet = self._video_packet  # type: ignore[method-assign]
        audio.receiver._handle_rtp_packet = self._audio_packet  # type: ignore[method-assign]
        if clear_headers:
            @self.pc.on("connectionstatechange")
            def connected() -> None:
                dtls = video.receiver.transport
                session = getattr(dtls, "_rx_srtp", None)
                if self.pc.connectionState == "connected" and session is not None \
                        and not isinstance(session, _ClearHeaders):
                    dtls._rx_srtp = _ClearHeaders(session)
                    # ...and reads the three header fields it counts from the bytes as they come off its
                    # socket: no STUN parse (aioice tries one on every datagram), queue, DTLS dispatch or
                    # packet object. STUN (consent) and RTCP still go the whole way.
                    self._video_types = {c.payloadType for c in video._codecs if c.mimeType.lower() != "video/rtx"}
                    self._rtx_types = {c.payloadType for c in video._codecs if c.mimeType.lower() == "video/rtx"}
                    dtls._handle_rtp_data = self._count_rtp
                    pair = dtls.transport._connection._nominated.get(1)
                    if pair is not None:
                        protocol = pair.protocol
                        received = protocol.datagram_received

                        def datagram_received(data: bytes, addr: Any) -> None:
                            if len(data) >= 12 and 127 < data[0] < 192 and not 192 <= data[1] <= 223:
                                # RTP (RTCP's packet types are 192-223)
                                self._count_header(data)
                            else:
                                received(data, addr)

                        protocol.datagram_received = datagram_received

    async def _count_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        self._count_header(data)

    def _count_header(self, data: bytes) -> None:
        if len(data) < 12:
            return
        payload_type = data[1] & 0x7F
        if payload_type in self._video_types:
            if data[1] & 0x80:  # the marker: a frame's last packet
                self._video_frame(int.from_bytes(data[4:8], "big"))
        elif payload_type not in self._rtx_types:
            self.audio_packets += 1

    async def _video_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if packet.marker:  # only the last packet of a frame
            self._video_frame(packet.timestamp)

    def _video_frame(self, timestamp: int) -> None:
        now = time.monotonic()
        if self.first_frame is None:
            self.first_frame = now
            # The first frame a viewer gets is a keyframe: the publisher's latest one.
            if self.clock is not None:
                keyframe = self.clock.keyframe_before(now)
                if keyframe is not None:
                    self.offset = (timestamp - keyframe) % 2**32
        self.frames += 1
        if self.measuring and self.clock is not None and self.offset is not None:
            sent = self.clock.sent.get((timestamp - self.offset) % 2**32)
            if sent is not None:
                self.latencies.append(now - sent)

    async def _audio_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.audio_packets += 1

    async def close(self) -> None:
        await self.pc.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    tokens = json.loads(open(args.tokens).read())
    width, height = (int(v) for v in args.size.split("x"))
    async with aiohttp.ClientSession() as http:
        publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video: PatternTrack | ClipTrack
        if args.source == "clip":
            # Pre-encoded (as a studio's encoder would have made it): the publisher costs almost nothing.
            video = ClipTrack(clip(None, (width, height), codec=args.codec, seconds=4, gop_seconds=2,
                                   bitrate=args.bitrate or round(width * height * 30 * 0.1)))
        else:
            video = PatternTrack(width, height)
        sending = publisher.addTransceiver(video, direction="sendonly")
        if args.source == "clip":
            sending.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                         if c.mimeType.lower() in (f"video/{args.codec}", "video/rtx")
                                         and c.parameters.get("packetization-mode", "1") == "1"])
        publisher.addTransceiver(ToneTrack(), direction="sendonly")
        await negotiate(http, f"{args.url}/whip/sessions/{args.session}", tokens["speaker"], publisher)
        clock = SendClock()
        clock.watch(publisher)
        await asyncio.sleep(2)  # the publisher's encoder settles
        viewers = []
        for index in range(args.viewers):
            viewer = CountingViewer(clock, None if args.viewer_codec == "any" else args.viewer_codec,
                                    clear_headers=args.clear_headers)
            await negotiate(http, f"{args.url}/whep/sessions/{args.session}", tokens["viewers"][index], viewer.pc)
            viewers.append(viewer)
        print(json.dumps({"event": "ready"}), flush=True)
        await asyncio.sleep(args.warmup)
        sent_before = video.sent
        counts_before = [v.frames for v in viewers]
        for viewer in viewers:
            viewer.measuring = True
        print(json.dumps({"event": "measure"}), flush=True)
        await asyncio.sleep(args.seconds)
        for viewer in viewers:
            viewer.measuring = False
        sent = video.sent - sent_before
        received = [v.frames - before for v, before in zip(viewers, counts_before, strict=True)]
        joins = sorted((v.first_frame - v.started) for v in viewers if v.first_frame is not None)
        latencies = sorted(latency for v in viewers for latency in v.latencies)
        for viewer in viewers:
            await viewer.close()
        await publisher.close()
    return {
        "event": "result",
        "sent": sent,
        "received_min": min(received) if received else None,
        "received_mean": sum(received) / len(received) if received else None,
        "join_first_frame_s": joins,
        "latency_ms": {
            "samples": len(latencies),
            "p50": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
            "p95": round(latencies[int(len(latencies) * 0.95)] * 1000, 1) if latencies else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--session", type=int, required=True)
    parser.add_argument("--tokens", required=True, help="JSON file: {speaker, viewers: [...]}")
    parser.add_argument("--viewers", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--bitrate", type=int, default=0,
                        help="encode VP8 at this constant bit/s (default: follow the server's estimate)")
    parser.add_argument("--source", choices=["live", "clip"], default="live",
                        help="live: aiortc encodes a pattern; clip: a pre-encoded clip is looped (studio-like)")
    parser.add_argument("--codec", choices=["vp8", "h264"], default="vp8", help="the clip's codec")
    parser.add_argument("--viewer-codec", choices=["any", "vp8", "h264"], default="any",
                        help="what viewers decode (any: VP8 and H.264)")
    parser.add_argument("--clear-headers", action="store_true",
                        help="viewers read RTP headers without decrypting payloads (a cheaper load)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="this host's address (a test namespace's): the only one media leaves from")
    parser.add_argument("--allowed-network", action="append", default=[],
                        help="a private network the servers are on (their candidates are used)")
    args = parser.parse_args()
    if args.address != "127.0.0.1" or args.allowed_network:
        import ipaddress

        hooks.restrict_addresses((args.address,), allowed_networks=[ipaddress.ip_network(n)
                                                                    for n in args.allowed_network])
    with steady_vp8(args.bitrate) if args.bitrate else contextlib.nullcontext():
        print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
