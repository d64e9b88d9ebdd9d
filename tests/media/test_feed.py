"""A program-feed subscription without any peer connection: what the recorder and a relay uplink will read.

The subscriber pulls the shared encoded packets with ``recv()`` and decodes
them here, so the test sees the pixels and the sound, not a counter.
"""

from __future__ import annotations

import asyncio
import math

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError

from server.media.codecs import EncodedFrame
from server.media.feed import Subscription
from server.media.hooks import rtp_payloads
from server.media.room import MediaRoom
from tests.media.clients import close_to, publish, wait_until
from tests.media.test_room import RED, answerer


async def read_video(subscription: Subscription, frames: int) -> list[tuple[av.Packet, np.ndarray]]:
    decoder = av.CodecContext.create("vp8", "r")
    out = []
    assert subscription.video is not None
    while len(out) < frames:
        packet = await asyncio.wait_for(subscription.video.recv(), 10)
        for frame in decoder.decode(av.Packet(bytes(packet))):
            out.append((packet, frame.to_ndarray(format="rgb24")))
    return out


async def read_audio(subscription: Subscription, seconds: float) -> np.ndarray:
    decoder = av.CodecContext.create("opus", "r")
    samples: list[np.ndarray] = []
    assert subscription.audio is not None
    while sum(len(s) for s in samples) < 48000 * seconds:
        packet = await asyncio.wait_for(subscription.audio.recv(), 10)
        for frame in decoder.decode(av.Packet(bytes(packet))):
            data = frame.to_ndarray()
            # Planar float (fltp) from FFmpeg's Opus decoder: one row per channel; keep the left.
            samples.append((data[0] if frame.format.is_planar else data.reshape(-1)[::2]).astype(np.float64))
    return np.concatenate(samples)


def energy_at(samples: np.ndarray, frequency: float) -> float:
    if not samples.any():
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 48000)
    band = (freqs > frequency - 20) & (freqs < frequency + 20)
    return float(spectrum[band].sum() / spectrum.sum())


async def test_a_subscriber_without_webrtc_reads_the_program_as_it_is_forwarded(room: MediaRoom) -> None:
    room.show("speaker")
    speaker = await publish(answerer(room, "publish", "speaker"), RED, 440, steady=True)
    try:
        await wait_until(lambda: room.on_air == "speaker", timeout=10)
        recorder = room.feed.subscribe(None)
        video = await read_video(recorder, 30)
        # It starts on a keyframe (a decoder, or a file, cannot start elsewhere), timestamps only go forward.
        assert video[0][0].is_keyframe
        pts = [packet.pts for packet, _ in video]
        assert pts == sorted(pts) and len(set(pts)) == len(pts)
        # The program numbers its VP8 frames one after the other (every viewer's payload descriptor), so
        # each frame's RTP payloads are made once, by the first sender, and are the same for every viewer.
        ids = [packet.picture_id for packet, _ in video]
        assert all(b == (a + 1) % (1 << 15) for a, b in zip(ids, ids[1:])), ids
        packet = video[-1][0]
        payloads = rtp_payloads(packet)
        assert payloads is rtp_payloads(packet) and payloads == Vp8Encoder._packetize(packet.data, packet.picture_id)
        for _, image in video:
            centre = image[image.shape[0] // 4: 3 * image.shape[0] // 4, image.shape[1] // 4: 3 * image.shape[1] // 4]
            assert close_to(tuple(int(v) for v in centre.reshape(-1, 3).mean(axis=0)), RED)
        # It hears everyone: the speaker's tone.
        assert energy_at((await read_audio(recorder, 1.5))[-48000:], 440) > 0.5

        # Taken back: its tracks end, and the feed no longer queues anything for them.
        room.feed.unsubscribe(recorder)
        assert recorder.video not in room.feed.video.fanout.tracks
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(recorder.video.recv(), 2)  # type: ignore[union-attr]
        room.feed.unsubscribe(recorder)  # twice is harmless
    finally:
        await speaker.close()


async def test_a_subscription_owned_by_a_publisher_is_its_mix_minus(room: MediaRoom) -> None:
    room.show("speaker")
    speaker = await publish(answerer(room, "publish", "speaker"), RED, 440)
    try:
        mine = room.feed.subscribe("speaker", video=False)
        assert mine.video is None
        everyone = room.feed.subscribe(None, video=False)
        heard = (await read_audio(everyone, 1.5))[-48000:]
        samples = (await read_audio(mine, 1.5))[-48000:]
        # The only voice in the room is its own, so it hears silence where everyone else hears the tone.
        assert energy_at(heard, 440) > 0.5
        assert math.sqrt(float(np.mean(samples ** 2))) < 0.01 * math.sqrt(float(np.mean(heard ** 2)))
        room.feed.unsubscribe(everyone)
        room.feed.unsubscribe(mine)
    finally:
        await speaker.close()


def test_rtp_payloads_are_shared_when_every_viewer_would_make_the_same() -> None:
    keyframe = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(3000)
    unnumbered = EncodedFrame("vp8", keyframe, 0, True)
    assert rtp_payloads(unnumbered) is None  # each sender numbers it itself
    numbered = EncodedFrame("vp8", keyframe, 0, True, picture_id=77)
    made = rtp_payloads(numbered)
    assert made is not None and len(made) > 1 and made is rtp_payloads(numbered)
    assert made == Vp8Encoder._packetize(keyframe, 77)
    access_unit = b"\x00\x00\x00\x01\x67\x42" + bytes(40) + b"\x00\x00\x00\x01\x65" + bytes(2000)  # SPS, IDR
    h264 = EncodedFrame("h264", access_unit, 0, True)
    assert rtp_payloads(h264) is rtp_payloads(h264) and len(rtp_payloads(h264) or []) > 1
