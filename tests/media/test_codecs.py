"""server/media/codecs.py: NAL units, H.264 keyframes and parameter sets, SPS sizes, on real encoder output."""

import base64

import pytest

from server.media import codecs
from tests.media.studio import clip


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (1920, 1080), (426, 240)])
@pytest.mark.parametrize("profile", ["baseline", "main", "high"])
def test_parse_sps_reads_x264s_profile_and_cropped_size(size: tuple[int, int], profile: str) -> None:
    first = clip(None, size, profile=profile, seconds=0.1, gop_seconds=0.1).frames[0][0]
    sps = next(u for u in codecs.nal_units(first) if codecs.nal_type(u) == codecs.NAL_SPS)
    info = codecs.parse_sps(sps)
    assert (info.width, info.height) == size
    assert info.profile == {"baseline": "constrained-baseline", "main": "main", "high": "high"}[profile]
    assert codecs.frame_size("h264", first) == size


def test_keyframes_are_the_idr_frames_and_every_idr_is_made_whole() -> None:
    frames = clip((10, 200, 10), (320, 240), seconds=2, gop_seconds=1, parameter_sets_in_band=False).frames
    assert [codecs.is_h264_keyframe(d) for d, _ in frames] == [k for _, k in frames]
    sets = codecs.ParameterSets()
    repaired = [sets.repair(data) for data, _ in frames]
    # The second IDR came without SPS and PPS: the first's are put before it.
    assert [k for _, k in repaired] == [k for _, k in frames]
    assert sets.inserted == 1
    types = [codecs.nal_type(u) for u in codecs.nal_units(repaired[30][0])]
    assert types.index(codecs.NAL_SPS) < types.index(codecs.NAL_PPS) < types.index(codecs.NAL_IDR)
    import av
    decoder = av.CodecContext.create("h264", "r")
    assert len([p for data, _ in repaired[30:] for p in decoder.decode(av.Packet(data))]) == 30


def test_an_idr_without_parameter_sets_ever_seen_is_not_a_keyframe() -> None:
    frames = clip((10, 200, 10), (320, 240), seconds=2, gop_seconds=1, parameter_sets_in_band=False).frames
    assert codecs.ParameterSets().repair(frames[30][0]) == (frames[30][0], False)
    # ...unless the SDP gave them.
    units = codecs.nal_units(frames[0][0])[:2]
    sprop = ",".join(base64.b64encode(u).decode() for u in units) + ",!!notbase64,"
    data, keyframe = codecs.ParameterSets(codecs.parse_sprop(sprop)).repair(frames[30][0])
    assert keyframe and codecs.nal_units(data)[:2] == units


def test_nal_units_split_three_and_four_byte_start_codes() -> None:
    stream = b"\x00\x00\x00\x01\x67\x42\x00" + b"\x00\x00\x01\x68\xce" + b"\x00\x00\x01\x65\x88\x80\x00"
    assert codecs.nal_units(stream) == [b"\x67\x42", b"\x68\xce", b"\x65\x88\x80"]
    assert codecs.nal_units(b"") == [] and codecs.nal_units(b"\x00\x00") == []


@pytest.mark.parametrize("junk", [b"", b"\x67", b"\x67\x64\x00\x28", b"\x67" + b"\x00" * 40, b"\x67\xff\xff\xff\xff"])
def test_a_malformed_sps_is_a_value_error(junk: bytes) -> None:
    with pytest.raises(ValueError):
        codecs.parse_sps(junk)
    assert codecs.h264_size(codecs.START_CODE + junk) is None


def test_vp8_keyframe_and_size() -> None:
    first, keyframe = clip((1, 2, 3), (320, 240), codec="vp8", seconds=1, gop_seconds=1).frames[0]
    assert keyframe and codecs.is_vp8_keyframe(first) and codecs.vp8_size(first) == (320, 240)
    assert codecs.frame_size("vp8", first) == (320, 240)
