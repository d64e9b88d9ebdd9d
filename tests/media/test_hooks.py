"""The private aiortc/aioice names server/media/hooks.py relies on still exist.

When an aiortc or aioice upgrade moves one of them, this fails with the name,
before anything subtler breaks.
"""

import inspect
from importlib.metadata import version

import aioice.ice
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport

from server.media.hooks import is_vp8_keyframe


def test_pinned_versions() -> None:
    # pyproject pins these exactly; a different version needs this file reviewed.
    assert version("aiortc") == "1.16.0"
    assert version("aioice") == "0.13.0"


def test_receiver_internals() -> None:
    source = inspect.getsource(RTCRtpReceiver)
    assert "self.__decoder_queue" in source and "self.__decoder_thread" in source
    # The receiver hands (codec, frame) to the queue we replace, and its track has a _queue.
    assert "self.__decoder_queue.put((codec, encoded_frame))" in source
    assert "self._track._queue" in source
    assert hasattr(RTCRtpReceiver, "_send_rtcp_pli")


def test_sender_internals() -> None:
    assert hasattr(RTCRtpSender, "_send_keyframe")
    # Pre-encoded packets go through the encoder's pack(), never encode().
    assert "self.__encoder.pack(data)" in inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert hasattr(Vp8Encoder, "pack") and hasattr(OpusEncoder, "pack")


def test_ice_and_dtls_internals() -> None:
    assert callable(aioice.ice.get_host_addresses)
    assert hasattr(aioice.ice.StunProtocol, "send_stun") and hasattr(aioice.ice.StunProtocol, "send_data")
    assert hasattr(RTCIceTransport, "addRemoteCandidate")
    assert hasattr(RTCDtlsTransport, "_set_role")
    # An answer takes the DTLS role from the transport when it is set (answer_as_dtls_server).
    assert 'dtlsTransport._role == "auto"' in inspect.getsource(RTCPeerConnection)


def test_vp8_keyframe_bit() -> None:
    assert is_vp8_keyframe(bytes([0x10, 0x02]))  # P bit clear: keyframe
    assert not is_vp8_keyframe(bytes([0x11, 0x02]))
    assert not is_vp8_keyframe(b"")


def _rtp(sequence: int, timestamp: int, marker: bool, data: bytes) -> "RtpPacket":
    from aiortc.rtp import RtpPacket

    packet = RtpPacket(payload_type=96, sequence_number=sequence, timestamp=timestamp, marker=marker)
    packet._data = data  # what the receiver's depayloader sets
    return packet


def test_the_video_jitter_buffer_releases_a_frame_at_its_marker() -> None:
    from server.media.hooks import MarkerJitterBuffer

    buffer = MarkerJitterBuffer(capacity=512, is_video=True)
    assert buffer.add(_rtp(100, 3000, False, b"a"))[1] is None
    _, frame = buffer.add(_rtp(101, 3000, True, b"b"))
    assert frame is not None and frame.data == b"ab" and frame.timestamp == 3000  # no wait for the next frame
    # A frame whose marker was lost is released when the next one begins.
    assert buffer.add(_rtp(102, 6000, False, b"c"))[1] is None
    _, late = buffer.add(_rtp(103, 9000, False, b"d"))
    assert late is not None and late.data == b"c" and late.timestamp == 6000
    # A gap holds the frame back until the missing packet arrives.
    assert buffer.add(_rtp(105, 9000, True, b"f"))[1] is None
    _, healed = buffer.add(_rtp(104, 9000, False, b"e"))
    assert healed is not None and healed.data == b"def"


def test_the_receiver_internals_the_jitter_buffer_hook_needs() -> None:
    from aiortc.jitterbuffer import JitterBuffer

    source = inspect.getsource(RTCRtpReceiver)
    assert "self.__jitter_buffer = JitterBuffer(capacity=512, is_video=True)" in source
    assert "self.__jitter_buffer.add(packet)" in source
    assert {"_packets", "_origin", "_capacity"} <= set(vars(JitterBuffer(capacity=16)))
