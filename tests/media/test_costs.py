"""No video is encoded or decoded per viewer: counted, not assumed.

The publisher encodes every frame once; each viewer decodes what it receives.
Anything more (a decoder or encoder at the hub, one per viewer) shows up in
the counts.
"""

from collections import Counter

import pytest
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder

from server.media.peer import LOOPBACK, IceConfig
from server.media.room import MediaRoom
from tests.media.clients import publish, view, wait_until
from tests.media.test_room import RED, answerer

VIEWERS = 4


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counted: Counter[str] = Counter()
    decoder_init, encode, opus_encode = Vp8Decoder.__init__, Vp8Encoder.encode, OpusEncoder.encode

    def counting_decoder_init(self: Vp8Decoder) -> None:
        counted["vp8 decoders"] += 1
        decoder_init(self)

    def counting_encode(self: Vp8Encoder, frame, force_keyframe=False):  # type: ignore[no-untyped-def]
        counted["vp8 encodes"] += 1
        return encode(self, frame, force_keyframe)

    def counting_opus_encode(self: OpusEncoder, frame, force_keyframe=False):  # type: ignore[no-untyped-def]
        counted["opus encodes by senders"] += 1
        return opus_encode(self, frame, force_keyframe)

    monkeypatch.setattr(Vp8Decoder, "__init__", counting_decoder_init)
    monkeypatch.setattr(Vp8Encoder, "encode", counting_encode)
    monkeypatch.setattr(OpusEncoder, "encode", counting_opus_encode)
    return counted


async def test_fanout_costs_no_encode_or_decode_per_viewer(counts: Counter[str]) -> None:
    room = MediaRoom(IceConfig(addresses=LOOPBACK))
    room.show("speaker")
    speaker = await publish(answerer(room, "publish", "speaker"), RED, 440)
    viewers = [await view(answerer(room, "view", f"user:{i}")) for i in range(VIEWERS)]
    try:
        await wait_until(lambda: all(v.frames >= 60 for v in viewers), timeout=20)
        sent = speaker.video.sent
        received = [v.frames for v in viewers]
    finally:
        await speaker.close()
        for viewer in viewers:
            await viewer.close()
        await room.close()
    # Video: the publisher's encoder is the only one that ever encodes...
    assert sent - 3 <= counts["vp8 encodes"] <= sent + 3, (counts, sent)
    # ...and the only decoders are the viewers' own, one each.
    assert counts["vp8 decoders"] == VIEWERS
    assert min(received) >= 60
    # Audio: the program mix is encoded once per 20 ms tick for the variant all
    # viewers share, never by a sender per viewer (the publisher's own sender
    # is the only one that encodes).
    assert room.feed.audio.encodes <= room.feed.audio.ticks
    assert counts["opus encodes by senders"] <= room.feed.audio.ticks + 25 * 2, counts
