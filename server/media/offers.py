"""What an offer (or a trickled candidate) must be before the media room takes it, and what it gives back.

aiortc's parser asserts on what it does not understand, and takes some
things it fails on later, in a task of its own: everything is checked here
first, so that any failure is the client's 400 (``MediaError``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aiortc import RTCIceCandidate
from aiortc.sdp import SessionDescription


class MediaError(Exception):
    """An offer or candidate the room cannot use; ``code`` is sent to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_CANDIDATE_TYPES = {"host", "srflx", "prflx", "relay"}


def offer_problem(offer: SessionDescription) -> str | None:
    """What makes a parsed offer unusable (RFC 8829/8843 as aiortc needs it), or None."""
    mids: list[str] = []
    for address in [offer.host] + [a for m in offer.media for a in (m.host, m.rtcp_host)]:
        if address is not None and not _is_ip(address):
            return f"names {address[:40]!r} where an IP address belongs"
    for media in offer.media:
        if media.kind not in ("audio", "video"):
            return f"has a {media.kind[:20]!r} section (audio and video only)"
        if not media.rtp.muxId:
            return "has a media section without a=mid"
        mids.append(media.rtp.muxId)
        if media.dtls is None or not media.dtls.fingerprints:
            return "has a media section without a=fingerprint (DTLS)"
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            return "has a media section without a=ice-ufrag and a=ice-pwd"
        for candidate in media.ice_candidates:
            problem = candidate_problem(candidate)
            if problem:
                return f"carries a candidate whose {problem} is not valid"
    if len(set(mids)) != len(mids):
        return "repeats a mid"
    for group in offer.group:
        if any(str(item) not in mids for item in group.items):
            return f"groups a mid it has no section for ({group.semantic})"
    return None


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def candidate_problem(candidate: RTCIceCandidate) -> str | None:
    """What is wrong with a parsed remote candidate (RFC 8839 section 5.1), or None."""
    if not 1 <= candidate.component <= 256:
        return "component"
    if not 0 <= candidate.priority < 2**32:
        return "priority"
    if candidate.protocol.lower() not in ("udp", "tcp"):
        return "transport"
    if not (0 if candidate.protocol.lower() == "tcp" else 1) <= candidate.port <= 65535:
        return "port"
    if candidate.type not in _CANDIDATE_TYPES:
        return "type"
    try:
        ipaddress.ip_address(candidate.ip)
    except ValueError:
        # A browser hides its private address behind an mDNS name (a UUID under .local).
        if not (candidate.ip.endswith(".local") and len(candidate.ip) <= 255):
            return "address"
    if candidate.relatedPort is not None and not 0 <= candidate.relatedPort <= 65535:
        return "related port"
    return None


@dataclass(frozen=True)
class Answer:
    """The server's answer to an offer: the endpoint it created and the SDP to send back."""

    endpoint_id: str
    sdp: str


def refuse_unusable_offer(sdp: str) -> None:
    """Raise MediaError("bad_sdp") for an offer that cannot be answered."""
    if not sdp.startswith("v=0") or "m=" not in sdp:
        raise MediaError("bad_sdp", "the offer is not a session description")
    try:
        # aiortc's parser asserts on what it does not understand (a payload type of 300,
        # "c=IN X y"): parsed here first, so that any failure is the client's 400.
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:
        raise MediaError("bad_sdp", f"the offer cannot be parsed: {type(exc).__name__}") from None
    problem = offer_problem(parsed)
    if problem:
        # What aiortc would take now and fail on later, in a task of its own (a missing
        # fingerprint at the DTLS handshake, a bad address when the description is printed).
        raise MediaError("bad_sdp", f"the offer {problem}")
