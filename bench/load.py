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
import json
import time
from fractions import Fraction

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtp import RtpPacket

from server.media import hooks

hooks.restrict_to_loopback()


class PatternTrack(VideoStreamTrack):
    """Synthetic video: a moving gradient so the encoder produces a realistic bitrate."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.width, self.height = width, height
        y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
        x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
        self._base = (x + y) / 2
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        shift = (self.sent * 4) % 256
        luma = ((self._base + shift) % 256).astype(np.uint8)
        noise = np.random.randint(0, 24, size=luma.shape, dtype=np.uint8)
        image = np.stack([luma, 255 - luma, luma // 2 + noise], axis=-1)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame


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


class CountingViewer:
    """A WHEP viewer that counts what arrives and decodes nothing."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = 0
        self.audio_packets = 0
        self.started = time.monotonic()
        self.first_frame: float | None = None
        video = self.pc.addTransceiver("video", direction="recvonly")
        audio = self.pc.addTransceiver("audio", direction="recvonly")
        # The DTLS transport hands every parsed RTP packet to its receiver:
        # count there instead of feeding aiortc's jitter buffers and decoders.
        video.receiver._handle_rtp_packet = self._video_packet  # type: ignore[method-assign]
        audio.receiver._handle_rtp_packet = self._audio_packet  # type: ignore[method-assign]

    async def _video_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if packet.marker:  # the last packet of a frame
            if self.first_frame is None:
                self.first_frame = time.monotonic()
            self.frames += 1

    async def _audio_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        self.audio_packets += 1

    async def close(self) -> None:
        await self.pc.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    tokens = json.loads(open(args.tokens).read())
    width, height = (int(v) for v in args.size.split("x"))
    async with aiohttp.ClientSession() as http:
        publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video = PatternTrack(width, height)
        publisher.addTransceiver(video, direction="sendonly")
        publisher.addTransceiver(ToneTrack(), direction="sendonly")
        await negotiate(http, f"{args.url}/whip/sessions/{args.session}", tokens["speaker"], publisher)
        await asyncio.sleep(2)  # the publisher's encoder settles
        viewers = []
        for index in range(args.viewers):
            viewer = CountingViewer()
            await negotiate(http, f"{args.url}/whep/sessions/{args.session}", tokens["viewers"][index], viewer.pc)
            viewers.append(viewer)
        print(json.dumps({"event": "ready"}), flush=True)
        await asyncio.sleep(args.warmup)
        sent_before = video.sent
        counts_before = [v.frames for v in viewers]
        print(json.dumps({"event": "measure"}), flush=True)
        await asyncio.sleep(args.seconds)
        sent = video.sent - sent_before
        received = [v.frames - before for v, before in zip(viewers, counts_before, strict=True)]
        joins = sorted((v.first_frame - v.started) for v in viewers if v.first_frame is not None)
        for viewer in viewers:
            await viewer.close()
        await publisher.close()
    return {
        "event": "result",
        "sent": sent,
        "received_min": min(received) if received else None,
        "received_mean": sum(received) / len(received) if received else None,
        "join_first_frame_s": joins,
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
    print(json.dumps(asyncio.run(run(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
