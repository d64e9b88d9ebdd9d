"""One live session's media: publishers in, the program feed out to every viewer.

The room knows participants only by their key (``server.live.roster``); who
may publish, and whose picture is on air, is decided by the signaling layer
from the domain rules.  Every endpoint is one ``RTCPeerConnection`` answering
the client's offer, as in WHIP (publish) and WHEP (view): a hall that both
watches and speaks holds two, so no renegotiation is ever needed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.sdp import candidate_from_sdp

from server.media import hooks
from server.media.audio import AudioInput, ProgramAudio
from server.media.fanout import ForwardTrack
from server.media.layers import LayerPolicy, LowLayer
from server.media.peer import IceConfig, new_peer
from server.media.video import EncodedVideoSource, ProgramVideo

log = logging.getLogger(__name__)


class MediaError(Exception):
    """An offer or candidate the room cannot use; ``code`` is sent to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Endpoint:
    id: str
    key: str
    kind: str  # "publish" | "view"
    pc: RTCPeerConnection
    video: EncodedVideoSource | None = None
    audio: AudioInput | None = None
    tracks: list[ForwardTrack] = field(default_factory=list)
    receiving: bool = False
    layers: LayerPolicy | None = None


class MediaRoom:
    """The media of one session."""

    def __init__(self, ice: IceConfig, *, on_state: Callable[[Endpoint], None] = lambda e: None) -> None:
        self.ice = ice
        self.video = ProgramVideo()
        self.audio = ProgramAudio()
        self.endpoints: dict[str, Endpoint] = {}
        # The same endpoints by participant key: lookups per key stay O(1) with thousands of viewers.
        self._by_key: dict[str, dict[str, Endpoint]] = {}
        # Called when an endpoint connects, starts receiving or closes (the roll call shows it).
        self.on_state = on_state
        self._closed = False
        # Whose picture should be on air, even before their video arrives.
        self._wants_on_air: str | None = None

    # publishing ---------------------------------------------------------------

    async def publish(self, key: str, offer_sdp: str) -> Endpoint:
        """Accept a publisher's offer (camera and microphone); the answer is in ``endpoint.pc``."""
        self._check_offer(offer_sdp)
        await self.close_key(key, "publish")
        pc = new_peer(self.ice)
        endpoint = self._add(Endpoint(uuid.uuid4().hex, key, "publish", pc))
        video = pc.addTransceiver("video", direction="recvonly")
        audio = pc.addTransceiver("audio", direction="recvonly")
        hooks.prefer_vp8_opus(video)
        hooks.prefer_vp8_opus(audio)
        hooks.receive_encoded(video.receiver)

        @pc.on("track")
        def on_track(track: object) -> None:
            if getattr(track, "kind", None) == "video" and endpoint.video is None:
                endpoint.video = EncodedVideoSource(key, track, video.receiver, pc,  # type: ignore[arg-type]
                                                    self.video.on_packet)
                if self._wants_on_air == key:
                    self.video.show(endpoint.video)
            elif getattr(track, "kind", None) == "audio" and endpoint.audio is None:
                endpoint.audio = AudioInput(key, track)  # type: ignore[arg-type]
                self.audio.add_input(endpoint.audio)

        self._watch(endpoint)
        await self._answer(endpoint, offer_sdp)
        return endpoint

    def show(self, key: str | None) -> None:
        """Put ``key``'s video on air (at its next keyframe); it may not be publishing yet."""
        self._wants_on_air = key
        source = self.publisher_video(key) if key else None
        self.video.show(source)

    def set_layer(self, track: ForwardTrack, layer: str) -> None:
        if self.video.low is None:
            self.video.low = LowLayer(asyncio.get_running_loop(), self.video.request_keyframe)
        self.video.set_layer(track, layer, self.video.low)
        log.info("viewer moved to the %s layer", layer)

    def set_live(self, live: bool) -> None:
        """Before the session starts (and after it ends) nothing goes on air."""
        self.video.enabled = live
        self.audio.enabled = live
        if live:
            self.video.request_keyframe()

    def publisher_video(self, key: str) -> EncodedVideoSource | None:
        for endpoint in self.endpoints_of(key):
            if endpoint.kind == "publish" and endpoint.video is not None:
                return endpoint.video
        return None

    def is_publishing(self, key: str) -> bool:
        return any(e.kind == "publish" for e in self.endpoints_of(key))

    def is_receiving(self, key: str) -> bool:
        return any(e.receiving for e in self.endpoints_of(key))

    def endpoints_of(self, key: str) -> list[Endpoint]:
        return list(self._by_key.get(key, {}).values())

    def _add(self, endpoint: Endpoint) -> Endpoint:
        self.endpoints[endpoint.id] = endpoint
        self._by_key.setdefault(endpoint.key, {})[endpoint.id] = endpoint
        return endpoint

    # viewing ---------------------------------------------------------------------

    async def view(self, key: str, offer_sdp: str) -> Endpoint:
        """Accept a viewer's offer: it receives the program video and its audio mix."""
        self._check_offer(offer_sdp)
        pc = new_peer(self.ice)
        endpoint = self._add(Endpoint(uuid.uuid4().hex, key, "view", pc))

        def first_packet() -> None:
            endpoint.receiving = True
            self.on_state(endpoint)

        video_track = self.video.viewer_track(on_first_packet=first_packet)
        audio_track = self.audio.viewer_track(key)
        endpoint.tracks = [video_track, audio_track]
        for track in endpoint.tracks:
            transceiver = pc.addTransceiver(track, direction="sendonly")
            hooks.prefer_vp8_opus(transceiver)
            if track.kind == "video":
                # The viewer lost a picture: ask for a keyframe of its layer (rate-limited at the source).
                hooks.on_keyframe_request(transceiver.sender, lambda t=track: self.video.keyframe_for(t))
                # Sustained loss in its receiver reports moves it to the low layer, and back.
                policy = LayerPolicy(lambda layer, t=track: self.set_layer(t, layer),
                                     needed=lambda: self.video.bitrate)
                hooks.on_receiver_report(transceiver.sender, policy)
                endpoint.layers = policy
        self.audio.start()
        self._watch(endpoint)
        await self._answer(endpoint, offer_sdp)
        return endpoint

    # common ------------------------------------------------------------------------

    def _check_offer(self, sdp: str) -> None:
        if self._closed:
            raise MediaError("session_closed", "the session's media is closed")
        if not sdp.startswith("v=0") or "m=" not in sdp:
            raise MediaError("bad_sdp", "the offer is not a session description")

    async def _answer(self, endpoint: Endpoint, offer_sdp: str) -> None:
        """Answer the offer; on any failure (or cancellation) the endpoint is closed, never left half-made."""
        pc = endpoint.pc
        ours = len(pc.getTransceivers())
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            if len(pc.getTransceivers()) != ours:
                # Extra media lines would get receivers nobody reads (and decodes into
                # unbounded queues): one video and one audio, nothing else.
                raise MediaError("bad_sdp", "offer exactly one video and one audio section")
            hooks.answer_as_dtls_server(pc)
            await pc.setLocalDescription(await pc.createAnswer())
        except MediaError:
            await self.close_endpoint(endpoint.id)
            raise
        except (ValueError, KeyError, IndexError, AttributeError, InvalidStateError, OperationError,
                InvalidAccessError) as exc:
            # e.g. an H.264-only offer: nothing in common with VP8 + Opus.
            await self.close_endpoint(endpoint.id)
            raise MediaError("bad_sdp", f"the offer cannot be used: {exc}") from None
        except BaseException:
            await asyncio.shield(self.close_endpoint(endpoint.id))
            raise

    def _watch(self, endpoint: Endpoint) -> None:
        @endpoint.pc.on("connectionstatechange")
        async def on_state() -> None:
            state = endpoint.pc.connectionState
            if state in ("failed", "closed"):
                await self.close_endpoint(endpoint.id)
            self.on_state(endpoint)

    async def add_candidate(self, endpoint_id: str, candidate: str, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            raise MediaError("unknown_endpoint", "no such peer connection")
        if not candidate:
            return  # end of candidates
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except (ValueError, IndexError):
            raise MediaError("bad_candidate", "the candidate cannot be parsed") from None
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        try:
            await endpoint.pc.addIceCandidate(parsed)
        except ValueError as exc:
            raise MediaError("bad_candidate", str(exc)) from None

    async def close_endpoint(self, endpoint_id: str) -> None:
        endpoint = self.endpoints.pop(endpoint_id, None)
        if endpoint is None:
            return
        same_key = self._by_key.get(endpoint.key, {})
        same_key.pop(endpoint_id, None)
        if not same_key:
            self._by_key.pop(endpoint.key, None)
        if endpoint.video is not None:
            self.video.forget(endpoint.video)
            await endpoint.video.close()
        if endpoint.audio is not None:
            if self.audio.inputs.get(endpoint.key) is endpoint.audio:
                self.audio.remove_input(endpoint.key)
            await endpoint.audio.close()
        for track in endpoint.tracks:
            self.video.fanout.discard(track)
            if self.video.low is not None:
                self.video.low.fanout.discard(track)
            self.audio.discard(track)
            track.stop()
        endpoint.receiving = False
        await endpoint.pc.close()
        self.on_state(endpoint)

    async def close_key(self, key: str, kind: str | None = None) -> None:
        for endpoint in [e for e in self.endpoints_of(key) if kind in (None, e.kind)]:
            await self.close_endpoint(endpoint.id)

    async def close(self) -> None:
        self._closed = True
        for endpoint_id in list(self.endpoints):
            await self.close_endpoint(endpoint_id)
        await self.audio.close()
        if self.video.low is not None:
            self.video.low.close()
