"""Reading recordings back as a viewer would: decoded pictures and sound, with their times."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass
class Decoded:
    """A file's decoded frames: (time, mean RGB) per picture, the audio as mono float samples at 48 kHz."""

    pictures: list[tuple[float, tuple[int, int, int]]]
    audio: np.ndarray
    audio_start: float
    errors: int
    codec: str | None = None  # the video stream's

    def colours_between(self, start: float, end: float) -> list[tuple[int, int, int]]:
        return [rgb for t, rgb in self.pictures if start <= t < end]

    def first_time(self, predicate) -> float | None:  # type: ignore[no-untyped-def]
        return next((t for t, rgb in self.pictures if predicate(rgb)), None)

    def tone_energy(self, frequency: float, start: float, end: float) -> float:
        """Share of the audio's energy within ±20 Hz of ``frequency`` between two media times."""
        first = max(0, int((start - self.audio_start) * 48000))
        samples = self.audio[first:max(first, int((end - self.audio_start) * 48000))]
        if not len(samples) or not samples.any():
            return 0.0
        spectrum = np.abs(np.fft.rfft(samples)) ** 2
        freqs = np.fft.rfftfreq(len(samples), 1 / 48000)
        band = (freqs > frequency - 20) & (freqs < frequency + 20)
        return float(spectrum[band].sum() / spectrum.sum())


def decode(path: Path, *, until: float | None = None) -> Decoded:
    """Decode every picture and the sound of ``path`` (up to ``until`` seconds), counting decode errors."""
    pictures: list[tuple[float, tuple[int, int, int]]] = []
    chunks: list[np.ndarray] = []
    audio_start: float | None = None
    errors = 0
    resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context.name if container.streams.video else None
        for packet in container.demux():
            if packet.size == 0:
                continue
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                errors += 1
                continue
            for frame in frames:
                if frame.time is None:
                    continue
                if until is not None and frame.time > until:
                    continue
                if isinstance(frame, av.VideoFrame):
                    image = frame.to_ndarray(format="rgb24")
                    mean = image.reshape(-1, 3).mean(axis=0)
                    pictures.append((float(frame.time), (int(mean[0]), int(mean[1]), int(mean[2]))))
                elif isinstance(frame, av.AudioFrame):
                    if audio_start is None:
                        audio_start = float(frame.time)
                    for out in resampler.resample(frame):
                        chunks.append(out.to_ndarray().reshape(-1))
    pictures.sort()
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return Decoded(pictures, audio, audio_start or 0.0, errors, codec)
