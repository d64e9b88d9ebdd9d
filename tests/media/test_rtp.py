"""server/media/rtp.py: a viewer's headers around shared payloads, read back by aiortc's own parser."""

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpSendParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from server.media.rtp import ExtensionIds, RtpStream

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def _map(**ids: int) -> HeaderExtensionsMap:
    uris = {"mid": MID, "abs_send_time": SEND_TIME}
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpSendParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=ext_id, uri=uris[name]) for name, ext_id in ids.items()]))
    return extensions


@pytest.mark.parametrize("mid", ["0", "1", "12", "a-mid-of-16-byte"])
def test_packets_read_back_as_aiortc_writes_them(mid: str) -> None:
    stream = RtpStream(0xDEADBEEF, ExtensionIds(mid=4, abs_send_time=9), mid, sequence_number=65534,
                       timestamp_origin=0xFFFFFF00)
    payloads = [b"\x10" + bytes(1100), b"\x00" + bytes(1100), b"\x00" + bytes(17)]
    ntp = 0x1234_5678_9ABC_DEF0
    timestamp = stream.timestamp(0x200)
    assert timestamp == 0x100  # wraps at 32 bits
    packets = stream.frame(payloads, 96, timestamp, ntp)
    extensions = _map(mid=4, abs_send_time=9)
    parsed = [RtpPacket.parse(packet, extensions) for packet in packets]
    assert [p.sequence_number for p in parsed] == [65534, 65535, 0]  # and on across the wrap
    assert [p.marker for p in parsed] == [0, 0, 1]
    assert {(p.ssrc, p.timestamp, p.payload_type, p.extensions.mid) for p in parsed} == {
        (0xDEADBEEF, 0x100, 96, mid)}
    assert {p.extensions.abs_send_time for p in parsed} == {(ntp >> 14) & 0xFFFFFF}
    assert [p.payload for p in parsed] == payloads
    # Byte for byte what aiortc's own serializer makes of the same packet.
    ours = RtpPacket.parse(packets[2], extensions)
    assert packets[2] == ours.serialize(extensions)
    assert stream.frame([b"x"], 111, stream.timestamp(960), ntp)[0][2:4] == (1).to_bytes(2, "big")


def test_without_extensions_a_packet_is_the_fixed_header_and_the_payload() -> None:
    stream = RtpStream(7, ExtensionIds(), "0", sequence_number=10, timestamp_origin=0)
    (packet,) = stream.frame([b"opus"], 111, 960, 0)
    assert packet == bytes([0x80, 0x80 | 111, 0, 10, 0, 0, 3, 0xC0, 0, 0, 0, 7]) + b"opus"
    # One extension alone is padded to a word.
    only_time = RtpStream(7, ExtensionIds(abs_send_time=3), None, 0, 0).frame([b"p"], 96, 0, 1 << 32)[0]
    parsed = RtpPacket.parse(only_time, _map(abs_send_time=3))
    assert parsed.extensions.abs_send_time == 1 << 18 and parsed.extensions.mid is None
    assert parsed.payload == b"p" and (len(only_time) - 12 - 1) % 4 == 0


@pytest.mark.parametrize(("ids", "mid"), [(ExtensionIds(mid=15, abs_send_time=3), "0"),
                                         (ExtensionIds(mid=1, abs_send_time=200), "1"),
                                         (ExtensionIds(mid=2, abs_send_time=3), "m" * 17)])
def test_ids_and_mids_past_the_one_byte_form_take_the_two_byte_form(ids: ExtensionIds, mid: str) -> None:
    (packet,) = RtpStream(1, ids, mid, 0, 0).frame([b"p"], 96, 0, 5 << 32)
    assert packet[12:14] == b"\x10\x00"
    extensions = _map(mid=ids.mid, abs_send_time=ids.abs_send_time)
    parsed = RtpPacket.parse(packet, extensions)
    assert (parsed.extensions.mid, parsed.extensions.abs_send_time, parsed.payload) == (mid, 5 << 18, b"p")
    assert packet == parsed.serialize(extensions)
    with pytest.raises(ValueError):
        RtpStream(1, ExtensionIds(mid=256), "0", 0, 0)
