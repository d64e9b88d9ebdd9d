"""The low layer: a viewer on a lossy path moves down to 320x240, and back up when the path is clear."""

import random

import pytest

from server.media.layers import LayerPolicy
from server.media.peer import LOOPBACK, IceConfig
from server.media.room import MediaRoom
from tests.media.clients import close_to, publish, view, wait_until
from tests.media.test_room import RED, answerer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("losses", "layers"),
    [
        ([0.2], []),  # one bad report is not sustained
        ([0.2, 0.0, 0.2], []),  # nor two apart
        ([0.2, 0.15], ["low"]),
        ([0.2, 0.15] + [0.0] * 7, ["low"]),  # seven clean reports are not yet enough
        ([0.2, 0.15] + [0.0] * 8, ["low", "high"]),
        ([0.2, 0.15] + [0.0] * 5 + [0.05] + [0.0] * 5, ["low"]),  # middling loss resets the count
    ],
)
def test_policy_moves_on_sustained_loss_and_recovers(losses: list[float], layers: list[str]) -> None:
    clock = Clock()
    moves: list[str] = []
    policy = LayerPolicy(moves.append, clock=clock)
    for loss in losses:
        clock.now += 1.0
        policy.report(loss)
    assert moves == layers


def test_a_starved_link_moves_down_and_clean_reports_bring_it_back() -> None:
    clock = Clock()
    moves: list[str] = []
    policy = LayerPolicy(moves.append, clock=clock, needed=lambda: 1_000_000)
    policy.bandwidth(300_000)  # the receiver estimates 300 kbit/s: the full picture takes 1 Mbit/s
    for _ in range(2):
        clock.now += 1.0
        policy.report(0.0)
    assert moves == ["low"]
    # Down there the estimate cannot show recovery; clean loss reports bring it back.
    for _ in range(8):
        clock.now += 1.0
        policy.report(0.0)
    assert moves == ["low", "high"]


async def test_a_lossy_viewer_moves_to_the_low_layer_and_back() -> None:
    room = MediaRoom(IceConfig(addresses=LOOPBACK))
    room.show("speaker")
    speaker = await publish(answerer(room, "publish", "speaker"), RED, 440, size=(640, 480))
    healthy = await view(answerer(room, "view", "user:1"))
    lossy = await view(answerer(room, "view", "user:2"))
    # Drop half of what reaches the lossy viewer (retransmissions included): its
    # receiver reports the loss to the server.
    dropping = {"on": True}
    chance = random.Random(7)
    for transceiver in lossy.pc.getTransceivers():
        transport = transceiver.receiver.transport
        handle = transport._handle_rtp_data

        async def maybe_drop(data: bytes, arrival_time_ms: int, handle=handle) -> None:  # type: ignore[no-untyped-def]
            if dropping["on"] and chance.random() < 0.5:
                return
            await handle(data, arrival_time_ms)

        transport._handle_rtp_data = maybe_drop
    endpoint = next(e for e in room.endpoints.values() if e.key == "user:2")
    try:
        await wait_until(lambda: healthy.frames >= 30, timeout=15)
        await wait_until(lambda: endpoint.layers is not None and endpoint.layers.layer == "low", timeout=20)
        dropping["on"] = False
        # Its picture becomes the low layer's (what was already on its way arrives first).
        await wait_until(lambda: lossy.sizes[-10:] == [(320, 240)] * 10, timeout=15)
        assert all(close_to(colour, RED, 50) for colour in lossy.recent_colours())
        # The healthy viewer never left the full picture.
        assert healthy.sizes[-1] == (640, 480)
        assert room.video.low is not None and room.video.low.frames_out > 10
        # Clear reports bring it back up.
        await wait_until(lambda: endpoint.layers.layer == "high", timeout=20)
        await wait_until(lambda: lossy.sizes[-10:] == [(640, 480)] * 10, timeout=10)
    finally:
        await speaker.close()
        await healthy.close()
        await lossy.close()
        await room.close()
