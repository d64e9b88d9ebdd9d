"""The websocket adapter's outbox: a client that stops reading is closed with 1008, and nobody waits for it."""

from __future__ import annotations

import asyncio

from server.views.live import WebSocketConnection
from tests.media.clients import wait_until


class StuckSocket:
    """A websocket whose client stopped reading: every write waits forever."""

    def __init__(self) -> None:
        self.closed = False
        self.close_code: int | None = None
        self.writes = 0

    async def send_str(self, text: str) -> None:
        self.writes += 1
        await asyncio.Event().wait()

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed = True
        self.close_code = code


async def test_a_client_too_slow_to_keep_up_is_closed_with_1008() -> None:
    socket = StuckSocket()
    connection = WebSocketConnection(socket)  # type: ignore[arg-type]
    for index in range(WebSocketConnection.OUTBOX_LIMIT):
        await connection.send({"type": "pong", "t": index})  # queued: send never waits on the client
    assert socket.close_code is None
    await connection.send({"type": "pong", "t": -1})
    await wait_until(lambda: socket.close_code == 1008, timeout=3)
    # What it would have been sent is dropped, not kept.
    assert len(connection._outbox) == 0
    connection.stop()


async def test_a_healthy_client_gets_every_message_in_order() -> None:
    sent: list[str] = []

    class Socket:
        closed = False

        async def send_str(self, text: str) -> None:
            sent.append(text)

        async def close(self, *, code: int, message: bytes) -> None:
            self.closed = True

    connection = WebSocketConnection(Socket())  # type: ignore[arg-type]
    for index in range(50):
        await connection.send({"type": "pong", "t": index})
    await wait_until(lambda: len(sent) == 50, timeout=3)
    assert [int(text.split(":")[-1].rstrip("}")) for text in sent] == list(range(50))
    await connection.close(1000, "bye")
