"""The MP4 copy and the poster: decoded back, they show the recording's pictures and sound at its times."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from server.recording.files import join, probe
from server.recording.transcode import TranscodeError, main, transcode
from tests.recording.media import (
    BLUE, GREEN, RED, RATE, audio, boxes, encode, mean_rgb, mux, near, peak_hz, pictures, write_cut, write_webm,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Made:
    mp4: Path
    poster: Path
    progress: list[float]
    duration: float  # of the source
    seconds: float  # how long the transcode took


def make(source: Path) -> Made:
    progress: list[float] = []
    started = time.perf_counter()
    transcode(source, source.with_name("recording.mp4"), source.with_name("poster.jpg"), progress=progress.append)
    return Made(source.with_name("recording.mp4"), source.with_name("poster.jpg"), progress,
                probe(source).duration_seconds, time.perf_counter() - started)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """A 4 s recording, red then green, as its writer left it when killed (no trailer, no cues).

    The cluster being written was lost with the writer: about 3.5 s are left.
    """
    result = make(write_cut(tmp_path_factory.mktemp("mp4") / "part-1.webm", 4.0, [RED, GREEN]))
    assert 3.4 <= result.duration <= 4.0
    return result


def streams(path: Path) -> dict[str, tuple[object, ...]]:
    with av.open(str(path)) as container:
        out: dict[str, tuple[object, ...]] = {}
        for stream in container.streams:
            context = stream.codec_context
            if stream.type == "video":
                out["video"] = (context.name, context.width, context.height, context.pix_fmt)
            elif stream.type == "audio":
                out["audio"] = (context.name, context.sample_rate, context.layout.nb_channels)
        out["duration"] = (container.duration / av.time_base if container.duration else 0.0,)
        return out


def test_the_mp4_is_h264_and_aac_at_the_source_size(made: Made) -> None:
    found = streams(made.mp4)
    assert found["video"] == ("h264", 320, 240, "yuv420p")
    assert found["audio"] == ("aac", 48000, 2)
    assert found["duration"][0] == pytest.approx(made.duration, abs=0.1)
    assert sorted(os.listdir(made.mp4.parent)) == ["part-1.webm", "poster.jpg", "recording.mp4"]


def test_the_mp4_starts_with_its_index(made: Made) -> None:
    order = boxes(made.mp4)
    assert order.index("moov") < order.index("mdat")


def test_the_mp4_shows_the_pictures_at_their_times(made: Made) -> None:
    seen = pictures(made.mp4)
    assert len(seen) == pytest.approx(made.duration * 30, abs=2)
    assert all(a.time < b.time for a, b in zip(seen, seen[1:]))
    # H.264 at crf 23 is lossier than the source's VP8 on a sharp colour change.
    assert all(near(p.rgb, RED, 20) for p in seen if p.time < 1.95)
    assert all(near(p.rgb, GREEN, 20) for p in seen if p.time > 2.05)
    assert next(p.time for p in seen if near(p.rgb, GREEN)) == pytest.approx(2.0, abs=0.05)


def test_the_mp4_plays_the_tone_for_the_whole_recording(made: Made) -> None:
    sound = audio(made.mp4)
    assert len(sound) / RATE == pytest.approx(made.duration, abs=0.1)
    for second in range(3):
        assert peak_hz(sound[second * RATE:(second + 1) * RATE]) == pytest.approx(440, abs=5)


def test_the_poster_is_a_jpeg_of_the_frame_at_a_tenth(made: Made) -> None:
    data = made.poster.read_bytes()
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    with av.open(str(made.poster)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (320, 240)
    assert near(mean_rgb(frame), RED)


def test_progress_rises_to_one_at_most_ten_times_a_second(made: Made) -> None:
    assert len(made.progress) >= 2
    assert made.progress == sorted(made.progress) and made.progress[-1] == 1.0
    assert all(0.0 <= p < 1.0 for p in made.progress[:-1])
    assert len(made.progress) <= made.seconds * 10 + 2


def test_a_picture_size_change_is_scaled_to_the_first(tmp_path: Path) -> None:
    small = write_webm(tmp_path / "part-1.webm", 1.0, [RED])
    big = write_webm(tmp_path / "part-2.webm", 1.0, [GREEN], size=(640, 480))
    join([small, big], tmp_path / "joined.webm")
    result = make(tmp_path / "joined.webm")
    assert streams(result.mp4)["video"][1:3] == (320, 240)
    seen = pictures(result.mp4)
    assert near(seen[0].rgb, RED) and near(seen[-1].rgb, GREEN)
    assert len(seen) == pytest.approx(60, abs=2)


def test_an_odd_size_is_made_even(tmp_path: Path) -> None:
    result = make(write_webm(tmp_path / "part-1.webm", 1.0, [BLUE], size=(321, 241)))
    assert streams(result.mp4)["video"][1:3] == (320, 240)
    assert near(pictures(result.mp4)[0].rgb, BLUE)


def test_a_hole_in_the_sound_stays_a_hole(tmp_path: Path) -> None:
    """The recorder lost audio from 1 s to 2 s: the tone after it must still start at 2 s, with the pictures."""
    packets = [p for p in encode(3.0, [RED]) if not (p.kind == "audio" and 1000 <= p.ms < 2000)]
    mux(tmp_path / "part-1.webm", packets)
    sound = audio(make(tmp_path / "part-1.webm").mp4)
    assert len(sound) / RATE == pytest.approx(3.0, abs=0.1)

    def loud(start: float, end: float) -> float:
        return float(np.abs(sound[round(start * RATE):round(end * RATE)]).max())

    assert loud(0.2, 0.9) > 0.2 and loud(2.1, 2.9) > 0.2
    assert loud(1.1, 1.9) < 0.01


def test_a_recording_without_video_has_no_poster(tmp_path: Path) -> None:
    mux(tmp_path / "part-1.webm", [p for p in encode(1.0, [RED]) if p.kind == "audio"])
    result = make(tmp_path / "part-1.webm")
    assert set(streams(result.mp4)) == {"audio", "duration"}
    assert not result.poster.exists()
    assert peak_hz(audio(result.mp4)) == pytest.approx(440, abs=5)


def test_a_file_that_cannot_be_decoded_is_refused(tmp_path: Path) -> None:
    (tmp_path / "part-1.webm").write_bytes(b"not a recording " * 100)
    with pytest.raises(TranscodeError, match="cannot be read"):
        make(tmp_path / "part-1.webm")
    assert sorted(os.listdir(tmp_path)) == ["part-1.webm"]


def test_the_command_prints_progress_then_done(made: Made, tmp_path: Path) -> None:
    source = made.mp4.with_name("part-1.webm")
    done = subprocess.run([sys.executable, "-m", "server.recording.transcode", str(source), str(tmp_path / "r.mp4"),
                           str(tmp_path / "p.jpg")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "done"
    assert lines[:-1] and all(re.fullmatch(r"progress \d{1,3}\.\d", line) for line in lines[:-1])
    assert lines[-2] == "progress 100.0"
    assert (tmp_path / "r.mp4").stat().st_size > 0 and (tmp_path / "p.jpg").exists()


def test_the_command_reports_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "part-1.webm").write_bytes(b"")
    assert main([str(tmp_path / "part-1.webm"), str(tmp_path / "r.mp4"), str(tmp_path / "p.jpg")]) == 1
    out, err = capsys.readouterr()
    assert "done" not in out
    assert "TranscodeError" in err and "part-1.webm" in err
