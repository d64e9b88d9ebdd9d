"""The program's mix (issue 15): viewers kept grouped by variant as things change, the inputs summed once a tick.

The groups are checked against the grouping worked out from scratch (each
viewer's variant: its owner if that is an input, else the full mix) after
every step of a long random run of joins, leaves, ended tracks and inputs
coming and going; the mixes against the sum of the others, input by input.
"""

from __future__ import annotations

import random

import numpy as np

from server.media.audio import CHANNELS, TICK_SAMPLES, ProgramAudio
from server.media.fanout import ForwardTrack

N = TICK_SAMPLES * CHANNELS


class SteadyInput:
    """An input that gives the same 20 ms every tick (AudioInput's interface, without a track)."""

    def __init__(self, key: str, value: int) -> None:
        self.key = key
        self.chunk = np.full(N, value, dtype=np.int16)

    def take(self) -> np.ndarray:
        return self.chunk

    async def close(self) -> None:
        return None


def from_scratch(audio: ProgramAudio) -> dict[str | None, set[ForwardTrack]]:
    groups: dict[str | None, set[ForwardTrack]] = {}
    for track, owner in audio.viewers.items():
        groups.setdefault(owner if owner in audio.inputs else None, set()).add(track)
    return groups


async def test_each_variant_is_the_sum_less_its_own_publisher() -> None:
    audio = ProgramAudio()
    for key, value in (("point:1", 100), ("point:2", 10), ("user:9", 1)):
        audio.add_input(SteadyInput(key, value))  # type: ignore[arg-type]
    hall_1, hall_2, member, nobody = (audio.viewer_track(owner) for owner in ("point:1", "point:2", "user:5", None))
    assert audio.groups() == {"point:1": {hall_1}, "point:2": {hall_2}, None: {member, nobody}}
    chunks = {key: source.take() for key, source in audio.inputs.items()}
    mixes = audio.mixes(chunks)
    assert {key: int(mix[0]) for key, mix in mixes.items()} == {"point:1": 11, "point:2": 101, None: 111}

    # Hall 2 stops publishing: its viewer hears the full mix, and its variant's encoder goes at the next tick.
    audio.tick()
    assert "point:2" in audio._variants
    audio.remove_input("point:2")
    assert audio.groups() == {"point:1": {hall_1}, None: {member, nobody, hall_2}}
    audio.tick()
    assert set(audio._variants) == {"point:1", None}
    # Muted: left out of every mix; its own variant is then the full mix.
    audio.muted.add("point:1")
    chunks = {k: c for k, c in ((k, s.take()) for k, s in audio.inputs.items()) if k not in audio.muted}
    assert {key: int(mix[0]) for key, mix in audio.mixes(chunks).items()} == {"point:1": 1, None: 1}

    # A track that ended leaves its group at the next tick.
    nobody.stop()
    audio.tick()
    assert nobody not in audio.viewers and audio.groups()[None] == {member, hall_2}


async def test_the_sum_saturates_as_the_mix_of_the_others_did() -> None:
    audio = ProgramAudio()
    rng = np.random.default_rng(7)
    chunks = {}
    for index in range(5):
        key = f"point:{index}"
        chunk = rng.integers(-32768, 32767, N, dtype=np.int16)
        chunks[key] = chunk
        audio.add_input(SteadyInput(key, 0))  # type: ignore[arg-type]
        audio.viewer_track(key)
    audio.viewer_track(None)
    mixes = audio.mixes(chunks)
    for variant, mix in mixes.items():
        others = sum((c.astype(np.int32) for k, c in chunks.items() if k != variant), np.zeros(N, np.int32))
        assert np.array_equal(mix, np.clip(others, -32768, 32767).astype(np.int16)), variant


async def test_the_groups_follow_every_change_as_a_regrouping_from_scratch_would() -> None:
    audio = ProgramAudio()
    rng = random.Random(15)
    keys = [f"point:{i}" for i in range(6)] + [f"user:{i}" for i in range(4)] + [None]
    steps = 0
    for _ in range(3000):
        action = rng.random()
        if action < 0.35:
            audio.viewer_track(rng.choice(keys))
        elif action < 0.55 and audio.viewers:
            audio.discard(rng.choice(list(audio.viewers)))
        elif action < 0.65 and audio.viewers:
            rng.choice(list(audio.viewers)).stop()
            audio.tick()  # an ended track leaves at the next tick
        elif action < 0.85:
            key = rng.choice(keys[:-1])
            if key not in audio.inputs:
                audio.add_input(SteadyInput(key, 1))  # type: ignore[arg-type]
        else:
            key = rng.choice(keys[:-1])
            audio.remove_input(key)
        assert audio.groups() == from_scratch(audio)
        assert all(tracks for tracks in audio.groups().values())  # no empty group left behind
        steps += 1
    assert steps == 3000 and audio.viewers
