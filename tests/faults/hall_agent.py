"""A hall's screen as a process of its own (run inside a test's network namespace): aiortc, not a browser.

It speaks the live protocol the way the hall page does (``web/static/js/protocol.js``
and ``peer.js``): one websocket, ``join``, a ``view`` peer connection offered
after every welcome (the server closed the old one with the old socket), a
``ping`` every 5 s and the socket taken for dead at the first tick with
nothing heard for 16 s (closed with 4000, not ``leave``), reconnects with the
page's backoff (0.5 s doubling to 15 s, ±30 %), and no connect timeout of its
own (a browser's WebSocket waits for TCP).

It prints one JSON object a line on stdout, each with ``at`` (this machine's
``time.monotonic()``, shared by every process):

* ``{"event": "welcome", "key", "n"}`` — the n-th welcome;
* ``{"event": "answer", "n"}`` — the view offer of that welcome answered;
* ``{"event": "frames", "frames"}`` — the decoded video frame count went up
  (at most every 20 ms; ``at`` is when the poll saw it);
* ``{"event": "first_frame", "n"}`` — the view of the n-th welcome decoded its first frame;
* ``{"event": "dead"}``, ``{"event": "closed", "code"}``, ``{"event": "connect_failed", "error"}``.

    python -m tests.faults.hall_agent --url http://198.18.0.1:8080 --session 3 --token T \
        --addresses 198.18.0.2,198.18.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from typing import Any

import aiohttp

from server.media import hooks
from tests.media.clients import Viewer, view
from tests.signaling.helpers import LiveClient

PING_EVERY = 5.0
PONG_DEADLINE = 16.0
BACKOFF_MIN, BACKOFF_MAX = 0.5, 15.0


def say(event: str, **values: Any) -> None:
    print(json.dumps({"event": event, "at": time.monotonic(), **values}), flush=True)


class Hall:
    def __init__(self, url: str, session_id: int, token: str) -> None:
        self.url = f"{url}/ws/sessions/{session_id}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.viewers: list[Viewer] = []
        # The view offered after each welcome, by the welcome's number, until its first frame.
        self.started: dict[int, Viewer] = {}
        self.welcomes = 0

    @property
    def frames(self) -> int:
        return sum(v.frames for v in self.viewers)

    async def count(self) -> None:
        seen = 0
        while True:
            await asyncio.sleep(0.02)
            if self.frames != seen:
                seen = self.frames
                say("frames", frames=seen)
            for n, viewer in list(self.started.items()):
                if viewer.frames:
                    del self.started[n]
                    say("first_frame", n=n)

    async def run(self) -> None:
        attempt = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            while True:
                try:
                    ws = await http.ws_connect(self.url, headers=self.headers, autoping=True)
                except (aiohttp.ClientError, OSError) as exc:
                    say("connect_failed", error=repr(exc))
                else:
                    if await self.session(ws):
                        attempt = 0
                delay = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** attempt) * (0.7 + random.random() * 0.6)
                attempt += 1
                await asyncio.sleep(delay)

    async def session(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """One socket's life; True when it was welcomed."""
        live = LiveClient(ws)
        welcomed = False
        try:
            await live.send("join")
            welcome = await live.expect("welcome", timeout=PONG_DEADLINE)
            welcomed = True
            self.welcomes += 1
            say("welcome", key=welcome["you"]["key"], n=self.welcomes)
            # The page's _resumePeers: the old peer connection is gone with the old socket; offer afresh.
            for old in self.viewers:
                await old.close()
            viewer = await view(await live.answerer("view"))
            self.viewers.append(viewer)
            self.started[self.welcomes] = viewer
            say("answer", n=self.welcomes)
            heard, count, next_ping = time.monotonic(), len(live.received), time.monotonic()
            while not ws.closed:
                now = time.monotonic()
                if len(live.received) != count:
                    heard, count = now, len(live.received)
                if now >= next_ping:
                    next_ping = now + PING_EVERY
                    if now - heard > PONG_DEADLINE:
                        say("dead")
                        # As the page does: close without leave (code 4000), and do not wait for the reply.
                        asyncio.ensure_future(ws.close(code=4000, message=b"no pong"))
                        return True
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await live.send("ping", t=int(time.time() * 1000))
                await asyncio.sleep(0.05)
            say("closed", code=ws.close_code)
        except (AssertionError, ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            say("closed", code=ws.close_code, error=repr(exc)[:200])
            asyncio.ensure_future(ws.close(code=4000))
        finally:
            live._reader.cancel()
        return welcomed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--session", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--addresses", required=True,
                        help="comma-separated: the only addresses this process's ICE may gather on and talk to")
    args = parser.parse_args()
    # Importing tests.media.clients confined ICE to loopback; in the namespace it is the veth's two ends.
    hooks.restrict_addresses(args.addresses.split(","))
    hall = Hall(args.url, args.session, args.token)
    counter = asyncio.ensure_future(hall.count())
    try:
        await hall.run()
    finally:
        counter.cancel()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    sys.exit(0)
