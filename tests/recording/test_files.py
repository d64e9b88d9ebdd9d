"""Recording files: safe paths, probing, repairing a killed file, joining parts, checksums."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from server.recording import files
from server.recording.files import EmptyRecording, UnsafePath, join, probe, repair, safe_path, sha256_of
from tests.recording.media import (
    BLUE, GREEN, RED, audio, mean_rgb, near, peak_hz, pictures, segment_children, write_webm,
)

ROOT = Path(__file__).resolve().parents[2]
KILLED_CLIP_SECONDS = 3.0  # red for the first half, green for the second
KILL_AFTER = 2.5  # seconds of writing paced in real time


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording whose writer was killed with SIGKILL mid-file, written in real time as the recorder does."""
    path = tmp_path_factory.mktemp("killed") / "part-1.webm"
    child = subprocess.Popen([sys.executable, "-m", "tests.recording.media", str(path), str(KILLED_CLIP_SECONDS)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    time.sleep(KILL_AFTER)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_webm(tmp_path_factory.mktemp("finished") / "part-1.webm", 4.0, [RED, GREEN])


@pytest.fixture
def killed_copy(killed: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(killed, tmp_path / "part-1.webm"))


def seek_lands_near(path: Path, target: float, keyframe_interval: float = 1.0) -> av.VideoFrame:
    """Seek as a player does; the first picture is the keyframe at or before ``target``."""
    with av.open(str(path)) as container:
        container.seek(round(target * av.time_base))
        frame = next(container.decode(video=0))
        assert frame.time is not None and target - keyframe_interval - 0.05 <= frame.time <= target + 0.05
        assert frame.key_frame
        return frame


def pts_per_stream(path: Path) -> dict[str, list[int]]:
    times: dict[str, list[int]] = {"video": [], "audio": []}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is not None:
                assert packet.time_base == Fraction(1, 1000)
                times[packet.stream.type].append(packet.pts)
    return times


# safe_path --------------------------------------------------------------------------------------

def test_safe_path_accepts_a_stored_path_inside_the_folder(tmp_path: Path) -> None:
    assert safe_path(tmp_path, "12/part-1.webm") == tmp_path.resolve() / "12" / "part-1.webm"


@pytest.mark.parametrize("relative", [
    "../x", "%2e%2e/x", "%2E%2E%2Fx", "/etc/passwd", "%2Fetc%2Fpasswd", "a/../../x", "a/%2e%2e/b", "12/..",
    "a\x00b", "12/%00.webm", "", "..\\x", ".",
])
def test_safe_path_refuses_what_could_lead_elsewhere(tmp_path: Path, relative: str) -> None:
    with pytest.raises(UnsafePath):
        safe_path(tmp_path, relative)


def test_safe_path_refuses_a_symlink_that_leads_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "recordings", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.webm").write_bytes(b"x")
    (root / "12").symlink_to(outside)
    with pytest.raises(UnsafePath):
        safe_path(root, "12/secret.webm")
    (root / "13").symlink_to(root / "12")
    with pytest.raises(UnsafePath):
        safe_path(root, "13/secret.webm")


# probe ------------------------------------------------------------------------------------------

def test_probe_reads_a_finished_file_from_its_header(finished: Path) -> None:
    info = probe(finished)
    assert info.duration_seconds == pytest.approx(4.0, abs=0.1)
    assert (info.has_video, info.has_audio, info.width, info.height, info.video_codec) == (True, True, 320, 240, "vp8")
    assert not info.needs_repair


def test_probe_measures_a_killed_file_by_its_last_packet(killed: Path) -> None:
    assert "Cues" not in segment_children(killed)
    with av.open(str(killed)) as container:
        assert container.duration is None
    info = probe(killed)
    assert info.needs_repair
    last_picture = pictures(killed)[-1].time
    # The kill loses about the cluster being written (500 ms); the switch to green at 1.5 s is kept.
    assert 1.6 <= info.duration_seconds <= KILL_AFTER + 0.1
    assert info.duration_seconds == pytest.approx(last_picture + 1 / 30, abs=0.05)


# repair -----------------------------------------------------------------------------------------

def test_repair_gives_a_killed_file_its_duration_and_cues(killed_copy: Path) -> None:
    before, probed = pictures(killed_copy), probe(killed_copy)
    started = time.perf_counter()
    info = repair(killed_copy)
    took = time.perf_counter() - started
    assert took < 0.5
    assert not info.needs_repair and info.duration_seconds == pytest.approx(probed.duration_seconds, abs=0.01)
    with av.open(str(killed_copy)) as container:
        assert container.duration is not None
    assert segment_children(killed_copy)[-1] == "Cues"
    assert sorted(os.listdir(killed_copy.parent)) == ["part-1.webm"]
    after = pictures(killed_copy)
    assert [(p.time, p.keyframe) for p in after] == [(p.time, p.keyframe) for p in before]
    assert near(after[0].rgb, RED) and near(after[-1].rgb, GREEN)
    assert peak_hz(audio(killed_copy)) == pytest.approx(440, abs=5)
    frame = seek_lands_near(killed_copy, 0.75 * info.duration_seconds)
    assert near(mean_rgb(frame), RED)


def test_repair_stops_at_a_last_packet_cut_short(killed_copy: Path) -> None:
    whole = probe(killed_copy).duration_seconds
    with open(killed_copy, "r+b") as handle:
        handle.truncate(killed_copy.stat().st_size - 300)
    info = repair(killed_copy)
    assert not info.needs_repair
    assert whole - 0.2 <= info.duration_seconds <= whole
    errors = 0
    with av.open(str(killed_copy)) as container:
        for packet in container.demux():
            try:
                packet.decode()
            except av.error.InvalidDataError:
                errors += 1
    assert errors == 0


def test_repair_leaves_a_finished_file_untouched(finished: Path) -> None:
    digest, modified = sha256_of(finished), finished.stat().st_mtime_ns
    assert not repair(finished).needs_repair
    assert (sha256_of(finished), finished.stat().st_mtime_ns) == (digest, modified)


def test_a_file_without_a_packet_is_an_empty_recording(killed_copy: Path) -> None:
    data = killed_copy.read_bytes()
    killed_copy.write_bytes(data[:data.index(b"\x1f\x43\xb6\x75")])  # up to the first cluster
    with pytest.raises(EmptyRecording):
        repair(killed_copy)
    killed_copy.write_bytes(b"")
    with pytest.raises(EmptyRecording):
        repair(killed_copy)
    assert sorted(os.listdir(killed_copy.parent)) == ["part-1.webm"]


# join -------------------------------------------------------------------------------------------

def test_join_puts_the_parts_end_to_end(killed: Path, tmp_path: Path) -> None:
    first = probe(killed).duration_seconds
    second = write_webm(tmp_path / "part-2.webm", 2.0, [BLUE])
    out = tmp_path / "recording.webm"
    info = join([killed, second], out)
    assert not info.needs_repair
    assert info.duration_seconds == pytest.approx(first + 2.0, abs=0.1)
    assert sorted(os.listdir(tmp_path)) == ["part-2.webm", "recording.webm"]
    assert segment_children(out)[-1] == "Cues"
    times = pts_per_stream(out)
    for kind in ("video", "audio"):
        assert all(a < b for a, b in zip(times[kind], times[kind][1:])), kind
    seen = pictures(out)
    assert near(seen[0].rgb, RED) and near(seen[-1].rgb, BLUE)
    # The second part starts where the first ended: no gap, no overlap.
    first_blue = next(p for p in seen if near(p.rgb, BLUE))
    assert first_blue.time == pytest.approx(first, abs=0.05)
    assert first_blue.keyframe
    assert all(b.time - a.time < 0.05 for a, b in zip(seen, seen[1:]))
    frame = seek_lands_near(out, 0.75 * info.duration_seconds)
    assert near(mean_rgb(frame), BLUE)
    sound = audio(out)
    assert len(sound) / 48000 == pytest.approx(info.duration_seconds, abs=0.1)
    after = round((first + 0.5) * 48000)
    assert peak_hz(sound[after:after + 24000]) == pytest.approx(440, abs=5)


def test_join_skips_a_part_stopped_before_its_first_packet(finished: Path, tmp_path: Path) -> None:
    empty = tmp_path / "part-2.webm"
    empty.write_bytes(b"")
    info = join([finished, empty], tmp_path / "recording.webm")
    assert info.duration_seconds == pytest.approx(4.0, abs=0.1)


def test_join_refuses_parts_in_other_codecs(finished: Path, tmp_path: Path) -> None:
    vp9 = tmp_path / "vp9.webm"
    with av.open(str(vp9), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode(None))
    with pytest.raises(ValueError, match="VP8"):
        join([finished, vp9], tmp_path / "recording.webm")
    assert sorted(os.listdir(tmp_path)) == ["vp9.webm"]


# sha256_of --------------------------------------------------------------------------------------

def test_sha256_of_reads_the_whole_file(tmp_path: Path) -> None:
    data = np.random.default_rng(1).bytes(files.CHUNK * 2 + 12345)
    (tmp_path / "f").write_bytes(data)
    assert sha256_of(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_sound_without_a_picture_goes_to_disk_as_it_comes(tmp_path: Path) -> None:
    """The speaker's camera gone, the hall still heard: the part must not keep the sound in memory.

    Interleaved muxing held every audio packet until a video packet came (or the part closed):
    50 packets a second in memory, and nothing on disk if the server was killed meanwhile.
    """
    import time

    from server.recording.writer import PartWriter

    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    silence = av.AudioFrame.from_ndarray(np.zeros((1, 1920), np.int16), format="s16", layout="stereo")
    silence.sample_rate = 48000
    packets = [bytes(p) for p in encoder.encode(silence)] or [b"\xf8\xff\xfe"]
    writer = PartWriter(tmp_path / "part-1.webm", (320, 240))
    try:
        header = 0
        deadline = time.monotonic() + 5
        while header == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            header = (tmp_path / "part-1.webm").stat().st_size if (tmp_path / "part-1.webm").exists() else 0
        for index in range(500):  # 10 s of sound
            writer.put("audio", packets[0], index * 20, True)
        deadline = time.monotonic() + 10
        while writer.packets < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        written = (tmp_path / "part-1.webm").stat().st_size
        assert writer.packets == 500
        assert written > header + 500 * len(packets[0]), (header, written)
    finally:
        stats = writer.close()
    assert not stats.error and stats.packets == 500
