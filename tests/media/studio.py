"""Studio publishers for media tests and benchmarks: pre-encoded H.264 (or VP8) as OBS Studio sends it.

OBS encodes with x264: no B-frames, a keyframe every 2 s whatever a viewer
asks (its WHIP output ignores PLI), main or high profile, SPS and PPS before
every IDR. A clip is encoded once per run (cached) and looped: it starts on
an IDR and lasts a whole number of keyframe intervals, so the loop stays
decodable. aiortc packs the encoded packets as they are (no encoder in the
publisher), so a 1080p publisher costs this machine almost nothing.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import time
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc import RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from tests.media.clients import Answerer, Publisher, ToneTrack, new_client

TIME_BASE = fractions.Fraction(1, 90_000)
FPS = 30


@dataclass(frozen=True)
class Clip:
    codec: str
    size: tuple[int, int]
    frames: tuple[tuple[bytes, bool], ...]  # (data, keyframe)
    gop: int
    profile: str


@functools.cache
def clip(rgb: tuple[int, int, int] | None, size: tuple[int, int] = (640, 480), *, codec: str = "h264",
         seconds: float = 2.0, gop_seconds: float = 2.0, profile: str = "high",
         bitrate: int = 1_000_000, parameter_sets_in_band: bool = True) -> Clip:
    """A solid colour (or, with ``rgb=None``, a moving pattern with noise) encoded once, ``seconds`` long.

    ``parameter_sets_in_band=False``: SPS and PPS only before the first IDR
    (as some hardware encoders send them).
    """
    width, height = size
    gop = round(gop_seconds * FPS)
    count = max(gop, round(seconds * FPS) // gop * gop)
    if codec == "h264":
        encoder = av.CodecContext.create("libx264", "w")
        # OBS's default x264 preset: "ultrafast" would drop to baseline (no CABAC, no 8x8 transform).
        preset = "ultrafast" if profile == "baseline" else "veryfast"
        encoder.options = {"preset": preset, "tune": "zerolatency", "profile": profile, "bf": "0",
                           "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                           "x264-params": "repeat-headers=1:annexb=1"}
    else:
        encoder = av.CodecContext.create("libvpx", "w")
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "g": str(gop),
                           "keyint_min": str(gop)}
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.bit_rate = bitrate
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.framerate = fractions.Fraction(FPS, 1)
    rng = np.random.default_rng(7)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    base = (x + y) / 2
    frames: list[tuple[bytes, bool]] = []
    for index in range(count):
        if rgb is not None:
            image = np.empty((height, width, 3), dtype=np.uint8)
            image[:, :] = rgb
        else:
            luma = ((base + index * 4) % 256).astype(np.uint8)
            noise = rng.integers(0, 24, size=luma.shape, dtype=np.uint8)
            image = np.stack([luma, 255 - luma, luma // 2 + noise], axis=-1)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        frame.pict_type = av.video.frame.PictureType.I if index % gop == 0 else av.video.frame.PictureType.NONE
        frames += [(bytes(p), bool(p.is_keyframe)) for p in encoder.encode(frame)]
    frames += [(bytes(p), bool(p.is_keyframe)) for p in encoder.encode(None)]
    assert len(frames) == count and frames[0][1], "the clip starts on a keyframe, one packet per frame"
    if codec == "h264" and not parameter_sets_in_band:
        frames = [frames[0]] + [(_without_parameter_sets(data), key) for data, key in frames[1:]]
    return Clip(codec, size, tuple(frames), gop, profile)


def _without_parameter_sets(data: bytes) -> bytes:
    from server.media.codecs import NAL_PPS, NAL_SPS, annex_b, nal_type, nal_units

    return annex_b([unit for unit in nal_units(data) if nal_type(unit) not in (NAL_SPS, NAL_PPS)])


class ClipTrack(MediaStreamTrack):
    """Yields a clip's encoded packets at 30 fps, looping; aiortc's sender packs them as they are."""

    kind = "video"

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.clip = clip
        self.sent = 0
        self.keyframes = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self.sent / FPS - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        data, keyframe = self.clip.frames[self.sent % len(self.clip.frames)]
        packet = av.Packet(data)
        packet.pts = self.sent * (90_000 // FPS)
        packet.time_base = TIME_BASE
        packet.is_keyframe = keyframe
        self.sent += 1
        self.keyframes += keyframe
        return packet


@dataclass
class Studio(Publisher):
    """A studio publisher: what it sent, and the PLIs it ignored."""

    offer: str = ""
    answer: str = ""
    keyframes_sent: list[float] = field(default_factory=list)


def _count_plis(sender: RTCRtpSender, studio: Studio) -> None:
    from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

    handle = sender._handle_rtcp_packet

    async def counting(packet: object) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
            studio.plis += 1  # and ignored: pack mode has no encoder to ask
        await handle(packet)

    sender._handle_rtcp_packet = counting  # type: ignore[method-assign]


async def publish_studio(answer: Answerer, clip: Clip, frequency: float, *,
                         fmtp: str | None = None) -> Studio:
    """Publish ``clip`` (offering only its codec, as OBS does) and a tone.

    ``fmtp`` replaces the offered H.264 codecs' parameters (e.g.
    ``packetization-mode=0;profile-level-id=640028``, optionally with
    ``sprop-parameter-sets``): the offer then names one H.264 codec.
    """
    pc = new_client()
    video = ClipTrack(clip)
    audio = ToneTrack(frequency)
    transceiver = pc.addTransceiver(video, direction="sendonly")
    pc.addTransceiver(audio, direction="sendonly")
    wanted = f"video/{clip.codec}"
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() == wanted]
    if clip.codec == "h264":
        # OBS names one profile; the encoder's own (high by default) is in the stream.
        wanted_fmtp = dict(item.split("=", 1) for item in (fmtp or "packetization-mode=1").split(";"))
        mode = wanted_fmtp.get("packetization-mode", "0")
        profile = wanted_fmtp.get("profile-level-id", "42e0")[:4].lower()
        codecs = [c for c in codecs if c.parameters.get("packetization-mode") == mode
                  and str(c.parameters.get("profile-level-id", "")).startswith(profile if fmtp else "")][:1]
    transceiver.setCodecPreferences(codecs)
    studio = Studio(pc, video, audio)  # type: ignore[arg-type]
    _count_plis(transceiver.sender, studio)
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    if fmtp is not None:
        offer = _with_fmtp(offer, fmtp)
    studio.offer = offer
    studio.answer = await answer(offer)
    await pc.setRemoteDescription(RTCSessionDescription(studio.answer, "answer"))
    return studio


def _with_fmtp(sdp: str, fmtp: str) -> str:
    lines = sdp.split("\r\n")
    h264 = {line.split(":")[1].split()[0] for line in lines if line.startswith("a=rtpmap:") and "H264/" in line}
    return "\r\n".join(f"a=fmtp:{line.split(':')[1].split()[0]} {fmtp}"
                       if line.startswith("a=fmtp:") and line.split(":")[1].split()[0] in h264 else line
                       for line in lines)
