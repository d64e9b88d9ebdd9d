"""One live session's media: publishers' peer connections in, the program feed out.

The room knows participants only by their key (``server.live.events.hall_key``
and ``user_key``); who may publish and whose picture should be on air are
decided by the live domain, and the caller tells the room. Every endpoint is
one ``RTCPeerConnection`` answering the client's offer, as in WHIP (publish)
and WHEP (view): a hall that both watches and speaks holds two, so nothing is
ever renegotiated.

Nothing outside ``server.media`` sees a peer connection: offers go in as SDP
text, answers come back as :class:`Answer`, and what happens to an endpoint
afterwards is reported through the ``on_endpoint`` callback as plain
:class:`EndpointState`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.sdp import candidate_from_sdp

from server.live.quality import LinkReading
from server import logs
from server.logs import Throttled
from server.media import hooks, memory
from server.media.audio import AudioInput
from server.media.echo import ConnectionTests, EchoResult
from server.media.feed import ProgramFeed, Subscription
from server.media.layers import LayerPolicy
from server.media.meter import LinkMeter
from server.media.offers import Answer, MediaError, candidate_problem, refuse_unusable_offer
from server.media.peer import IceConfig, new_peer
from server.media.stats import MediaStats
from server.media.video import EncodedVideoSource

log = logging.getLogger(__name__)
_throttled = Throttled(log)

EndpointKindName: TypeAlias = Literal["publish", "view"]


@dataclass(frozen=True)
class EndpointState:
    """What ``on_endpoint`` reports: an endpoint connected, started receiving, or closed."""

    id: str
    key: str
    kind: EndpointKindName
    receiving: bool
    closed: bool


@dataclass(frozen=True)
class SourceState:
    """A publisher's video as the console shows it: codec, size and how it keyframes."""

    key: str
    codec: str | None
    width: int | None
    height: int | None
    keyframe_interval: float | None  # seconds between its keyframes, last measured
    keyframe_wait: float | None  # seconds from a request to its keyframe, last measured
    ignores_requests: bool  # it keyframes on its own schedule: joins and switches wait up to an interval


@dataclass(eq=False)
class _Endpoint:
    id: str
    key: str
    kind: EndpointKindName
    pc: RTCPeerConnection
    video: EncodedVideoSource | None = None
    audio: AudioInput | None = None
    subscription: Subscription | None = None
    layers: LayerPolicy | None = None
    receiving: bool = False
    closed: bool = False
    # Told once when the endpoint closes, whichever way (the caller's quota ticket).
    on_close: Callable[[], None] | None = None
    # Closes the endpoint if its ICE has not connected in time.
    deadline: asyncio.TimerHandle | None = None
    meter: LinkMeter | None = None

    def state(self) -> EndpointState:
        return EndpointState(self.id, self.key, self.kind, self.receiving, self.closed)


class MediaRoom:
    """The media of one session.

    ``on_endpoint`` is told when an endpoint connects, starts receiving the
    program or closes (the roll call shows it); ``on_air`` when another
    picture goes on air (at its keyframe).
    """

    def __init__(self, ice: IceConfig, *, on_endpoint: Callable[[EndpointState], None] = lambda state: None,
                 on_air: Callable[[str | None], None] = lambda key: None, stats: MediaStats | None = None) -> None:
        self.ice = ice
        # The process's media counters (/metrics); a room of its own in tests.
        self.stats = stats or MediaStats()
        self.feed = ProgramFeed(on_air=on_air, stats=self.stats)
        self._on_endpoint = on_endpoint
        self._endpoints: dict[str, _Endpoint] = {}
        # The same endpoints by participant key: lookups per key stay O(1) with thousands of viewers.
        self._by_key: dict[str, dict[str, _Endpoint]] = {}
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Connection tests under way (not endpoints: nobody watches the program through them).
        self.echoes = ConnectionTests(ice, self.stats, self._spawn)

    # publishing ---------------------------------------------------------------

    async def publish(self, key: str, offer_sdp: str, *, on_close: Callable[[], None] | None = None) -> Answer:
        """Accept a publisher's offer (camera and microphone); a previous one of ``key`` is closed.

        ``on_close`` is called once when the endpoint closes, however it does
        (also when the offer is refused).
        """
        self._check_offer(offer_sdp, on_close)
        await self.close_key(key, "publish")
        endpoint_id = uuid.uuid4().hex
        with logs.bind(endpoint=endpoint_id):  # what aiortc's tasks for it log says which endpoint
            return await self._publish(endpoint_id, key, offer_sdp, on_close)

    async def _publish(self, endpoint_id: str, key: str, offer_sdp: str, on_close: Callable[[], None] | None
                       ) -> Answer:
        pc = new_peer(self.ice)
        endpoint = self._add(_Endpoint(endpoint_id, key, "publish", pc, on_close=on_close,
                                       meter=LinkMeter(pc, "publish")))
        self.stats.opened_publish += 1
        video = pc.addTransceiver("video", direction="recvonly")
        audio = pc.addTransceiver("audio", direction="recvonly")
        endpoint.meter.watch_receiver(video.receiver)  # type: ignore[union-attr]
        endpoint.meter.watch_receiver(audio.receiver)  # type: ignore[union-attr]
        # A publisher that offers both sends what the program carries now: a hall given the
        # floor while an H.264 studio feed is on air sends H.264 too, and nothing is transcoded.
        hooks.prefer_codecs(video, first=self.feed.video.codec or "vp8")
        hooks.prefer_codecs(audio)
        hooks.receive_encoded(video.receiver, pc)

        @pc.on("track")
        def on_track(track: object) -> None:
            if endpoint.closed:
                return
            if getattr(track, "kind", None) == "video" and endpoint.video is None:
                endpoint.video = EncodedVideoSource(key, track, video.receiver, pc,  # type: ignore[arg-type]
                                                    self.feed.video.on_packet, stats=self.stats)
                self.feed.add_video(endpoint.video)
            elif getattr(track, "kind", None) == "audio" and endpoint.audio is None:
                endpoint.audio = AudioInput(key, track)  # type: ignore[arg-type]
                self.feed.add_audio(endpoint.audio)

        self._watch(endpoint)
        return await self._answer(endpoint, offer_sdp)

    # viewing ---------------------------------------------------------------------

    async def view(self, key: str, offer_sdp: str, *, on_close: Callable[[], None] | None = None,
                   endpoint_id: str | None = None, adaptive: bool = True) -> Answer:
        """Accept a viewer's offer: it receives the program video and its audio mix (without its own voice).

        ``endpoint_id`` names the endpoint when the caller chose it already (a
        relay's viewer, on record at the hub under that id). ``adaptive``
        False: it keeps the full picture whatever its reports say (a relay's
        uplink, which carries the full picture to every viewer behind it: a
        relay forwards, it has no low layer to give the ones on a poor link).
        """
        self._check_offer(offer_sdp, on_close)
        endpoint_id = endpoint_id or uuid.uuid4().hex
        with logs.bind(endpoint=endpoint_id):
            return await self._view(endpoint_id, key, offer_sdp, on_close, adaptive)

    async def _view(self, endpoint_id: str, key: str, offer_sdp: str, on_close: Callable[[], None] | None,
                    adaptive: bool = True) -> Answer:
        pc = new_peer(self.ice)
        meter = LinkMeter(pc, "view")
        endpoint = self._add(_Endpoint(endpoint_id, key, "view", pc, on_close=on_close, meter=meter))
        self.stats.opened_view += 1

        def first_packet() -> None:
            endpoint.receiving = True
            self._on_endpoint(endpoint.state())

        subscription = self.feed.subscribe(key, on_first_packet=first_packet)
        endpoint.subscription = subscription
        video = None
        for track in subscription.tracks:
            transceiver = pc.addTransceiver(track, direction="sendonly")
            hooks.unused_receiver(transceiver.receiver)
            hooks.prefer_codecs(transceiver)
            # The shared payloads behind this viewer's own headers; each video frame with its
            # own codec's payload type (VP8 and H.264 sources alike).
            hooks.send_encoded(transceiver)
            if track.kind == "video":
                video = transceiver
                # The viewer lost a picture: ask for a keyframe of its layer (rate-limited at the source).
                hooks.on_keyframe_request(transceiver.sender, lambda s=subscription: self.feed.request_keyframe(s))
                if adaptive:
                    # Its receiver reports move it to the low layer on a poor link, and back.
                    policy = LayerPolicy(lambda layer, s=subscription: self._move(s, layer),
                                         needed=lambda: self.feed.bitrate)
                    hooks.on_receiver_report(transceiver.sender, policy, meter.watch_sender(transceiver.sender, 90000))
                    endpoint.layers = policy
                else:
                    hooks.on_receiver_report(transceiver.sender, meter.watch_sender(transceiver.sender, 90000))
            else:
                hooks.on_receiver_report(transceiver.sender, meter.watch_sender(transceiver.sender, 48000))
        self._watch(endpoint)
        answer = await self._answer(endpoint, offer_sdp)
        if video is not None:
            codecs = hooks.negotiated_video_codecs(video)
            if not codecs:
                await self.close_endpoint(endpoint.id)
                raise MediaError("bad_sdp", "the offer receives neither VP8 nor H.264 (packetization-mode 1)")
            self.feed.set_codecs(subscription, codecs)
        return answer

    def _move(self, subscription: Subscription, layer: str) -> None:
        if subscription.layer != layer:
            self.stats.layer_moves += 1
        self.feed.set_layer(subscription, layer)  # type: ignore[arg-type]

    # the connection test (server/media/echo.py) ----------------------------------------

    async def echo(self, key: str, offer_sdp: str, *, on_done: Callable[[EchoResult], None],
                   on_close: Callable[[], None] | None = None) -> Answer:
        """A hall's connection test: its camera and microphone come back to it through the hub."""
        self._check_offer(offer_sdp, on_close)
        return await self.echoes.start(key, offer_sdp, on_done=on_done, on_close=on_close)

    def echo_key(self, echo_id: str) -> str | None:
        return self.echoes.key_of(echo_id)

    async def end_echo(self, echo_id: str, *, report: bool = True) -> EchoResult | None:
        return await self.echoes.end(echo_id, report=report)

    def _spawn(self, awaitable: Any) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # the program -----------------------------------------------------------------

    def show(self, key: str | None) -> None:
        """Put ``key``'s picture on air at its next keyframe (None: keep what is on air)."""
        self.feed.show(key)

    def mute(self, key: str, muted: bool) -> None:
        self.feed.mute(key, muted)

    def set_live(self, live: bool) -> None:
        self.feed.set_live(live)

    @property
    def on_air(self) -> str | None:
        return self.feed.on_air

    # queries ---------------------------------------------------------------------

    def is_publishing(self, key: str) -> bool:
        return any(e.kind == "publish" for e in self._by_key.get(key, {}).values())

    def is_receiving(self, key: str) -> bool:
        return any(e.receiving for e in self._by_key.get(key, {}).values())

    def sources(self) -> list[SourceState]:
        """Every publisher's video, as plain state."""
        found = []
        for endpoint in self._endpoints.values():
            video = endpoint.video
            if video is None:
                continue
            width, height = video.size or (None, None)
            found.append(SourceState(
                video.key, video.codec, width, height,
                None if video.keyframe_interval is None else round(video.keyframe_interval, 1),
                None if video.request_answered_in is None else round(video.request_answered_in, 1),
                video.ignores_requests))
        return sorted(found, key=lambda s: s.key)

    def endpoints(self, key: str | None = None) -> list[EndpointState]:
        """Every open endpoint (of ``key``), as plain state."""
        source = self._endpoints.values() if key is None else self._by_key.get(key, {}).values()
        return [endpoint.state() for endpoint in source]

    def link_readings(self) -> dict[str, list[LinkReading]]:
        """Every open endpoint's link, by participant key (the quality board reads it once a second)."""
        readings: dict[str, list[LinkReading]] = {}
        for endpoint in self._endpoints.values():
            if endpoint.meter is not None and not endpoint.closed:
                readings.setdefault(endpoint.key, []).append(endpoint.meter.read())
        return readings

    def traffic(self) -> tuple[int, int, int, int]:
        """Packets and bytes the open endpoints have sent and received (see hooks.transport_counts)."""
        totals = [0, 0, 0, 0]
        for endpoint in self._endpoints.values():
            for index, value in enumerate(hooks.transport_counts(endpoint.pc)):
                totals[index] += value
        return totals[0], totals[1], totals[2], totals[3]

    def layer_policy(self, endpoint_id: str) -> LayerPolicy | None:
        """A viewer endpoint's layer policy (its layer and the reason of its last move), for diagnostics."""
        endpoint = self._endpoints.get(endpoint_id)
        return endpoint.layers if endpoint else None

    def layer_of(self, endpoint_id: str) -> str | None:
        """The layer a viewer endpoint receives ("high" or "low"), None for another endpoint."""
        endpoint = self._endpoints.get(endpoint_id)
        return endpoint.subscription.layer if endpoint and endpoint.subscription else None

    # common ------------------------------------------------------------------------

    def _add(self, endpoint: _Endpoint) -> _Endpoint:
        self._endpoints[endpoint.id] = endpoint
        self._by_key.setdefault(endpoint.key, {})[endpoint.id] = endpoint
        return endpoint

    def _check_offer(self, sdp: str, on_close: Callable[[], None] | None = None) -> None:
        """Refuse what cannot be answered (MediaError), before any endpoint exists; ``on_close`` is told then."""
        try:
            self._refuse_unusable(sdp)
        except MediaError:
            if on_close is not None:
                on_close()
            raise

    def _refuse_unusable(self, sdp: str) -> None:
        if self._closed:
            raise MediaError("session_closed", "the session's media is closed")
        refuse_unusable_offer(sdp)

    async def _answer(self, endpoint: _Endpoint, offer_sdp: str) -> Answer:
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
        except (ValueError, KeyError, IndexError, AttributeError, AssertionError, TypeError, InvalidStateError,
                OperationError, InvalidAccessError) as exc:
            # e.g. a VP9-only offer: nothing in common with VP8, H.264 and Opus.
            await self.close_endpoint(endpoint.id)
            raise MediaError("bad_sdp", f"the offer cannot be used: {exc}") from None
        except BaseException:
            await asyncio.shield(self.close_endpoint(endpoint.id))
            raise
        return Answer(endpoint.id, pc.localDescription.sdp)

    def _watch(self, endpoint: _Endpoint) -> None:
        """Follow the endpoint's connection: closed when it fails, or when it never connects.

        An offer that never connects (no candidates, or none that answer) would
        hold its sockets and polling loop forever; one that connected and then
        went silent fails by ICE consent freshness (RFC 7675, aioice: about 30 s).
        """
        loop = asyncio.get_running_loop()
        endpoint.deadline = loop.call_later(self.ice.connect_timeout, self._connect_expired, endpoint)

        @endpoint.pc.on("connectionstatechange")
        async def on_state() -> None:
            state = endpoint.pc.connectionState
            if state == "connected" and endpoint.deadline is not None:
                endpoint.deadline.cancel()
                endpoint.deadline = None
            if state in ("failed", "closed"):
                await self.close_endpoint(endpoint.id)
            elif not endpoint.closed:
                self._on_endpoint(endpoint.state())

    def _connect_expired(self, endpoint: _Endpoint) -> None:
        endpoint.deadline = None
        if endpoint.closed or endpoint.pc.connectionState == "connected":
            return
        _throttled.info(("unconnected", endpoint.key), "endpoint %s (%s of %s) did not connect within %.0f s: closed",
                        endpoint.id, endpoint.kind, endpoint.key, self.ice.connect_timeout)
        task = asyncio.ensure_future(self.close_endpoint(endpoint.id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def add_candidate(self, endpoint_id: str, candidate: str, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            raise MediaError("unknown_endpoint", "no such peer connection")
        if not candidate:
            return  # end of candidates
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except (ValueError, IndexError, AssertionError):
            raise MediaError("bad_candidate", "the candidate cannot be parsed") from None
        problem = candidate_problem(parsed)
        if problem:
            # aiortc's parser takes any number and any host: a port of 70000 would fail in the
            # agent's send, far from here.
            raise MediaError("bad_candidate", f"the candidate's {problem} is not valid")
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        try:
            await endpoint.pc.addIceCandidate(parsed)
        except ValueError as exc:
            raise MediaError("bad_candidate", str(exc)) from None

    async def close_endpoint(self, endpoint_id: str) -> None:
        endpoint = self._endpoints.pop(endpoint_id, None)
        if endpoint is None:
            return
        endpoint.closed = True
        if endpoint.deadline is not None:
            endpoint.deadline.cancel()
            endpoint.deadline = None
        if endpoint.on_close is not None:
            on_close, endpoint.on_close = endpoint.on_close, None
            on_close()
        same_key = self._by_key.get(endpoint.key, {})
        same_key.pop(endpoint_id, None)
        if not same_key:
            self._by_key.pop(endpoint.key, None)
        if endpoint.video is not None:
            self.feed.remove_video(endpoint.video)
            await endpoint.video.close()
        if endpoint.audio is not None:
            self.feed.remove_audio(endpoint.audio)
            await endpoint.audio.close()
        if endpoint.subscription is not None:
            self.feed.unsubscribe(endpoint.subscription)
        endpoint.receiving = False
        try:
            sent_packets, sent_bytes, received_packets, received_bytes = hooks.transport_counts(endpoint.pc)
        except Exception:  # noqa: BLE001 - a half-made connection has no transport to count
            sent_packets = sent_bytes = received_packets = received_bytes = 0
        self.stats.closed_packets_sent += sent_packets
        self.stats.closed_bytes_sent += sent_bytes
        self.stats.closed_packets_received += received_packets
        self.stats.closed_bytes_received += received_bytes
        try:
            await endpoint.pc.close()
        except Exception:  # noqa: BLE001 - a half-negotiated connection: aiortc trips on what it never made
            log.debug("endpoint %s: closing its peer connection failed", endpoint.id, exc_info=True)
        memory.release_soon()
        self._on_endpoint(endpoint.state())

    async def close_key(self, key: str, kind: EndpointKindName | None = None) -> None:
        for endpoint in [e for e in self._by_key.get(key, {}).values() if kind in (None, e.kind)]:
            await self.close_endpoint(endpoint.id)

    async def close(self) -> None:
        self._closed = True
        await self.echoes.close()
        for endpoint_id in list(self._endpoints):
            await self.close_endpoint(endpoint_id)
        await self.feed.close()
