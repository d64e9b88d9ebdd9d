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
