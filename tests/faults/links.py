"""Links a fault test breaks on purpose: a TCP path to the server (or to the database), a hall's whole network.

* :class:`Gate` is a TCP proxy a test puts in front of a server. Unlike
  ``tests/attendance/tcp_proxy.TcpProxy`` (which resets both ends at once, so
  both hear of it), it breaks a connection the two ways a real network does:

  - ``reset()``: the far end (the server) is reset, the near end (the
    client) hears nothing; new connections are refused. It is a path that
    lost the flow (a NAT, a router, a restarted peer): when the path is back
    (``restore()``), the client's next packet is answered with a reset, and
    its socket fails then.
  - ``blackhole()``: nothing passes either way and nobody is told (a pulled
    cable, a partition); new connections are accepted and not answered. Each
    side finds out by its own timers, if it has any. On ``restore()``
    everything that waited goes through, as TCP's retransmissions would carry
    it, and the connections carry on.

* :func:`blackout` drops every packet of a test namespace's veth, both ways,
  with iptables rules inside the namespace (they die with it), and always
  lifts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.media.browsers import Namespace, _iptables


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None
    # Set while data may pass; a reset pair is never set again.
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    reset: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Gate:
    """A TCP proxy on 127.0.0.1 to ``target``, which the test can break and restore."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.state = "up"  # up | reset | dark
        self.refused = 0
        self._server: asyncio.base_events.Server | None = None
        self._pairs: set[_Pair] = set()
        self._restored = asyncio.Event()
        self._restored.set()

    async def start(self) -> Gate:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """The far end of every connection is reset; the near end hears nothing until the path is back."""
        self.state = "reset"
        self._restored.clear()
        for pair in list(self._pairs):
            pair.reset = True
            pair.flowing.clear()
            if pair.upstream is not None:
                with contextlib.suppress(Exception):
                    pair.upstream.transport.abort()

    def cut(self) -> None:
        """Both ends of every connection are reset at once and new ones refused (``TcpProxy.cut``)."""
        self.state = "reset"
        self._restored.clear()
        for pair in list(self._pairs):
            self._drop(pair)

    def blackhole(self) -> None:
        """Nothing passes either way; connections stay open at both ends, new ones wait unanswered."""
        self.state = "dark"
        self._restored.clear()
        for pair in list(self._pairs):
            pair.flowing.clear()

    def restore(self) -> None:
        self.state = "up"
        self._restored.set()
        for pair in list(self._pairs):
            if pair.reset:
                # The client's next packet reaches a host that forgot the flow: a reset.
                self._drop(pair)
            else:
                pair.flowing.set()

    async def close(self) -> None:
        self.state = "closed"
        for pair in list(self._pairs):
            self._drop(pair)
            await asyncio.gather(*pair.tasks, return_exceptions=True)
        self._pairs.clear()
        self._restored.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _drop(self, pair: _Pair) -> None:
        for writer in (pair.client, pair.upstream):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.transport.abort()
        for task in pair.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._pairs.discard(pair)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.state == "reset" or self.state == "closed":
            self.refused += 1
            writer.transport.abort()
            return
        if self.state == "dark":
            # Unanswered until the path is back (a client that gives up first closes it itself).
            self.refused += 1
            await self._restored.wait()
            if self.state != "up":
                writer.transport.abort()
                return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = _Pair(writer, up_writer)
        pair.flowing.set()
        self._pairs.add(pair)
        pair.tasks = [asyncio.create_task(self._pipe(pair, reader, up_writer)),
                      asyncio.create_task(self._pipe(pair, up_reader, writer))]

    async def _pipe(self, pair: _Pair, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while True:
                await pair.flowing.wait()
                data = await source.read(65536)
                if not data:
                    break
                # Read while dark: it waits here, as in the kernel's buffers, until the path is back.
                await pair.flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not pair.reset:
                with contextlib.suppress(Exception):
                    sink.transport.abort()


def _iptables_in(ns: Namespace, *args: str, check: bool = True) -> None:
    subprocess.run(["ip", "netns", "exec", ns.name, _iptables(), *args], check=check, capture_output=True,
                   timeout=20)


def black_out(ns: Namespace) -> None:
    """Drop everything in and out of the namespace's veth (both directions, every protocol)."""
    _iptables_in(ns, "-I", "INPUT", "-i", ns.interface, "-j", "DROP")
    _iptables_in(ns, "-I", "OUTPUT", "-o", ns.interface, "-j", "DROP")


def light_up(ns: Namespace) -> None:
    """Lift what :func:`black_out` put in place (and anything else in those chains)."""
    _iptables_in(ns, "-F", "INPUT", check=False)
    _iptables_in(ns, "-F", "OUTPUT", check=False)


@contextlib.contextmanager
def blackout(ns: Namespace) -> Iterator[None]:
    black_out(ns)
    try:
        yield
    finally:
        light_up(ns)
