"""A viewer's RTP stream: the header fields that differ per viewer, written around shared payloads.

Every viewer of the program receives the same payloads (a frame is
packetized once, :func:`server.media.hooks.rtp_payloads`); what is its own is
the SSRC, the sequence numbers, the timestamp offset and the header
extensions (its ``mid``, the send time).  :class:`RtpStream` writes exactly
those: the 12 fixed bytes of each packet, and once per frame the extension
block (RFC 8285) that all the frame's packets carry.  No
packet object is made, and a frame's clock is read once.

This module knows RTP only (RFC 3550, RFC 8285); it uses no private part of
aiortc, which :mod:`server.media.hooks` keeps.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_FIXED = struct.Struct("!BBHII")  # V=2 P X CC, M PT, sequence number, timestamp, SSRC
_ONE_BYTE_PROFILE = b"\xbe\xde"
_TWO_BYTE_PROFILE = b"\x10\x00"
_WITH_EXTENSION = 0x90  # version 2, extension bit
_WITHOUT_EXTENSION = 0x80


@dataclass(frozen=True)
class ExtensionIds:
    """The header extension ids a viewer negotiated (0: not negotiated)."""

    mid: int = 0
    abs_send_time: int = 0


def _element(ext_id: int, value: bytes, two_byte: bool) -> bytes:
    if two_byte:
        return bytes([ext_id, len(value)]) + value
    return bytes([(ext_id << 4) | (len(value) - 1)]) + value


class RtpStream:
    """One sender's RTP numbering, and the packets of each frame it sends.

    ``sequence_number`` and ``timestamp_origin`` start where the caller says
    (random, RFC 3550 section 5.1); :meth:`frame` returns the frame's packets
    as bytes, ready for SRTP, and advances the sequence number.
    """

    def __init__(self, ssrc: int, ids: ExtensionIds, mid: str | None, sequence_number: int,
                 timestamp_origin: int) -> None:
        if not (0 <= ids.mid <= 255 and 0 <= ids.abs_send_time <= 255):
            raise ValueError("header extension ids are 1 to 255")
        self.ssrc = ssrc
        self.sequence_number = sequence_number
        self.timestamp_origin = timestamp_origin
        mid_bytes = mid.encode() if mid is not None and ids.mid else b""
        if len(mid_bytes) > 255:
            raise ValueError("a mid is at most 255 bytes")
        # The one-byte form where it can carry them, as aiortc chooses (RFC 8285 sections 4.2, 4.3).
        two_byte = max(ids.mid, ids.abs_send_time) > 14 or len(mid_bytes) > 16
        self._profile = _TWO_BYTE_PROFILE if two_byte else _ONE_BYTE_PROFILE
        # The extension block less the send time's value: mid first, then the send time's element header.
        self._mid = _element(ids.mid, mid_bytes, two_byte) if mid_bytes else b""
        self._send_time = b""
        if ids.abs_send_time:
            self._send_time = bytes([ids.abs_send_time, 3]) if two_byte else bytes([(ids.abs_send_time << 4) | 2])
        size = len(self._mid) + (len(self._send_time) + 3 if self._send_time else 0)
        self._padding = b"\x00" * (-size % 4)
        self._words = struct.pack("!H", (size + len(self._padding)) // 4)
        self._first = _WITH_EXTENSION if size else _WITHOUT_EXTENSION

    def extensions(self, ntp: int) -> bytes:
        """The frame's extension block: the stream's mid and the send time ``ntp`` (64-bit NTP)."""
        if self._first == _WITHOUT_EXTENSION:
            return b""
        parts = [self._profile, self._words, self._mid]
        if self._send_time:
            # abs-send-time: 6.18 fixed point seconds, 24 bits.
            parts += (self._send_time, ((ntp >> 14) & 0x00FFFFFF).to_bytes(3, "big"))
        parts.append(self._padding)
        return b"".join(parts)

    def timestamp(self, media_time: int) -> int:
        """The RTP timestamp of a frame at ``media_time`` (in the codec's clock)."""
        return (self.timestamp_origin + media_time) & 0xFFFFFFFF

    def frame(self, payloads: list[bytes], payload_type: int, timestamp: int, ntp: int) -> list[bytes]:
        """The frame's packets: each payload behind this stream's header; the marker on the last."""
        first, ssrc, pack = self._first, self.ssrc, _FIXED.pack
        extensions = self.extensions(ntp)
        sequence_number = self.sequence_number
        last = len(payloads) - 1
        packets = []
        for index, payload in enumerate(payloads):
            marker_type = payload_type | 0x80 if index == last else payload_type
            packets.append(b"".join((pack(first, marker_type, sequence_number, timestamp, ssrc), extensions, payload)))
            sequence_number = (sequence_number + 1) & 0xFFFF
        self.sequence_number = sequence_number
        return packets
