"""Codecs and roles in negotiation: H.264 in every studio profile, the codecs offered, the DTLS role of an answer."""

from __future__ import annotations

from typing import Any

import aiortc.codecs
from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

from server.media.codecs import VIDEO_CODECS, VideoCodec


# H.264 as studio publishers offer it, in aiortc's codec table. aiortc matches
# an offered H.264 codec by profile and packetization mode only; the level we
# state is what we can receive (5.2: 1080p60 and more), and with
# level-asymmetry-allowed a publisher sends at its own level.
H264_LEVEL = "34"
H264_PROFILES = ("42001f", "42e01f", "4d001f", "64001f", "640c1f")  # baseline, constrained baseline, main, high, constrained high


def register_h264_profiles() -> None:
    """Make aiortc's video codecs VP8 and H.264 in every profile and packetization mode above (idempotent)."""
    global _h264_registered
    if _h264_registered:
        return
    feedback = [RTCRtcpFeedback(type="nack"), RTCRtcpFeedback(type="nack", parameter="pli"),
                RTCRtcpFeedback(type="goog-remb")]
    table: list[RTCRtpCodecParameters] = []
    payload_type = 97

    def add(mime: str, parameters: dict[str, Any]) -> None:
        nonlocal payload_type
        table.append(RTCRtpCodecParameters(mimeType=mime, clockRate=90_000, payloadType=payload_type,
                                           rtcpFeedback=list(feedback), parameters=parameters))
        table.append(RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90_000, payloadType=payload_type + 1,
                                           parameters={"apt": payload_type}))
        payload_type += 2

    add("video/VP8", {})
    for mode in ("1", "0"):
        for profile in H264_PROFILES:
            add("video/H264", {"level-asymmetry-allowed": "1", "packetization-mode": mode,
                               "profile-level-id": profile[:4] + H264_LEVEL})
    assert payload_type <= 128, "dynamic payload types run from 96 to 127"
    aiortc.codecs.CODECS["video"][:] = table
    _h264_registered = True


_h264_registered = False


def prefer_codecs(transceiver: RTCRtpTransceiver, first: VideoCodec = "vp8") -> None:
    """Negotiate VP8 and H.264 (with RTX) for video, Opus for audio: what the program forwards.

    ``first`` leads the list: in an answer to a publisher it is the codec the
    publisher will send, if it offers both. On the answering side this must
    run before ``setRemoteDescription``.
    """
    codecs = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    if transceiver.kind == "video":
        order = {first: 0, **{name: 1 + i for i, name in enumerate(VIDEO_CODECS) if name != first}}
        video = [codec for codec in codecs if codec.mimeType.lower().removeprefix("video/") in order]
        video.sort(key=lambda codec: order[codec.mimeType.lower().removeprefix("video/")])  # stable
        rtx = [codec for codec in codecs if codec.mimeType.lower() == "video/rtx"]
        transceiver.setCodecPreferences(video + rtx)
    else:
        transceiver.setCodecPreferences([codec for codec in codecs if codec.mimeType.lower() == "audio/opus"])


def negotiated_video_codecs(transceiver: RTCRtpTransceiver) -> frozenset[VideoCodec]:
    """The video codecs a negotiated transceiver can send: VP8, and H.264 in packetization mode 1.

    Forwarded H.264 frames are packed in FU-A and STAP-A packets, which
    packetization mode 0 does not allow.
    """
    return frozenset(_sending_codecs(transceiver._codecs))


def _sending_codecs(codecs: list[RTCRtpCodecParameters]) -> dict[VideoCodec, RTCRtpCodecParameters]:
    chosen: dict[VideoCodec, RTCRtpCodecParameters] = {}
    for codec in codecs:
        name = codec.mimeType.lower()
        if name == "video/vp8":
            chosen.setdefault("vp8", codec)
        elif name == "video/h264" and str(codec.parameters.get("packetization-mode", "0")) == "1":
            chosen.setdefault("h264", codec)
    return chosen


def answer_as_dtls_server(pc: RTCPeerConnection) -> None:
    """After ``setRemoteDescription(offer)``: answer ``a=setup:passive`` when the offer allows it.

    aiortc answers ``active`` (DTLS client) by default and then offers only
    ECDSA suites, which RSA-certificate publishers such as GStreamer's
    webrtcbin refuse ("no shared cipher").
    """
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is not None and transport._role == "auto":
            transport._set_role("server")


register_h264_profiles()
