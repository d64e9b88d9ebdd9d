"""The video codecs the program carries, as bytes: VP8 and H.264 frames, their keyframes and sizes.

Everything here is pure (no aiortc, no PyAV): the receiver hook
(``server.media.hooks``) makes an :class:`EncodedFrame` of each frame a
publisher sends, and the rest of the media path reads only that.

H.264 frames travel in Annex B form (start codes before each NAL unit), as
aiortc's depacketizer makes them. A decoder can start only at an IDR picture
that it has the parameter sets (SPS and PPS) for; publishers send those in
band before every IDR (browsers, x264 in OBS), once at the start (some
hardware encoders), or only in the SDP (``sprop-parameter-sets``).
:class:`ParameterSets` remembers the latest ones, from the SDP or the stream,
and puts them before every IDR that comes without, so every viewer that
joins, every switch and every recording part starts decodable.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar, Literal, TypeAlias

VideoCodec: TypeAlias = Literal["vp8", "h264"]
VIDEO_CODECS: tuple[VideoCodec, ...] = ("vp8", "h264")
VIDEO_CLOCK = 90_000


@dataclass(slots=True, eq=False)
class EncodedFrame:
    """One encoded video frame of the program, shared by every subscriber.

    ``pts`` is on the 90 kHz RTP clock; the program rewrites it once, before
    fan-out, to keep one monotonic timeline across switches. ``bytes(frame)``
    and ``time_base`` read like an ``av.Packet``'s.
    """

    codec: VideoCodec
    data: bytes
    pts: int
    is_keyframe: bool
    # VP8's picture id, numbered by the stream that carries the frame (the program, a transcode): with
    # it, every viewer sends the same RTP payloads, made once (``payloads``, filled by the first sender).
    picture_id: int | None = None
    payloads: list[bytes] | None = None
    time_base: ClassVar[Fraction] = Fraction(1, VIDEO_CLOCK)

    def __bytes__(self) -> bytes:
        return self.data

    @property
    def size(self) -> int:
        return len(self.data)


# VP8 ---------------------------------------------------------------------------------------


def is_vp8_keyframe(data: bytes) -> bool:
    """The payload descriptor stripped, bit 0 of the first byte is the inverse key frame flag (RFC 6386, 9.1)."""
    return len(data) > 0 and (data[0] & 1) == 0


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height of a VP8 keyframe (RFC 6386, 9.1), or None for another frame."""
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


# H.264 -------------------------------------------------------------------------------------

NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
START_CODE = b"\x00\x00\x00\x01"


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without their start codes."""
    units: list[bytes] = []
    start = _next_start(data, 0)
    while start is not None:
        begin = start[1]
        following = _next_start(data, begin)
        end = following[0] if following is not None else len(data)
        # Trailing zero bytes (trailing_zero_8bits) belong to no unit.
        unit = data[begin:end].rstrip(b"\x00")
        if unit:
            units.append(unit)
        start = following
    return units


def _next_start(data: bytes, position: int) -> tuple[int, int] | None:
    """(where the start code begins, where its NAL unit begins) at or after ``position``."""
    found = data.find(b"\x00\x00\x01", position)
    if found < 0:
        return None
    begin = found - 1 if found > 0 and data[found - 1] == 0 else found
    return begin, found + 3


def nal_type(unit: bytes) -> int:
    return unit[0] & 0x1F if unit else 0


def annex_b(units: list[bytes]) -> bytes:
    return b"".join(START_CODE + unit for unit in units)


def is_h264_keyframe(data: bytes) -> bool:
    """The frame holds an IDR picture (where a decoder can start, given SPS and PPS)."""
    return any(nal_type(unit) == NAL_IDR for unit in nal_units(data))


def parse_sprop(value: str) -> list[bytes]:
    """The NAL units of an SDP ``sprop-parameter-sets`` value (base64, comma-separated); bad ones are skipped."""
    units = []
    for item in value.split(","):
        try:
            unit = base64.b64decode(item.strip(), validate=True)
        except (binascii.Error, ValueError):
            continue
        if unit and nal_type(unit) in (NAL_SPS, NAL_PPS):
            units.append(unit)
    return units


class ParameterSets:
    """The latest SPS and PPS of one H.264 publisher; makes every IDR frame carry them.

    ``repair(data)`` returns the frame as it should be forwarded and whether
    it is a keyframe: an IDR with SPS and PPS before it (the remembered ones
    put in where the frame lacks them). An IDR whose parameter sets were never
    seen is not a keyframe: no decoder could start there.
    """

    def __init__(self, from_sdp: list[bytes] | None = None) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self.inserted = 0
        for unit in from_sdp or []:
            self._learn(unit)

    def _learn(self, unit: bytes) -> None:
        if nal_type(unit) == NAL_SPS:
            self.sps = unit
        elif nal_type(unit) == NAL_PPS:
            self.pps = unit

    def repair(self, data: bytes) -> tuple[bytes, bool]:
        units = nal_units(data)
        types = [nal_type(unit) for unit in units]
        for unit in units:
            self._learn(unit)
        if NAL_IDR not in types:
            return data, False
        if NAL_SPS in types and NAL_PPS in types:
            return data, True
        if self.sps is None or self.pps is None:
            return data, False
        # Parameter sets go after an access unit delimiter, before everything else.
        head = 1 if types and types[0] == NAL_AUD else 0
        body = [unit for unit in units[head:] if nal_type(unit) not in (NAL_SPS, NAL_PPS)]
        self.inserted += 1
        return annex_b(units[:head] + [self.sps, self.pps] + body), True


@dataclass(frozen=True)
class SpsInfo:
    profile_idc: int
    constraints: int
    level_idc: int
    width: int
    height: int

    @property
    def profile(self) -> str:
        if self.profile_idc == 66:
            return "constrained-baseline" if self.constraints & 0x40 else "baseline"
        return {77: "main", 88: "extended", 100: "high", 110: "high-10", 122: "high-422",
                244: "high-444"}.get(self.profile_idc, f"profile-{self.profile_idc}")


class _Bits:
    """An RBSP bit reader (emulation-prevention bytes removed), with Exp-Golomb codes."""

    def __init__(self, payload: bytes) -> None:
        self._data = payload.replace(b"\x00\x00\x03", b"\x00\x00")
        self._position = 0

    def bit(self) -> int:
        byte = self._position >> 3
        if byte >= len(self._data):
            raise ValueError("the SPS ends too early")
        value = (self._data[byte] >> (7 - (self._position & 7))) & 1
        self._position += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("an Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def parse_sps(unit: bytes) -> SpsInfo:
    """Profile, level and picture size of an SPS NAL unit (ITU-T H.264, 7.3.2.1.1); ValueError if malformed."""
    if nal_type(unit) != NAL_SPS or len(unit) < 4:
        raise ValueError("not a sequence parameter set")
    bits = _Bits(unit[1:])
    profile_idc, constraints, level_idc = bits.bits(8), bits.bits(8), bits.bits(8)
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc == 3:
            bits.bit()  # separate_colour_plane_flag
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.bit()  # qpprime_y_zero_transform_bypass_flag
        if bits.bit():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format_idc != 3 else 12):
                if bits.bit():
                    _skip_scaling_list(bits, 16 if index < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field_flag
    bits.bit()  # direct_8x8_inference_flag
    width, height = width_mbs * 16, (2 - frame_mbs_only) * height_units * 16
    if bits.bit():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        unit_x = 1 if chroma_format_idc in (0, 3) else 2
        unit_y = (2 - frame_mbs_only) * (2 if chroma_format_idc == 1 else 1)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    if width <= 0 or height <= 0:
        raise ValueError("the SPS crops the whole picture")
    return SpsInfo(profile_idc, constraints, level_idc, width, height)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last, following = 8, 8
    for _ in range(size):
        if following:
            following = (last + bits.se() + 256) % 256
        last = following or last


def h264_size(data: bytes) -> tuple[int, int] | None:
    """Picture size from the first SPS in an Annex B frame, or None."""
    for unit in nal_units(data):
        if nal_type(unit) == NAL_SPS:
            try:
                info = parse_sps(unit)
            except ValueError:
                return None
            return info.width, info.height
    return None


def frame_size(codec: VideoCodec, data: bytes) -> tuple[int, int] | None:
    """The picture size a keyframe announces, or None."""
    return vp8_size(data) if codec == "vp8" else h264_size(data)
