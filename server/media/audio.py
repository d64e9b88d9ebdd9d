"""The program's audio: every active publisher decoded once, mixed, encoded once per variant.

Mix-minus: a publisher never hears itself back.  Each viewer names the
publisher it belongs to (its participant key); viewers whose key is among the
current inputs get the mix without that input, everyone else gets the full mix.
A variant is encoded once per 20 ms tick however many viewers share it, and
every variant's packets carry the same running pts, so a viewer moving from
one variant to another (a hall given the floor) keeps a monotonic timeline.

The viewers are kept grouped by variant as they come and go and as inputs
change (a tick does not sort them again), and a tick sums the inputs once:
a publisher's variant is that sum less its own contribution.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.media.stats import MediaStats
from server.media.fanout import ForwardTrack

log = logging.getLogger(__name__)

RATE = 48_000
CHANNELS = 2
TICK_SAMPLES = 960  # 20 ms at 48 kHz
TICK = TICK_SAMPLES / RATE
TIME_BASE = Fraction(1, RATE)
# An input buffers at most this much; older audio is dropped to bound latency.
MAX_BUFFERED_TICKS = 10
# An input starts contributing once this much has arrived (absorbs jitter).
PREFILL_TICKS = 2


class AudioInput:
    """A publisher's decoded audio, resampled to 48 kHz stereo s16 and buffered per tick."""

    def __init__(self, key: str, track: MediaStreamTrack) -> None:
        self.key = key
        self._track = track
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE)
        self._pending = np.zeros(0, dtype=np.int16)
        self._ticks: deque[np.ndarray] = deque()
        self._started = False
        self.frames = 0
        self.underruns = 0
        self._task = asyncio.create_task(self._consume(), name=f"audio-input-{key}")

    async def _consume(self) -> None:
        while True:
            try:
                frame = await self._track.recv()
            except MediaStreamError:
                return
            self.frames += 1
            for resampled in self._resampler.resample(frame):
                samples = resampled.to_ndarray().reshape(-1)
                self._pending = np.concatenate([self._pending, samples])
            per_tick = TICK_SAMPLES * CHANNELS
            while len(self._pending) >= per_tick:
                self._ticks.append(self._pending[:per_tick])
                self._pending = self._pending[per_tick:]
            while len(self._ticks) > MAX_BUFFERED_TICKS:
                self._ticks.popleft()

    def take(self) -> np.ndarray | None:
        """The next 20 ms (interleaved stereo int16), or None while buffering or underrun."""
        if not self._started:
            if len(self._ticks) < PREFILL_TICKS:
                return None
            self._started = True
        if not self._ticks:
            self.underruns += 1
            self._started = False
            return None
        return self._ticks.popleft()

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


class _Variant:
    """One mix (all inputs, or all but one) and its Opus encoder."""

    def __init__(self) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = RATE
        codec.layout = "stereo"
        codec.format = "s16"
        codec.bit_rate = 64_000
        codec.time_base = TIME_BASE
        codec.options = {"frame_duration": "20", "application": "audio"}
        self.codec = codec
        self.tracks: set[ForwardTrack] = set()

    def encode(self, samples: np.ndarray, pts: int) -> list[av.Packet]:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = RATE
        frame.pts = pts
        frame.time_base = TIME_BASE
        packets = self.codec.encode(frame)
        for packet in packets:
            # The encoder's own pts lags by its lookahead; the tick's pts keeps
            # every variant on one timeline.
            packet.pts = pts
            packet.time_base = TIME_BASE
        return packets


class ProgramAudio:
    """Mixes the active publishers every 20 ms and feeds each viewer its mix-minus variant."""

    def __init__(self, stats: MediaStats | None = None) -> None:
        self.stats = stats
        self.inputs: dict[str, AudioInput] = {}
        self.viewers: dict[ForwardTrack, str | None] = {}
        # Kept as viewers come and go and inputs change: owner key -> its tracks, and variant -> the tracks
        # that hear it (an input's key: its mix-minus; None: the full mix, for every other viewer).
        self._owned: dict[str | None, set[ForwardTrack]] = {}
        self._groups: dict[str | None, set[ForwardTrack]] = {}
        self._variants: dict[str | None, _Variant] = {}
        self._pts = 0
        self.ticks = 0
        self.encodes = 0
        self._task: asyncio.Task[None] | None = None
        # Off before the session starts; muted inputs are left out of every mix.
        self.enabled = True
        self.muted: set[str] = set()
        # A relay's program: mixed upstream, forwarded as it comes (forward()), never mixed here.
        self.forwarding = False

    def start(self) -> None:
        if self._task is None and not self.forwarding:
            self._task = asyncio.create_task(self._run(), name="program-audio")

    def add_input(self, source: AudioInput) -> None:
        self.inputs[source.key] = source
        self._regroup(source.key)

    def remove_input(self, key: str) -> AudioInput | None:
        source = self.inputs.pop(key, None)
        self._regroup(key)
        return source

    def viewer_track(self, owner_key: str | None) -> ForwardTrack:
        track = ForwardTrack("audio")
        self.viewers[track] = owner_key
        self._owned.setdefault(owner_key, set()).add(track)
        self._groups.setdefault(self._variant_of(owner_key), set()).add(track)
        return track

    def discard(self, track: ForwardTrack) -> None:
        if track not in self.viewers:
            return
        owner = self.viewers.pop(track)
        self._remove(self._owned, owner, track)
        self._remove(self._groups, self._variant_of(owner), track)

    def groups(self) -> dict[str | None, set[ForwardTrack]]:
        """Variant -> the tracks that hear it (read-only: for tests and diagnostics)."""
        return {variant: set(tracks) for variant, tracks in self._groups.items()}

    def _variant_of(self, owner: str | None) -> str | None:
        return owner if owner is not None and owner in self.inputs else None

    def _regroup(self, key: str) -> None:
        """``key`` became an input or stopped being one: its own viewers move to its mix-minus or back."""
        own = self._owned.get(key)
        if not own:
            return
        now = self._variant_of(key)
        before = None if now is not None else key
        for track in own:
            self._remove(self._groups, before, track)
            self._groups.setdefault(now, set()).add(track)

    def _remove(self, index: dict[str | None, set[ForwardTrack]], name: str | None, track: ForwardTrack) -> None:
        tracks = index.get(name)
        if tracks is None:
            return
        tracks.discard(track)
        if not tracks:
            del index[name]
            if index is self._groups:
                self._variants.pop(name, None)  # nobody hears it: its encoder goes

    def forward(self, packet: av.Packet) -> None:
        """One packet of a mix made upstream (a relay's uplink): to every viewer as it is."""
        self.forwarding = True
        if not self.enabled:
            return
        ended = []
        for track in self.viewers:
            if track.readyState != "live":
                ended.append(track)
                continue
            track.push(packet)
        for track in ended:
            self.discard(track)

    async def _run(self) -> None:
        started = time.monotonic()
        while True:
            self.ticks += 1
            began = time.perf_counter()
            try:
                self.tick()
            except Exception:
                log.exception("audio mix tick failed")
            if self.stats is not None:
                self.stats.mix_ticks += 1
                self.stats.mix_seconds += time.perf_counter() - began
            # Schedule against the start time so the 20 ms cadence does not drift.
            delay = started + self.ticks * TICK - time.monotonic()
            await asyncio.sleep(max(0.0, delay))

    def mixes(self, chunks: dict[str, np.ndarray]) -> dict[str | None, np.ndarray]:
        """Each variant heard now, from this tick's inputs: the sum once, less a publisher's own part."""
        total = np.zeros(TICK_SAMPLES * CHANNELS, dtype=np.int32)
        for chunk in chunks.values():
            total += chunk
        mixes = {}
        for variant_key in self._groups:
            own = chunks.get(variant_key) if variant_key is not None else None
            mix = total if own is None else total - own
            mixes[variant_key] = np.clip(mix, -32768, 32767).astype(np.int16)
        return mixes

    def tick(self) -> None:
        """Mix and send one 20 ms step."""
        chunks = {key: source.take() for key, source in self.inputs.items()}
        chunks = {key: chunk for key, chunk in chunks.items() if chunk is not None and key not in self.muted}
        if not self.enabled:
            self._pts += TICK_SAMPLES
            return
        ended: list[ForwardTrack] = []
        for variant_key, samples in self.mixes(chunks).items():
            variant = self._variants.get(variant_key)
            if variant is None:
                variant = self._variants[variant_key] = _Variant()
            packets = variant.encode(samples, self._pts)
            self.encodes += 1
            for track in self._groups[variant_key]:
                if track.readyState != "live":
                    ended.append(track)
                    continue
                for packet in packets:
                    track.push(packet)
        for track in ended:
            self.discard(track)
        self._pts += TICK_SAMPLES

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for source in list(self.inputs.values()):
            await source.close()
        self.inputs.clear()
