"""The program feed of one live session, and the one way to receive it: a subscription.

The feed owns what every hall receives: the forwarded video of the source on
air (``server.media.video``), the audio mix with its mix-minus variants
(``server.media.audio``) and the shared low-layer transcode
(``server.media.layers``). Everything that receives the program is a
:class:`Subscription`: a hall's or a member's peer connection, and in the same
way the recorder and a relay's uplink. Publishers are the feed's inputs.

A subscription's tracks are :class:`~server.media.fanout.ForwardTrack`\\ s
yielding shared encoded ``av.Packet``\\ s: hand them to an ``RTCRtpSender``
(which packs them without encoding), or read them with ``recv()`` (a
recorder muxes them as they are).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from server.media.stats import MediaStats
from server.media.audio import AudioInput, ProgramAudio
from server.media.codecs import VIDEO_CODECS, VideoCodec
from server.media.fanout import ForwardTrack
from server.media.layers import LowLayer
from server.media.video import EncodedVideoSource, ProgramVideo

log = logging.getLogger(__name__)

Layer: TypeAlias = Literal["high", "low"]
_ids = itertools.count(1)


@dataclass(eq=False)
class Subscription:
    """One subscriber's tracks of the program.

    ``owner`` is the participant key whose own voice is left out of this
    subscription's audio (mix-minus: a hall never hears itself back); None
    for a subscriber that hears everything (the recorder, a relay).
    ``codecs`` are the video codecs it decodes (:meth:`ProgramFeed.set_codecs`).
    """

    id: int
    owner: str | None
    video: ForwardTrack | None
    audio: ForwardTrack | None
    layer: Layer = "high"
    codecs: frozenset[VideoCodec] = frozenset(VIDEO_CODECS)
    active: bool = field(default=True, repr=False)

    @property
    def tracks(self) -> list[ForwardTrack]:
        return [track for track in (self.video, self.audio) if track is not None]


class ProgramFeed:
    """The program of one session: inputs from publishers, subscriptions out."""

    def __init__(self, *, on_air: Callable[[str | None], None] = lambda key: None,
                 stats: MediaStats | None = None) -> None:
        self.video = ProgramVideo()
        self.audio = ProgramAudio(stats)
        self.low: LowLayer | None = None
        self.subscriptions: dict[int, Subscription] = {}
        self._sources: dict[str, EncodedVideoSource] = {}
        # Whose picture should be on air, even before their video arrives.
        self._wanted: str | None = None
        self.video.on_switch = on_air

    # inputs -------------------------------------------------------------------------------

    def add_video(self, source: EncodedVideoSource) -> None:
        """A publisher's video arrived; it goes on air if it is the one wanted."""
        self._sources[source.key] = source
        if self._wanted == source.key:
            self.video.show(source)

    def remove_video(self, source: EncodedVideoSource) -> None:
        if self._sources.get(source.key) is source:
            del self._sources[source.key]
        self.video.forget(source)

    def add_audio(self, source: AudioInput) -> None:
        self.audio.add_input(source)

    def remove_audio(self, source: AudioInput) -> None:
        if self.audio.inputs.get(source.key) is source:
            self.audio.remove_input(source.key)

    def show(self, key: str | None) -> None:
        """Put ``key``'s picture on air at its next keyframe; it may not be publishing yet.

        None keeps what is on air.
        """
        if key is None:
            return
        self._wanted = key
        self.video.show(self._sources.get(key))

    def mute(self, key: str, muted: bool) -> None:
        """Leave ``key``'s microphone out of every mix (or put it back)."""
        if muted:
            self.audio.muted.add(key)
        else:
            self.audio.muted.discard(key)

    def set_live(self, live: bool) -> None:
        """Before the session starts (and after it ends) nothing goes out."""
        self.video.enabled = live
        self.audio.enabled = live
        if live:
            self.video.request_keyframe()

    @property
    def on_air(self) -> str | None:
        return self.video.on_air

    def source_codecs(self) -> set[VideoCodec]:
        """The codecs the publishers' videos send now."""
        return {source.codec for source in self._sources.values() if source.codec is not None}

    @property
    def bitrate(self) -> float:
        """Bits per second the full picture takes now (measured over about a second)."""
        return self.video.bitrate

    # subscriptions ---------------------------------------------------------------------------

    def subscribe(self, owner: str | None = None, *, video: bool = True, audio: bool = True,
                  on_first_packet: Callable[[], None] = lambda: None) -> Subscription:
        """Receive the program: video at the next keyframe (one is asked for), the mix without ``owner``."""
        video_track = self.video.viewer_track(on_first_packet=on_first_packet) if video else None
        audio_track = self.audio.viewer_track(owner) if audio else None
        if audio_track is not None:
            self.audio.start()
        subscription = Subscription(next(_ids), owner, video_track, audio_track)
        if video_track is not None:
            video_track.on_keyframe_needed = lambda: self.request_keyframe(subscription)
        self.subscriptions[subscription.id] = subscription
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Take the tracks back: they stop, and nothing more is queued for them."""
        if self.subscriptions.pop(subscription.id, None) is None:
            return
        subscription.active = False
        if subscription.video is not None:
            self.video.detach(subscription.video)
            if self.low is not None:
                self.low.fanout.discard(subscription.video)
        if subscription.audio is not None:
            self.audio.discard(subscription.audio)
        for track in subscription.tracks:
            track.stop()

    def request_keyframe(self, subscription: Subscription) -> None:
        """The subscriber lost its picture: a keyframe of its layer (rate-limited at the source)."""
        if subscription.layer == "low" and self.low is not None:
            self.low.request_keyframe()
        else:
            self.video.request_keyframe_for(subscription.codecs)

    def set_codecs(self, subscription: Subscription, codecs: frozenset[VideoCodec]) -> None:
        """The video codecs the subscriber decodes (what its connection negotiated; VP8 and H.264 by default).

        A subscriber that decodes only one codec gets the forwarded frames
        while the source on air sends that codec, and the program's shared
        transcode to it otherwise.
        """
        codecs = frozenset(codecs) & frozenset(VIDEO_CODECS)
        track = subscription.video
        if not codecs:
            raise ValueError("a video subscriber decodes VP8 or H.264")
        if track is None or not subscription.active or codecs == subscription.codecs:
            subscription.codecs = codecs
            return
        before = self.video.delivers(subscription.codecs)
        subscription.codecs = codecs
        if subscription.layer == "low" and "vp8" not in codecs:
            # The low layer is VP8: a viewer that cannot decode it goes back to the full picture.
            self.set_layer(subscription, "high")
        if subscription.layer == "high":
            if self.video.delivers(codecs) != before:
                track.restart_at_keyframe()
            self.video.attach(track, codecs)
            if track.waiting_for_keyframe:
                self.request_keyframe(subscription)

    def set_layer(self, subscription: Subscription, layer: Layer) -> None:
        """Move a subscriber between the full picture and the low layer, at the new layer's keyframe."""
        track = subscription.video
        if track is None or not subscription.active or subscription.layer == layer:
            return
        if layer == "low" and "vp8" not in subscription.codecs:
            return  # the low layer is VP8
        if self.low is None:
            self.low = LowLayer(asyncio.get_running_loop(), self.video.request_keyframe)
            self.video.low = self.low
        subscription.layer = layer
        track.restart_at_keyframe()
        if layer == "low":
            self.video.detach(track)
            self.low.fanout.add(track)
        else:
            self.low.fanout.discard(track)
            self.video.attach(track, subscription.codecs)
        self.request_keyframe(subscription)
        log.info("viewer moved to the %s layer", layer)

    async def close(self) -> None:
        for subscription in list(self.subscriptions.values()):
            self.unsubscribe(subscription)
        await self.audio.close()
        self.video.close()
        if self.low is not None:
            self.low.close()
