"""Real aiortc peers for media tests: publishers with a known picture and tone, viewers that decode and measure.

Everything runs over loopback only (``ice.addresses`` = 127.0.0.1 for every connection of
the process), as the network rule requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import vpx
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket

from server.media import hooks
from server.media.peer import LOOPBACK

hooks.restrict_addresses(LOOPBACK)

Answerer = Callable[[str], Awaitable[str]]


class ColourTrack(VideoStreamTrack):
    """Frames of one solid colour (RGB), 30 fps, 320x240 unless told otherwise."""

    def __init__(self, rgb: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> None:
        super().__init__()
        self.rgb = rgb
        self.sent = 0
        self._image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
        self._image[:, :] = rgb

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self._image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame


class PatternTrack(VideoStreamTrack):
    """A moving gradient with noise, 30 fps: the encoder spends a realistic bitrate on it (~1 Mbit/s at 640x480)."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
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
    """A sine tone at ``frequency`` Hz, 48 kHz mono, 20 ms frames, real-time paced."""

    def __init__(self, frequency: float, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._sample = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        samples = 960
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._sample / 48000 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(samples) + self._sample) / 48000
        data = (self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._sample
        frame.time_base = fractions.Fraction(1, 48000)
        self._sample += samples
        return frame


@contextlib.contextmanager
def steady_vp8(bits_per_second: int = 1_000_000) -> Iterator[None]:
    """aiortc publishers made meanwhile encode VP8 at a constant ``bits_per_second``, as a camera would.

    aiortc's VP8 encoder follows the receiver's estimate (and re-creates
    itself, with a keyframe, on every 10 % move); a hub on a busy test machine
    estimates low, and the program would drift between 0.1 and 1 Mbit/s.
    """
    saved = vpx.DEFAULT_BITRATE, vpx.MIN_BITRATE, vpx.MAX_BITRATE
    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = vpx.MAX_BITRATE = bits_per_second
    try:
        yield
    finally:
        vpx.DEFAULT_BITRATE, vpx.MIN_BITRATE, vpx.MAX_BITRATE = saved


def new_client() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


@dataclass
class Publisher:
    pc: RTCPeerConnection
    video: ColourTrack | PatternTrack
    audio: ToneTrack
    # Picture loss indications the server sent this publisher.
    plis: int = 0

    async def close(self) -> None:
        await self.pc.close()


def _steady(sender: RTCRtpSender, publisher: Publisher) -> None:
    """Make an aiortc publisher behave like a browser's: keyframes only when asked.

    aiortc's VP8 encoder is re-created (and so sends a keyframe) whenever a
    bandwidth estimate moves its target by more than 10 %; browsers do not.
    Ignoring the estimates leaves the first keyframe and those a PLI asks for.
    """
    handle = sender._handle_rtcp_packet

    async def without_estimates(packet: object) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            return
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
            publisher.plis += 1
        await handle(packet)

    sender._handle_rtcp_packet = without_estimates  # type: ignore[method-assign]


async def publish(answer: Answerer, rgb: tuple[int, int, int] | None, frequency: float,
                  size: tuple[int, int] = (320, 240), *, steady: bool = False, only: str | None = "vp8") -> Publisher:
    """Publish a solid colour (``rgb``) or, with ``rgb=None``, a moving pattern, and a tone.

    ``steady``: keyframes only when the server asks (see _steady). ``only``:
    the one video codec offered (VP8 by default, as a browser without H.264
    would; None offers aiortc's VP8 and H.264).
    """
    pc = new_client()
    video = ColourTrack(rgb, size) if rgb is not None else PatternTrack(*size)
    audio = ToneTrack(frequency)
    video_transceiver = pc.addTransceiver(video, direction="sendonly")
    if only is not None:
        wanted = (f"video/{only}", "video/rtx")
        video_transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                               if c.mimeType.lower() in wanted])
    pc.addTransceiver(audio, direction="sendonly")
    publisher = Publisher(pc, video, audio)
    if steady:
        _steady(video_transceiver.sender, publisher)
    await pc.setLocalDescription(await pc.createOffer())
    answer_sdp = await answer(pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
    return publisher


@dataclass
class Viewer:
    """Receives the program, decodes it, and keeps what the assertions need."""

    pc: RTCPeerConnection
    colours: list[tuple[int, int, int]] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    first_frame_at: float | None = None

    @property
    def frames(self) -> int:
        return len(self.colours)

    def recent_colours(self, count: int = 10) -> list[tuple[int, int, int]]:
        return self.colours[-count:]

    def tone_energy(self, frequency: float, seconds: float = 1.0) -> float:
        """Share of the recent audio's energy within ±20 Hz of ``frequency`` (0..1)."""
        if not self.audio:
            return 0.0
        samples = np.concatenate(self.audio)[-int(48000 * seconds):].astype(np.float64)
        if not samples.any():
            return 0.0
        spectrum = np.abs(np.fft.rfft(samples)) ** 2
        freqs = np.fft.rfftfreq(len(samples), 1 / 48000)
        band = (freqs > frequency - 20) & (freqs < frequency + 20)
        return float(spectrum[band].sum() / spectrum.sum())

    def loudness(self, seconds: float = 0.5) -> float:
        if not self.audio:
            return 0.0
        samples = np.concatenate(self.audio)[-int(48000 * seconds):].astype(np.float64)
        return float(np.sqrt(np.mean(samples ** 2))) if len(samples) else 0.0

    def clear(self) -> None:
        self.colours.clear()
        self.audio.clear()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def view(answer: Answerer, *, only: str | None = None, configuration: RTCConfiguration | None = None) -> Viewer:
    """A viewer that decodes VP8 and H.264, or only the codec ``only`` names ("vp8", "h264");
    ``configuration``: its ICE servers and policy (none by default)."""
    pc = RTCPeerConnection(configuration) if configuration is not None else new_client()
    viewer = Viewer(pc)
    video = pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    # Each frame is decoded with its own codec where the program changes payload type.
    hooks.release_at_marker(video.receiver)
    if only is not None:
        wanted = (f"video/{only}", "video/rtx")
        video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                   if c.mimeType.lower() in wanted])

    async def consume_video(track: VideoStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if viewer.first_frame_at is None:
                viewer.first_frame_at = time.monotonic()
            image = frame.to_ndarray(format="rgb24")
            centre = image[image.shape[0] // 4: 3 * image.shape[0] // 4, image.shape[1] // 4: 3 * image.shape[1] // 4]
            viewer.colours.append(tuple(int(v) for v in centre.reshape(-1, 3).mean(axis=0)))
            viewer.sizes.append((frame.width, frame.height))

    async def consume_audio(track: AudioStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            data = frame.to_ndarray().reshape(-1)
            if len(frame.layout.channels) == 2:
                data = data[::2]  # left channel of interleaved stereo
            viewer.audio.append(data.astype(np.int16))
            del viewer.audio[:-200]

    @pc.on("track")
    def on_track(track: object) -> None:
        consume = consume_video if getattr(track, "kind", "") == "video" else consume_audio
        viewer.tasks.append(asyncio.ensure_future(consume(track)))  # type: ignore[arg-type]

    await pc.setLocalDescription(await pc.createOffer())
    answer_sdp = await answer(pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
    return viewer


def close_to(colour: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


class DecodeFailures(logging.Handler):
    """Counts the frames aiortc's receivers (the test's viewers) could not decode."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "failed to decode" in record.getMessage():
            self.count += 1


@contextlib.contextmanager
def decode_failures() -> Iterator[DecodeFailures]:
    handler = DecodeFailures()
    logger = logging.getLogger("aiortc.rtcrtpreceiver")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def clean_cut(viewer: Viewer, old: tuple[int, int, int], new: tuple[int, int, int], *, since: int,
                    after: int = 20, timeout: float = 10.0) -> int:
    """Wait for the viewer's picture to cut from ``old`` to ``new``; return the index of the first new frame.

    Every frame from ``since`` up to the cut must be the old picture and the
    ``after`` frames from the cut on the new one: no garbage from a cut
    without a keyframe, no flicker back, nothing undecodable shown.
    """
    def cut() -> int | None:
        return next((i for i in range(since, len(viewer.colours)) if close_to(viewer.colours[i], new)), None)

    await wait_until(lambda: cut() is not None, timeout)
    first = cut()
    assert first is not None
    await wait_until(lambda: len(viewer.colours) >= first + after, timeout)
    before, following = viewer.colours[since:first], viewer.colours[first:first + after]
    assert all(close_to(colour, old) for colour in before), f"before the cut: {before}"
    assert all(close_to(colour, new) for colour in following), f"after the cut: {following}"
    return first


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)
