"""A hall's connection test: its camera and microphone through the hub and back to it (issue 13).

The video goes back as it came (encoded, no transcoding), the sound is
decoded and encoded again; the test measures the round trip from the hall's
receiver reports, what the hall sent, and what came back. A test is no
endpoint of the program: nobody watches the program through it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError

from server import logs
from server.media import hooks, memory
from server.media.fanout import ForwardTrack
from server.media.meter import LinkMeter
from server.media.offers import Answer, MediaError
from server.media.peer import IceConfig, new_peer
from server.media.stats import MediaStats
from server.media.video import EncodedVideoSource

log = logging.getLogger(__name__)

ECHO_SECONDS = 15.0  # a test not ended by its page ends by itself after this


@dataclass(frozen=True)
class EchoResult:
    """What a connection test measured: the hall's camera and microphone through the hub and back."""

    seconds: float
    rtt_ms: float | None  # from the hall's receiver reports about what came back
    bitrate_kbps: float | None  # what the hall sent, on average
    video_frames: int  # frames sent back to the hall
    audio_packets: int  # microphone packets received
    connected: bool

    @property
    def ok(self) -> bool:
        return self.connected and self.video_frames >= 10 and self.audio_packets >= 50

    @property
    def detail(self) -> str:
        if not self.connected:
            return "no_connection"
        if self.video_frames < 10:
            return "no_video"
        if self.audio_packets < 50:
            return "no_audio"
        return ""


@dataclass(eq=False)
class Echo:
    id: str
    key: str
    pc: RTCPeerConnection
    started: float
    meter: LinkMeter
    back: ForwardTrack
    video_sender: object = None
    source: EncodedVideoSource | None = None
    audio_receiver: object = None
    connected: bool = False
    timer: asyncio.TimerHandle | None = None
    on_done: Callable[[EchoResult], None] | None = None
    # Told once when the test ends, however it ends (the caller's quota ticket).
    on_close: Callable[[], None] | None = None
    result: EchoResult | None = None


class ConnectionTests:
    """A media room's connection tests under way, by id."""

    def __init__(self, ice: IceConfig, stats: MediaStats, spawn: Callable[[Awaitable[Any]], None]) -> None:
        self.ice = ice
        self.stats = stats
        self._spawn = spawn
        self._echoes: dict[str, Echo] = {}

    async def start(self, key: str, offer_sdp: str, *, on_done: Callable[[EchoResult], None],
                    on_close: Callable[[], None] | None = None) -> Answer:
        """A hall's connection test: its camera and microphone come back to it through the hub.

        The video goes back as it came (encoded, no transcoding), the sound
        is decoded and encoded again; ``on_done`` gets what was measured when
        the test ends (:meth:`end`, or after ``ECHO_SECONDS``). The offer was checked
        (``MediaRoom._check_offer``).
        """
        for previous in [e.id for e in self._echoes.values() if e.key == key]:
            await self.end(previous)  # one test at a time per hall: a new one replaces the last
        echo_id = uuid.uuid4().hex
        with logs.bind(endpoint=echo_id):
            pc = new_peer(self.ice)
            echo = Echo(echo_id, key, pc, time.monotonic(), LinkMeter(pc, "view"), ForwardTrack("video"),
                         on_done=on_done, on_close=on_close)
            self._echoes[echo_id] = echo
            video = pc.addTransceiver(echo.back, direction="sendrecv")
            audio = pc.addTransceiver("audio", direction="sendrecv")
            hooks.prefer_codecs(video)
            hooks.prefer_codecs(audio)
            hooks.receive_encoded(video.receiver, pc)
            hooks.send_encoded(video)
            echo.video_sender = video.sender
            echo.audio_receiver = audio.receiver
            hooks.on_receiver_report(video.sender, echo.meter.watch_sender(video.sender, 90000))
            echo.meter.watch_receiver(video.receiver)

            @pc.on("track")
            def on_track(track: object) -> None:
                if getattr(track, "kind", None) == "video" and echo.source is None:
                    echo.source = EncodedVideoSource(key, track, video.receiver, pc,  # type: ignore[arg-type]
                                                     lambda source, frame: echo.back.push(frame), stats=self.stats)
                    echo.back.on_keyframe_needed = lambda: echo.source and echo.source.request_keyframe()
                    echo.source.request_keyframe(force=True)
                elif getattr(track, "kind", None) == "audio":
                    audio.sender.replaceTrack(track)  # type: ignore[arg-type]

            hooks.on_keyframe_request(video.sender, lambda: echo.source and echo.source.request_keyframe())

            @pc.on("connectionstatechange")
            async def on_state() -> None:
                if pc.connectionState == "connected":
                    echo.connected = True
                elif pc.connectionState in ("failed", "closed"):
                    await self.end(echo_id)

            echo.timer = asyncio.get_running_loop().call_later(
                ECHO_SECONDS, lambda: self._spawn(self.end(echo_id)))
            try:
                await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
                if len(pc.getTransceivers()) != 2:
                    raise MediaError("bad_sdp", "offer exactly one video and one audio section")
                hooks.answer_as_dtls_server(pc)
                await pc.setLocalDescription(await pc.createAnswer())
            except MediaError:
                await self.end(echo_id, report=False)
                raise
            except (ValueError, KeyError, IndexError, AttributeError, AssertionError, TypeError, InvalidStateError,
                    OperationError, InvalidAccessError) as exc:
                await self.end(echo_id, report=False)
                raise MediaError("bad_sdp", f"the offer cannot be used: {exc}") from None
            except BaseException:
                await asyncio.shield(self.end(echo_id, report=False))
                raise
            return Answer(echo_id, pc.localDescription.sdp)

    def key_of(self, echo_id: str) -> str | None:
        echo = self._echoes.get(echo_id)
        return echo.key if echo else None

    async def end(self, echo_id: str, *, report: bool = True) -> EchoResult | None:
        """End a connection test; what it measured (None for an unknown or already ended one)."""
        echo = self._echoes.pop(echo_id, None)
        if echo is None:
            return None
        if echo.timer is not None:
            echo.timer.cancel()
        if echo.on_close is not None:
            on_close, echo.on_close = echo.on_close, None
            on_close()
        seconds = time.monotonic() - echo.started
        reading = echo.meter.read()
        _, _, _, received = hooks.transport_counts(echo.pc)
        counters = hooks.receive_counters(echo.audio_receiver)  # type: ignore[arg-type]
        result = EchoResult(
            seconds=round(seconds, 1),
            rtt_ms=None if reading.rtt_ms is None else round(reading.rtt_ms, 1),
            bitrate_kbps=round(received * 8 / seconds / 1000, 1) if seconds > 0 else None,
            video_frames=echo.back.sent, audio_packets=counters[1] if counters else 0, connected=echo.connected)
        echo.result = result
        if echo.source is not None:
            await echo.source.close()
        echo.back.stop()
        try:
            await echo.pc.close()
        except Exception:  # noqa: BLE001 - a half-negotiated connection
            log.debug("echo %s: closing its peer connection failed", echo_id, exc_info=True)
        memory.release_soon()
        if report and echo.on_done is not None:
            echo.on_done(result)
        return result

    async def close(self) -> None:
        for echo_id in list(self._echoes):
            await self.end(echo_id, report=False)
