"""Soak: a long lecture with steady viewers, then waves of joins and leaves; what the server keeps afterwards.

    python -m bench.soak --minutes 30 --viewers 50 --waves 100

A fresh demo server on core 0 (``bridgecast serve``, demo data, SQLite,
loopback-only ICE) and, in a load process on core 1, one publisher (the
speaker over WHIP: a looped pre-encoded 640x480@30 VP8 clip and an Opus tone,
or aiortc's live encoder with ``--source live``) and ``--viewers`` WHEP
viewers that count RTP frames without decoding (bench/load.py). They watch
for ``--minutes``. Then ``--waves`` joins and leaves in waves of
``--wave-size``: each wave's viewers join at once (a share of them over the
websocket: ``join``, an ``offer`` for the view, then ``leave``; the others by
WHEP, leaving with DELETE), receive ``--wave-seconds`` from the moment the
last of them has a picture, and leave. The steady viewers stay throughout.
At the end every viewer and the publisher leave (DELETE), and each resource
is deleted a second time (the server must answer 404: forgotten).

Measured:

* frames delivered per viewer against frames the publisher sent over the
  same window (steady viewers: the whole run; wave viewers: their window),
  the longest gap between two frames, audio packets against 50 a second;
* the server's RSS (/proc/<pid>/status) every ``--sample-seconds``: its
  growth from minute ``--rss-from`` of the steady phase to the end of the
  waves, and its slope during the steady phase;
* after everyone left, against a baseline taken before the publisher
  joined: the server's open file descriptors (/proc/<pid>/fd, by kind), its
  UDP and TCP sockets (the fds' inodes in /proc/<pid>/net/udp, tcp), its
  threads, and from a state dump (below) its asyncio tasks, media endpoints,
  WHIP/WHEP resources, websockets, quota counts and the aiortc objects still
  alive after a garbage collection (and, for any peer connection, websocket
  or endpoint still alive, a tree of what holds it). Sampled every 2 s after
  the last leave; the final state is taken at least ``--linger`` (40) s after
  it, once the media is gone (a closed websocket's heartbeat timer holds it
  for up to 20 s; ICE consent fails about 30 s after a peer goes), and at
  most ``--settle`` (90) s after it.

The server has no /metrics or debug endpoint. To see its tasks and media
endpoints this bench starts it as ``python -m bench.soak _server``: the same
``bridgecast serve`` (server.cli), plus signal handlers that write a JSON
state dump (SIGUSR1: tasks, rooms, quotas, threads; SIGUSR2: also a
``gc.collect()`` and counts of live aiortc/aioice/server objects) to a file.
Nothing else changes in the server. Everything is bounded (timeouts on every
step, a watchdog on the load process, the server stopped by its PID); traffic
stays on 127.0.0.1. Results go to bench/results/soak-<timestamp>.json and to
the "soak" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, cpu_seconds, machine, prepare, rss_mib, serving, start_session, write_section

MiB = 1024 * 1024


# The server, with a state dump ---------------------------------------------------------------

INTEREST = {"RTCPeerConnection", "RTCIceTransport", "RTCIceGatherer", "RTCDtlsTransport", "RTCSctpTransport",
            "RTCRtpSender", "RTCRtpReceiver", "RTCRtpTransceiver", "Connection", "ForwardTrack", "Subscription",
            "_Endpoint", "WebSocketResponse", "Member", "Resource", "LiveRoom", "MediaRoom", "Recorder"}


def _length(get: Any) -> int | None:
    try:
        return len(get())
    except Exception:  # the structure moved: say so rather than stop the dump
        return None


def _task_name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", type(coro).__name__)


def server_state(app: Any, full: bool) -> dict[str, Any]:
    """What the running server holds now (runs in the server's event loop)."""
    import gc

    from server import keys

    tasks = asyncio.all_tasks()
    state: dict[str, Any] = {
        "tasks": len(tasks),
        "task_kinds": dict(Counter(_task_name(t) for t in tasks).most_common(25)),
        "threads": threading.active_count(),
        # "Thread-3 (_connection_worker_thread)" and "Thread-4 (...)" are one kind.
        "thread_kinds": dict(Counter(re.sub(r"^Thread-\d+ \((.*)\)$", r"\1", t.name) for t in threading.enumerate())),
        "websockets": _length(lambda: app[keys.SOCKETS]),
    }
    registry = app.get(keys.LIVE)
    rooms = []
    for session_id, room in list(getattr(registry, "rooms", {}).items()):
        media = room.media
        feed = media.feed
        rooms.append({
            "session": session_id,
            "members": _length(lambda: room.members),
            "resources": _length(lambda: room.resources),
            "owners": _length(lambda: room.owners),
            "roster": _length(lambda: room.session.roster.participants),
            "media_endpoints": _length(lambda: media._endpoints),
            "endpoint_keys": _length(lambda: media._by_key),
            "subscriptions": _length(lambda: feed.subscriptions),
            "video_fanout_tracks": _length(lambda: feed.video.fanout.tracks),
            "audio_viewers": _length(lambda: feed.audio.viewers),
            "audio_variants": _length(lambda: feed.audio._variants),
            "audio_inputs": _length(lambda: feed.audio.inputs),
            "room_tasks": _length(lambda: room._tasks),
            "media_tasks": _length(lambda: media._tasks),
        })
    state["rooms"] = rooms
    quotas = getattr(registry, "quotas", None)
    try:
        state["quota_endpoints_held"] = sum(quotas.endpoints._users.values())  # type: ignore[union-attr]
        state["quota_sockets_held"] = sum(quotas.sockets._users.values())  # type: ignore[union-attr]
    except Exception:
        pass
    if full:
        gc.collect()
        objects = gc.get_objects()
        state["gc_objects"] = len(objects)
        alive: Counter[str] = Counter()
        every: Counter[str] = Counter()
        traced: dict[str, Any] = {}
        for obj in objects:
            kind = type(obj)
            every[f"{kind.__module__}.{kind.__qualname__}"] += 1
            if kind.__qualname__ in INTEREST:
                root = kind.__module__.split(".")[0]
                if root in ("aiortc", "aioice", "server", "aiohttp"):
                    alive[f"{root}.{kind.__qualname__}"] += 1
                    if kind.__qualname__ in TRACE and f"{root}.{kind.__qualname__}" not in traced:
                        traced[f"{root}.{kind.__qualname__}"] = obj
        del objects
        state["alive"] = dict(sorted(alive.items()))
        # Every kind of object the collector tracks, for what grew between two dumps.
        state["object_kinds"] = {name: count for name, count in every.items() if count >= 10}
        # What holds the first of each kind that should be gone once everyone left (none at the baseline).
        holders = {}
        for name in list(traced):
            holders[name] = _holders(traced.pop(name))
        if holders:
            state["holders"] = holders
    return state


# Objects no one should hold once every viewer has left.
TRACE = {"RTCPeerConnection", "RTCDtlsTransport", "WebSocketResponse", "_Endpoint", "Member"}


def _describe(obj: Any) -> str:
    import types

    if isinstance(obj, dict):
        return f"dict(keys {', '.join(map(str, list(obj)[:6]))}{'…' if len(obj) > 6 else ''})"
    if isinstance(obj, (list, set, tuple, frozenset)):
        return f"{type(obj).__name__}(len {len(obj)})"
    if isinstance(obj, types.CellType):
        return "cell"
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        return f"{type(obj).__name__} {getattr(obj, '__qualname__', '?')}"
    if isinstance(obj, (types.CoroutineType, types.GeneratorType)):
        return f"{type(obj).__name__} {obj.__qualname__}"
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _holders(obj: Any, depth: int = 4, breadth: int = 3) -> list[Any]:
    """A tree of what refers to ``obj`` (frames and this dump's own lists left out), a few levels up."""
    import gc
    import types

    mine: set[int] = set()  # the lists this walk made: they refer to what they list

    def up(target: Any, level: int, path: frozenset[int]) -> list[Any]:
        if level == depth:
            return []
        found: list[Any] = []
        refs = gc.get_referrers(target)
        mine.add(id(refs))
        for index in range(len(refs)):
            ref = refs[index]
            if isinstance(ref, types.FrameType) or id(ref) in path or id(ref) in mine:
                continue
            if isinstance(ref, list) and len(ref) > 10000:  # gc.get_objects() of a caller
                continue
            found.append({"by": _describe(ref), "held_by": up(ref, level + 1, path | {id(ref)})})
            if len(found) >= breadth:
                break
        return found

    return up(obj, 0, frozenset({id(obj)}))


def serve_instrumented() -> int:
    """``bridgecast serve``, plus a state dump to $SOAK_STATE_FILE on SIGUSR1 (light) and SIGUSR2 (with gc)."""
    import server.app as app_module
    from server.cli import main as cli_main

    state_file = Path(os.environ["SOAK_STATE_FILE"])
    original = app_module.create_app
    counter = iter(range(1, 10**9))

    def create_app(settings: Any) -> Any:
        app = original(settings)

        async def install(app: Any) -> None:
            def dump(full: bool) -> None:
                try:
                    state = server_state(app, full)
                except Exception as exc:
                    state = {"error": repr(exc)}
                state["seq"] = next(counter)
                partial = state_file.with_suffix(".part")
                partial.write_text(json.dumps(state))
                os.replace(partial, state_file)

            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGUSR1, dump, False)
            loop.add_signal_handler(signal.SIGUSR2, dump, True)

        # Before the port opens: a signal never finds the default action (terminate).
        app.on_startup.append(install)
        return app

    app_module.create_app = create_app  # server.cli imports it when it serves
    return cli_main(["serve"])


class Probe:
    """The server process from outside: /proc, and its state dump."""

    def __init__(self, pid: int, state_file: Path) -> None:
        self.pid = pid
        self.state_file = state_file
        self._lock = threading.Lock()
        self._seq = 0

    def dump(self, full: bool = False, timeout: float = 15) -> dict[str, Any] | None:
        with self._lock:
            os.kill(self.pid, signal.SIGUSR2 if full else signal.SIGUSR1)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    state = json.loads(self.state_file.read_text())
                    if state.get("seq", 0) > self._seq:
                        self._seq = state["seq"]
                        return state
                except (OSError, ValueError):
                    pass
                time.sleep(0.05)
            return None

    def _inodes(self, *tables: str) -> set[str]:
        found = set()
        for table in tables:
            try:
                lines = Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            found.update(line.split()[9] for line in lines if len(line.split()) > 9)
        return found

    def fds(self) -> tuple[Counter[str], list[str]]:
        """Open descriptors by kind, and the files among them."""
        udp, tcp, unix = self._inodes("udp", "udp6"), self._inodes("tcp", "tcp6"), self._inodes("unix")
        kinds: Counter[str] = Counter()
        files = []
        folder = f"/proc/{self.pid}/fd"
        for fd in os.listdir(folder):
            try:
                target = os.readlink(f"{folder}/{fd}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inode = target[8:-1]
                kinds["udp" if inode in udp else "tcp" if inode in tcp else "unix" if inode in unix else
                      "socket (other)"] += 1
            elif target.startswith("pipe:"):
                kinds["pipe"] += 1
            elif target.startswith("anon_inode:"):
                kinds[target.removeprefix("anon_inode:").strip("[]")] += 1
            else:
                kinds["file"] += 1
                files.append(target)
        return kinds, sorted(files)

    def sample(self, *, dump: bool = True, full: bool = False) -> dict[str, Any]:
        kinds, files = self.fds()
        sample: dict[str, Any] = {
            "rss_mib": round(rss_mib(self.pid), 2),
            "fds": sum(kinds.values()),
            "fd_kinds": dict(sorted(kinds.items())),
            "files": files,
            "udp": kinds.get("udp", 0),
            "tcp": kinds.get("tcp", 0),
            "os_threads": len(os.listdir(f"/proc/{self.pid}/task")),
            "cpu_s": round(cpu_seconds(self.pid), 2),
        }
        if dump:
            state = self.dump(full)
            if state is not None:
                sample["state"] = state
                sample["tasks"] = state.get("tasks")
                rooms = state.get("rooms") or []
                for name in ("media_endpoints", "resources", "members", "subscriptions"):
                    sample[name] = sum(room.get(name) or 0 for room in rooms)
        return sample


# The load: publisher, steady viewers, waves --------------------------------------------------

def _percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else None


async def load_main(config: dict[str, Any]) -> dict[str, Any]:
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    # bench.load confines every connection of this process to 127.0.0.1 when imported.
    from bench.load import CountingViewer, ToneTrack
    from tests.media.clients import PatternTrack
    from tests.media.studio import ClipTrack, clip

    url, session = config["url"], config["session"]
    members: list[str] = config["members"]
    events: list[dict[str, Any]] = []

    def emit(event: str, **fields: Any) -> None:
        line = {"event": event, "t": round(time.monotonic() - started, 2), **fields}
        events.append(line)
        print(json.dumps(line), flush=True)

    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    class Viewer(CountingViewer):
        """Counts frames (bench/load.py) and the longest gap between two while measuring."""

        def __init__(self, token: str, via: str) -> None:
            super().__init__()
            self.token, self.via = token, via
            self.location: str | None = None
            self.last_frame: float | None = None
            self.max_gap = 0.0
            self.left: str | None = None  # how it left: the DELETE status, or the websocket's close code

        async def _video_packet(self, packet: Any, arrival_time_ms: int) -> None:
            await super()._video_packet(packet, arrival_time_ms)
            if packet.marker:
                now = time.monotonic()
                if self.measuring and self.last_frame is not None:
                    self.max_gap = max(self.max_gap, now - self.last_frame)
                self.last_frame = now

        async def join(self, http: aiohttp.ClientSession) -> None:
            self.started = time.monotonic()
            await self.pc.setLocalDescription(await self.pc.createOffer())
            async with http.post(f"{url}/whep/sessions/{session}", data=self.pc.localDescription.sdp,
                                 headers={**auth(self.token), "Content-Type": "application/sdp"}) as reply:
                if reply.status != 201:
                    raise RuntimeError(f"WHEP {reply.status}: {(await reply.text())[:200]}")
                self.location = reply.headers["Location"]
                answer = await reply.text()
            await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

        async def leave(self, http: aiohttp.ClientSession) -> None:
            try:
                if self.location is not None:
                    async with http.delete(f"{url}{self.location}", headers=auth(self.token)) as reply:
                        self.left = str(reply.status)
            finally:
                await self.pc.close()

    class SocketViewer(Viewer):
        """A member's page: the websocket, ``join``, an ``offer`` for the view over it, ``leave``."""

        def __init__(self, token: str) -> None:
            super().__init__(token, "websocket")
            self.ws: aiohttp.ClientWebSocketResponse | None = None
            self.reader: asyncio.Task[None] | None = None
            self.welcomed, self.answered = asyncio.Event(), asyncio.Event()
            self.answer: str | None = None
            self.error: str | None = None

        async def _read(self) -> None:
            assert self.ws is not None
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                kind = data.get("type")
                if kind == "welcome":
                    self.welcomed.set()
                elif kind == "answer" and data.get("pc") == "view":
                    self.answer = data["sdp"]
                    self.answered.set()
                elif kind == "error":
                    self.error = self.error or data.get("code")
                    self.welcomed.set()
                    self.answered.set()

        async def join(self, http: aiohttp.ClientSession) -> None:
            self.started = time.monotonic()
            self.ws = await http.ws_connect(f"{url}/ws/sessions/{session}", headers=auth(self.token),
                                            heartbeat=None, max_msg_size=0)
            self.reader = asyncio.ensure_future(self._read())
            await self.ws.send_json({"type": "join"})
            await asyncio.wait_for(self.welcomed.wait(), 20)
            if self.error:
                raise RuntimeError(f"join: {self.error}")
            await self.pc.setLocalDescription(await self.pc.createOffer())
            await self.ws.send_json({"type": "offer", "pc": "view", "sdp": self.pc.localDescription.sdp})
            await asyncio.wait_for(self.answered.wait(), 20)
            if self.answer is None:
                raise RuntimeError(f"offer: {self.error}")
            await self.pc.setRemoteDescription(RTCSessionDescription(self.answer, "answer"))

        async def leave(self, http: aiohttp.ClientSession) -> None:
            try:
                if self.ws is not None and not self.ws.closed:
                    await self.ws.send_json({"type": "leave"})
                    if self.reader is not None:
                        with_timeout = asyncio.wait_for(asyncio.shield(self.reader), 10)
                        try:
                            await with_timeout
                        except (TimeoutError, asyncio.TimeoutError):
                            pass
                    self.left = f"ws {self.ws.close_code}"
                    await self.ws.close()
            finally:
                if self.reader is not None:
                    self.reader.cancel()
                await self.pc.close()

    async def join_all(viewers: list[Viewer], http: aiohttp.ClientSession) -> list[str]:
        async def one(viewer: Viewer) -> str | None:
            try:
                await asyncio.wait_for(viewer.join(http), 30)
                return None
            except Exception as exc:
                await viewer.pc.close()
                return f"{viewer.via}: {type(exc).__name__}: {exc}"[:300]
        return [error for error in await asyncio.gather(*(one(v) for v in viewers)) if error]

    async def first_frames(viewers: list[Viewer], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(v.first_frame is None for v in viewers):
            await asyncio.sleep(0.1)

    def snapshot(viewers: list[Viewer]) -> dict[str, Any]:
        return {"at": time.monotonic(), "sent": video.sent, "frames": [v.frames for v in viewers],
                "audio": [v.audio_packets for v in viewers]}

    def delivery(viewers: list[Viewer], start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
        sent = end["sent"] - start["sent"]
        seconds = end["at"] - start["at"]
        got = [b - a for a, b in zip(start["frames"], end["frames"], strict=True)]
        audio = [b - a for a, b in zip(start["audio"], end["audio"], strict=True)]
        ratios = [g / sent for g in got] if sent else []
        return {"seconds": round(seconds, 1), "sent": sent, "fps_sent": round(sent / seconds, 2) if seconds else None,
                "received_min": min(got) if got else None,
                "received_mean": round(sum(got) / len(got), 1) if got else None,
                "ratio_min": round(min(ratios), 5) if ratios else None,
                "ratio_mean": round(sum(ratios) / len(ratios), 5) if ratios else None,
                "below_99": sum(1 for r in ratios if r < 0.99),
                "audio_ratio_min": round(min(audio) / (seconds * 50), 4) if audio and seconds else None,
                "audio_ratio_mean": round(sum(audio) / len(audio) / (seconds * 50), 4) if audio and seconds else None}

    started = time.monotonic()
    width, height = (int(v) for v in config["size"].split("x"))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        # The speaker over WHIP.
        publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video: Any
        if config["source"] == "clip":
            video = ClipTrack(clip(None, (width, height), codec="vp8", seconds=4, gop_seconds=2,
                                   bitrate=round(width * height * 30 * 0.1)))
        else:
            video = PatternTrack(width, height)
        sending = publisher.addTransceiver(video, direction="sendonly")
        if config["source"] == "clip":
            sending.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                         if c.mimeType.lower() in ("video/vp8", "video/rtx")])
        publisher.addTransceiver(ToneTrack(), direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        async with http.post(f"{url}/whip/sessions/{session}", data=publisher.localDescription.sdp,
                             headers={**auth(config["speaker"]), "Content-Type": "application/sdp"}) as reply:
            if reply.status != 201:
                raise RuntimeError(f"WHIP {reply.status}: {await reply.text()}")
            publisher_location = reply.headers["Location"]
            answer = await reply.text()
        await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.sleep(2)
        emit("published", location=publisher_location)

        # Steady viewers, a few at a time.
        steady = [Viewer(members[i % len(members)], "whep") for i in range(config["viewers"])]
        errors = []
        for index in range(0, len(steady), 10):
            errors += await join_all(steady[index:index + 10], http)
        await first_frames(steady, 30)
        without = sum(1 for v in steady if v.first_frame is None)
        emit("joined", viewers=len(steady), errors=errors, without_picture=without)
        await asyncio.sleep(config["warmup"])
        for viewer in steady:
            viewer.measuring = True
        steady_start = snapshot(steady)
        emit("steady")
        deadline = steady_start["at"] + config["minutes"] * 60
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(60.0, left))
            now = snapshot(steady)
            got = delivery(steady, steady_start, now)
            emit("progress", minutes=round((now["at"] - steady_start["at"]) / 60, 2), sent=got["sent"],
                 ratio_min=got["ratio_min"], connected=sum(1 for v in steady if v.pc.connectionState == "connected"),
                 publisher=publisher.connectionState)
        steady_end = snapshot(steady)
        emit("waves")

        # Waves of joins and leaves; the steady viewers stay.
        pool = members[config["viewers"]:] or members
        size, total = config["wave_size"], config["waves"]
        waves = []
        every_socket = round(1 / config["ws_share"]) if config["ws_share"] > 0 else 0
        joined_total = 0
        all_locations = [publisher_location] + [v.location for v in steady if v.location]
        wave_index = 0
        while joined_total < total:
            count = min(size, total - joined_total)
            crowd: list[Viewer] = []
            for k in range(count):
                g = joined_total + k
                token = pool[g % len(pool)]
                crowd.append(SocketViewer(token) if every_socket and g % every_socket == every_socket - 1
                             else Viewer(token, "whep"))
            joined_total += count
            began = time.monotonic()
            wave_errors = await join_all(crowd, http)
            await first_frames([v for v in crowd if v.pc.connectionState != "closed"], config["first_frame_timeout"])
            pictured = [v for v in crowd if v.first_frame is not None]
            for viewer in pictured:
                viewer.measuring = True
            start = snapshot(pictured)
            await asyncio.sleep(config["wave_seconds"])
            end = snapshot(pictured)
            for viewer in pictured:
                viewer.measuring = False
            await asyncio.gather(*(asyncio.wait_for(v.leave(http), 20) for v in crowd), return_exceptions=True)
            all_locations += [v.location for v in crowd if v.location]
            joins = [v.first_frame - v.started for v in pictured if v.first_frame is not None]
            wave = {"wave": wave_index, "viewers": count, "websocket": sum(1 for v in crowd if v.via == "websocket"),
                    "errors": wave_errors, "pictured": len(pictured),
                    "join_first_frame_s": [round(j, 3) for j in sorted(joins)],
                    "delivery": delivery(pictured, start, end),
                    "max_gap_s": round(max((v.max_gap for v in pictured), default=0), 3),
                    "left": dict(Counter(v.left or "not" for v in crowd)),
                    "seconds": round(time.monotonic() - began, 1)}
            waves.append(wave)
            emit("wave", **{k: wave[k] for k in ("wave", "viewers", "websocket", "pictured", "left")},
                 ratio_min=wave["delivery"]["ratio_min"], errors=len(wave_errors))
            wave_index += 1
            await asyncio.sleep(config["wave_pause"])
        waves_end = snapshot(steady)
        for viewer in steady:
            viewer.measuring = False
        steady_connected = sum(1 for v in steady if v.pc.connectionState == "connected")
        emit("leaving")

        # Everyone leaves; then each resource once more: the server must have forgotten it.
        await asyncio.gather(*(asyncio.wait_for(v.leave(http), 20) for v in steady), return_exceptions=True)
        async with http.delete(f"{url}{publisher_location}", headers=auth(config["speaker"])) as reply:
            publisher_left = reply.status
        await publisher.close()
        await asyncio.sleep(1)
        again: Counter[str] = Counter()
        for location in all_locations:
            async with http.delete(f"{url}{location}", headers=auth(config["speaker"])) as reply:
                again[str(reply.status)] += 1

    whole = delivery(steady, steady_start, waves_end)
    result = {
        "event": "result",
        "publisher": {"frames_sent": video.sent, "left": publisher_left},
        "steady": {
            "viewers": len(steady), "join_errors": errors, "without_picture": without,
            "steady_phase": delivery(steady, steady_start, steady_end),
            "whole_run": whole,
            "max_gap_s": round(max((v.max_gap for v in steady), default=0), 3),
            "max_gap_p50_s": _percentile([v.max_gap for v in steady], 0.5),
            "connected_at_end": steady_connected,
            "left": dict(Counter(v.left or "not" for v in steady)),
        },
        "waves": waves,
        "delete_again": dict(again),
        "events": events,
    }
    return result


def run_load(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    print(json.dumps(asyncio.run(load_main(config))), flush=True)


# The run ------------------------------------------------------------------------------------

def _fmt_kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"


def _stop(process: subprocess.Popen[Any]) -> None:
    """End a process this bench started, by its PID."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def run(args: argparse.Namespace) -> dict[str, Any]:
    waves_count = math.ceil(args.waves / args.wave_size) if args.waves else 0
    budget = (args.minutes * 60 + args.viewers * 3 + waves_count * (args.wave_seconds + args.first_frame_timeout
              + args.wave_pause + 60) + 300)
    with tempfile.TemporaryDirectory(prefix="bc-soak-") as tmp:
        folder = Path(tmp)
        demo = prepare(folder / "data")
        from server.auth.tokens import issue_token

        ttl = int(budget + 3600)  # an expired token closes its WHEP resource: never during the run

        def token(name: str) -> str:
            return issue_token(demo.secret, demo.users[name], 1, ttl, session_id=demo.session_id)

        state_file = folder / "state.json"
        log = folder / "server.log"
        server_process: subprocess.Popen[str] | None = None
        loadavg_start = os.getloadavg()
        try:
            with serving(demo, ["-m", "bench.soak", "_server"], env={"SOAK_STATE_FILE": str(state_file)},
                         log=log) as (server, url):
                server_process = server
                start_session(url, demo)
                probe = Probe(server.pid, state_file)
                time.sleep(2)
                baseline = probe.sample(full=True)
                print(f"baseline: RSS {baseline['rss_mib']} MiB, {baseline['fds']} fds "
                      f"({_fmt_kinds(baseline['fd_kinds'])}), {baseline.get('tasks')} tasks, "
                      f"{baseline['os_threads']} threads", flush=True)
                config = {"url": url, "session": demo.session_id, "speaker": token("speaker"),
                          "members": [token(name) for name in demo.members], "viewers": args.viewers,
                          "minutes": args.minutes, "waves": args.waves, "wave_size": args.wave_size,
                          "wave_seconds": args.wave_seconds, "wave_pause": args.wave_pause,
                          "ws_share": args.ws_share, "warmup": 3, "first_frame_timeout": args.first_frame_timeout,
                          "size": args.size, "source": args.source}
                config_file = folder / "load.json"
                config_file.write_text(json.dumps(config))
                load_log = folder / "load.log"
                with load_log.open("w") as load_err:
                    load = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "bench.soak", "_load",
                                             str(config_file)], cwd=ROOT, env=demo.env, stdout=subprocess.PIPE,
                                            stderr=load_err, text=True)
                    try:
                        measured = _watch(args, probe, load, budget)
                    finally:
                        _stop(load)
                if measured["result"] is None:
                    tail = load_log.read_text()[-3000:]
                    raise RuntimeError(f"the load process ended without a result (exit {load.returncode}):\n{tail}")
                # After everyone left: until the media is gone (and stays so), at most --settle seconds.
                settle: list[dict[str, Any]] = []
                left_at = time.monotonic()
                while True:
                    time.sleep(2)
                    sample = probe.sample()
                    sample["t"] = round(time.monotonic() - left_at, 1)
                    settle.append(sample)
                    clean = (sample["udp"] <= baseline["udp"] and not sample.get("media_endpoints")
                             and not sample.get("resources") and not sample.get("members"))
                    stable = (clean and len(settle) >= 2 and settle[-2]["fds"] == sample["fds"]
                              and settle[-2].get("tasks") == sample.get("tasks"))
                    # Past --linger (timers that hold a closed connection: the websocket's heartbeat
                    # 20 s, ICE consent about 30 s), and clean, or past --settle whatever the state.
                    if (stable and sample["t"] >= args.linger) or sample["t"] >= max(args.settle, args.linger):
                        break
                final = probe.sample(full=True)
                final["t"] = round(time.monotonic() - left_at, 1)
        except subprocess.TimeoutExpired:
            if server_process is not None and server_process.poll() is None:
                server_process.kill()  # it did not stop within 10 s of SIGTERM
                server_process.wait(timeout=10)
            raise
        log_text = log.read_text(errors="replace") if log.exists() else ""
    problems = [line for line in log_text.splitlines()
                if re.search(r"Traceback|ERROR|CRITICAL|Task was destroyed|never retrieved|Unclosed|ResourceWarning",
                             line)]
    return {"baseline": baseline, "samples": measured["samples"], "marks": measured["marks"],
            "load": measured["result"], "load_cpu_percent": measured["load_cpu_percent"],
            "server_cpu_percent": measured["server_cpu_percent"], "settle": settle, "final": final,
            "server_log": {"lines": len(log_text.splitlines()), "problems": len(problems), "first": problems[:20]},
            "loadavg_start": [round(v, 2) for v in loadavg_start],
            "loadavg_end": [round(v, 2) for v in os.getloadavg()]}


def _watch(args: argparse.Namespace, probe: Probe, load: subprocess.Popen[str], budget: float) -> dict[str, Any]:
    """Read the load's events; sample the server every --sample-seconds meanwhile; stop the load at the budget."""
    samples: list[dict[str, Any]] = []
    marks: dict[str, float] = {}
    began = time.monotonic()
    done = threading.Event()
    phase = {"name": "publishing"}

    def sampler() -> None:
        while not done.wait(args.sample_seconds):
            try:
                sample = probe.sample()
            except OSError:
                return  # the server is gone
            sample.pop("state", None)
            sample.pop("files", None)
            sample.update({"t": round(time.monotonic() - began, 1), "phase": phase["name"]})
            samples.append(sample)

    def overdue() -> None:
        if load.poll() is None:
            print(f"soak: the load ran past its budget of {budget:.0f} s: stopped", flush=True)
            load.kill()

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    watchdog = threading.Timer(budget, overdue)
    watchdog.daemon = True
    watchdog.start()
    result = None
    load_cpu = server_cpu = None
    cpu_mark = (cpu_seconds(probe.pid), cpu_seconds(load.pid), time.monotonic())
    assert load.stdout is not None
    try:
        for line in load.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            now = time.monotonic() - began
            if kind in ("steady", "waves", "leaving"):
                marks[kind] = now
                phase["name"] = kind if kind != "leaving" else "leaving"
                # One sample exactly at each boundary.
                sample = probe.sample()
                sample.pop("state", None)
                sample.pop("files", None)
                sample.update({"t": round(now, 1), "phase": f"mark:{kind}"})
                samples.append(sample)
                if kind == "steady":
                    cpu_mark = (cpu_seconds(probe.pid), cpu_seconds(load.pid), time.monotonic())
                if kind == "leaving":
                    elapsed = time.monotonic() - cpu_mark[2]
                    server_cpu = round((cpu_seconds(probe.pid) - cpu_mark[0]) / elapsed * 100, 1)
                    load_cpu = round((cpu_seconds(load.pid) - cpu_mark[1]) / elapsed * 100, 1)
            if kind == "result":
                result = event
                continue
            if kind == "progress":
                last = samples[-1] if samples else {}
                print(f"  {event['minutes']:.1f} min: frames min {event['ratio_min']} of sent, "
                      f"{event['connected']} connected, publisher {event['publisher']}; server RSS "
                      f"{last.get('rss_mib')} MiB, {last.get('fds')} fds, {last.get('tasks')} tasks", flush=True)
            elif kind == "wave":
                print(f"  wave {event['wave']}: {event['pictured']}/{event['viewers']} with a picture "
                      f"({event['websocket']} by websocket), frames min {event['ratio_min']} of sent, "
                      f"left {event['left']}, errors {event['errors']}", flush=True)
            else:
                print(f"  {kind} at {now:.0f} s" + (f": {event.get('errors') or ''} without picture "
                                                     f"{event.get('without_picture')}" if kind == "joined" else ""),
                      flush=True)
        load.wait(timeout=30)
    finally:
        done.set()
        watchdog.cancel()
        thread.join(timeout=30)
    return {"samples": samples, "marks": marks, "result": result, "load_cpu_percent": load_cpu,
            "server_cpu_percent": server_cpu}


# Figures ------------------------------------------------------------------------------------

def summarise(saved: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue asks for, from a run's raw results."""
    args = saved["args"]
    samples = saved["samples"]
    marks = saved["marks"]
    load = saved["load"]
    baseline, final = saved["baseline"], saved["final"]
    steady_t, waves_t, leaving_t = marks.get("steady", 0), marks.get("waves", 0), marks.get("leaving", 0)
    # "Minute 5" of the steady phase, or half of it in a shorter run.
    ref_minutes = min(float(args["rss_from"]), float(args["minutes"]) / 2)
    ref = next((s for s in samples if s["t"] >= steady_t + ref_minutes * 60), None)
    end = next((s for s in reversed(samples) if s["t"] <= leaving_t + 0.5), None)
    steady_end = next((s for s in reversed(samples) if s["t"] <= waves_t + 0.5), None)
    growth = (end["rss_mib"] - ref["rss_mib"]) / ref["rss_mib"] * 100 if ref and end else None
    steady_growth = (steady_end["rss_mib"] - ref["rss_mib"]) / ref["rss_mib"] * 100 if ref and steady_end else None
    # The slope of RSS over the steady phase, from the reference on (MiB per minute).
    points = [(s["t"] / 60, s["rss_mib"]) for s in samples if ref and ref["t"] <= s["t"] <= waves_t + 0.5]
    slope = None
    if len({x for x, _ in points}) >= 2:
        mx, my = sum(x for x, _ in points) / len(points), sum(y for _, y in points) / len(points)
        slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    # RSS over the second half of the waves: a leak keeps growing, a high-water mark has stopped.
    wave_samples = [s for s in samples if waves_t <= s["t"] <= leaving_t + 0.5]
    late = None
    if len(wave_samples) >= 4:
        middle, last = wave_samples[len(wave_samples) // 2], wave_samples[-1]
        late = {"from_s": round(middle["t"] - waves_t), "to_s": round(last["t"] - waves_t),
                "from_mib": middle["rss_mib"], "to_mib": last["rss_mib"],
                "percent": round((last["rss_mib"] - middle["rss_mib"]) / middle["rss_mib"] * 100, 2)}
    peak = {name: max((s.get(name) or 0 for s in samples), default=None)
            for name in ("fds", "udp", "tcp", "os_threads", "tasks")}
    waves = load["waves"]
    rated = [w for w in waves if w["delivery"]["ratio_mean"] is not None]
    wave_ratios = [w["delivery"]["ratio_min"] for w in rated]
    joins = sorted(j for w in waves for j in w["join_first_frame_s"])
    left = Counter()
    for w in waves:
        left.update(w["left"])
    base_state, final_state = baseline.get("state") or {}, final.get("state") or {}
    alive_base, alive_final = base_state.get("alive") or {}, final_state.get("alive") or {}
    above = {k: v - alive_base.get(k, 0) for k, v in alive_final.items() if v > alive_base.get(k, 0)}
    final_rooms = final_state.get("rooms") or [{}]
    settle = saved["settle"]
    settled_at = next((s["t"] for s in settle if s["udp"] <= baseline["udp"] and not s.get("media_endpoints")),
                      None)
    return {
        "steady": load["steady"]["whole_run"], "steady_phase": load["steady"]["steady_phase"],
        "steady_max_gap_s": load["steady"]["max_gap_s"],
        "wave_joins": sum(w["viewers"] for w in waves), "wave_websocket": sum(w["websocket"] for w in waves),
        "wave_pictured": sum(w["pictured"] for w in waves), "wave_errors": sum(len(w["errors"]) for w in waves),
        "wave_ratio_min": min(wave_ratios) if wave_ratios else None,
        "wave_ratio_mean": round(sum(w["delivery"]["ratio_mean"] * w["pictured"] for w in rated)
                                 / max(1, sum(w["pictured"] for w in rated)), 5) if rated else None,
        "wave_below_99": sum(w["delivery"]["below_99"] for w in waves),
        "wave_max_gap_s": max((w["max_gap_s"] for w in waves), default=None),
        "wave_join_p50_s": _percentile(joins, 0.5), "wave_join_p95_s": _percentile(joins, 0.95),
        "wave_left": dict(left), "delete_again": load["delete_again"],
        "rss_ref_minute": ref_minutes, "rss_ref_mib": ref and ref["rss_mib"], "rss_end_mib": end and end["rss_mib"],
        "rss_steady_end_mib": steady_end and steady_end["rss_mib"],
        "rss_growth_percent": None if growth is None else round(growth, 2),
        "rss_steady_growth_percent": None if steady_growth is None else round(steady_growth, 2),
        "rss_slope_mib_per_min": None if slope is None else round(slope, 3),
        "rss_baseline_mib": baseline["rss_mib"], "rss_after_mib": final["rss_mib"],
        "fds": [baseline["fds"], peak.get("fds"), final["fds"]],
        "udp": [baseline["udp"], peak.get("udp"), final["udp"]],
        "tcp": [baseline["tcp"], peak.get("tcp"), final["tcp"]],
        "os_threads": [baseline["os_threads"], peak.get("os_threads"), final["os_threads"]],
        "tasks": [baseline.get("tasks"), peak.get("tasks"), final.get("tasks")],
        "fd_kinds": [baseline["fd_kinds"], final["fd_kinds"]],
        # Descriptors of files held now and not at the baseline (a path opened twice counts twice).
        "files_opened": dict(Counter(_short(p) for p in final.get("files", []))
                             - Counter(_short(p) for p in baseline.get("files", []))),
        "thread_kinds_above_baseline": {k: v - (base_state.get("thread_kinds") or {}).get(k, 0)
                                        for k, v in (final_state.get("thread_kinds") or {}).items()
                                        if v > (base_state.get("thread_kinds") or {}).get(k, 0)},
        "final_room": final_rooms[0] if final_rooms else {},
        "final_websockets": final_state.get("websockets"),
        "final_quota": [final_state.get("quota_endpoints_held"), final_state.get("quota_sockets_held")],
        "alive_above_baseline": above, "gc_objects": [base_state.get("gc_objects"), final_state.get("gc_objects")],
        "task_kinds_above_baseline": {k: v - (base_state.get("task_kinds") or {}).get(k, 0)
                                      for k, v in (final_state.get("task_kinds") or {}).items()
                                      if v > (base_state.get("task_kinds") or {}).get(k, 0)},
        "objects_grown": dict(sorted(
            ((k, v - (base_state.get("object_kinds") or {}).get(k, 0))
             for k, v in (final_state.get("object_kinds") or {}).items()
             if v - (base_state.get("object_kinds") or {}).get(k, 0) >= 20),
            key=lambda item: -item[1])[:12]),
        "rss_late_waves": late,
        "settled_after_s": settled_at, "final_after_s": final.get("t"),
        "server_log_problems": saved["server_log"]["problems"],
    }


def _short(path: str) -> str:
    """A path inside the run's temporary folder, without the folder."""
    return re.sub(r"^/tmp/bc-soak-[^/]+/", "", path)


def _pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


def report(saved: dict[str, Any]) -> list[str]:
    f = saved["figures"]
    args = saved["args"]
    steady = f["steady"]
    lines = [
        f"frames per steady viewer ({args['viewers']}, {steady['seconds'] / 60:.1f} min incl. the waves): "
        f"min {_pct(steady['ratio_min'])} / mean {_pct(steady['ratio_mean'])} of {steady['sent']} sent "
        f"({steady['fps_sent']} fps), {steady['below_99']} under 99 %, longest gap {f['steady_max_gap_s']} s, "
        f"audio min {_pct(steady['audio_ratio_min'], 1)} of 50/s",
        f"waves: {f['wave_joins']} joins ({f['wave_websocket']} by websocket), {f['wave_pictured']} with a picture, "
        f"{f['wave_errors']} errors; frames min {_pct(f['wave_ratio_min'])} / mean {_pct(f['wave_ratio_mean'])} "
        f"of sent, {f['wave_below_99']} under 99 %; join → first frame p50 {f['wave_join_p50_s']} / "
        f"p95 {f['wave_join_p95_s']} s; left {f['wave_left']}; deleted again: {f['delete_again']}",
        f"server RSS: baseline {f['rss_baseline_mib']} MiB; minute {f['rss_ref_minute']:g} {f['rss_ref_mib']} → end "
        f"of steady {f['rss_steady_end_mib']} ({f['rss_steady_growth_percent']} %) → end of waves "
        f"{f['rss_end_mib']} MiB: {f['rss_growth_percent']} %; slope {f['rss_slope_mib_per_min']} MiB/min; "
        f"after everyone left {f['rss_after_mib']} MiB"
        + (f"; second half of the waves {f['rss_late_waves']['from_mib']} → {f['rss_late_waves']['to_mib']} MiB "
           f"({f['rss_late_waves']['percent']} %)" if f.get("rss_late_waves") else ""),
        f"fds baseline / peak / after: {f['fds']}; UDP {f['udp']}; TCP {f['tcp']}; OS threads {f['os_threads']}; "
        f"asyncio tasks {f['tasks']}",
        f"after everyone left (+{f['final_after_s']} s; media gone after {f['settled_after_s']} s): room "
        f"{f['final_room']}, websockets {f['final_websockets']}, quota held (endpoints, sockets) {f['final_quota']}",
        f"fds by kind: baseline {_fmt_kinds(f['fd_kinds'][0])}; after {_fmt_kinds(f['fd_kinds'][1])}"
        + (f"; files opened since: {f['files_opened']}" if f["files_opened"] else "")
        + f"; threads above baseline: {f['thread_kinds_above_baseline'] or 'none'}",
        f"objects alive above baseline after gc: {f['alive_above_baseline'] or 'none'} (gc objects "
        f"{f['gc_objects'][0]} → {f['gc_objects'][1]}); tasks above baseline: "
        f"{f['task_kinds_above_baseline'] or 'none'}; objects grown most: {f['objects_grown'] or 'none'}",
        f"server CPU {saved['server_cpu_percent']} %, load CPU {saved['load_cpu_percent']} % (steady + waves); "
        f"server log: {f['server_log_problems']} error/warning lines; load average {saved['loadavg_start']} → "
        f"{saved['loadavg_end']}",
    ]
    return lines


def write_doc(saved: dict[str, Any]) -> None:
    f, args = saved["figures"], saved["args"]
    steady = f["steady"]
    room = f["final_room"]
    late = f.get("rss_late_waves")
    endpoints = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in room.items() if k != "session")
    rows = [
        ("frames delivered per steady viewer, min / mean of sent",
         f"{_pct(steady['ratio_min'])} / {_pct(steady['ratio_mean'])} of {steady['sent']} "
         f"({steady['below_99']} viewers under 99 %; longest gap {f['steady_max_gap_s']} s)", "≥ 99 %"),
        (f"wave viewers: {f['wave_joins']} joins ({f['wave_websocket']} by websocket)",
         f"{f['wave_pictured']} with a picture, {f['wave_errors']} errors; frames min {_pct(f['wave_ratio_min'])} / "
         f"mean {_pct(f['wave_ratio_mean'])}; join → first frame p50 / p95 "
         f"{f['wave_join_p50_s'] and round(f['wave_join_p50_s'] * 1000)} / "
         f"{f['wave_join_p95_s'] and round(f['wave_join_p95_s'] * 1000)} ms", "≥ 99 %"),
        (f"server RSS, minute {f['rss_ref_minute']:g} of the steady phase → end of the waves",
         f"{f['rss_ref_mib']} → {f['rss_end_mib']} MiB: **{f['rss_growth_percent']} %** (steady phase alone "
         f"{f['rss_steady_growth_percent']} %, slope {f['rss_slope_mib_per_min']} MiB/min"
         + (f"; second half of the waves {late['from_mib']} → {late['to_mib']} MiB, {late['percent']} %"
            if late else "")
         + f"; baseline {f['rss_baseline_mib']}, after everyone left {f['rss_after_mib']} MiB)", "< 10 %"),
        ("open fds: baseline / peak / after everyone left", " / ".join(map(str, f["fds"]))
         + (f" (files held since the baseline: {', '.join(f'{k} × {v}' for k, v in f['files_opened'].items())})"
            if f["files_opened"] else ""), "baseline, + database pool and the recording"),
        ("UDP sockets: baseline / peak / after", " / ".join(map(str, f["udp"])), "baseline"),
        ("OS threads: baseline / peak / after", " / ".join(map(str, f["os_threads"]))
         + (f" (above the baseline: {', '.join(f'{k} × {v}' for k, v in f['thread_kinds_above_baseline'].items())})"
            if f.get("thread_kinds_above_baseline") else ""), "baseline, + database pool and the recorder"),
        ("asyncio tasks: baseline / peak / after", " / ".join(map(str, f["tasks"])), "baseline"),
        ("after everyone left: the room", f"{endpoints}; websockets {f['final_websockets']}; quota held "
         f"{f['final_quota'][0]} endpoints, {f['final_quota'][1]} sockets",
         "no endpoint, resource, member or quota (the recorder's subscription stays; the roster keeps who came)"),
        ("aiortc/aioice/server objects alive above baseline (after gc)",
         ", ".join(f"{k} +{v}" for k, v in f["alive_above_baseline"].items()) or "none", "none"),
        ("objects tracked by gc: baseline → after, grown most", f"{f['gc_objects'][0]} → {f['gc_objects'][1]}"
         + (f": {', '.join(f'{k} +{v}' for k, v in list((f.get('objects_grown') or {}).items())[:4])}"
            if f.get("objects_grown") else ""), "—"),
        ("resources deleted a second time", ", ".join(f"{v} × {k}" for k, v in f["delete_again"].items()), "404"),
    ]
    table = "\n".join(["| measured | figure | expected |", "|---|---|---|",
                       *(f"| {a} | {b} | {c} |" for a, b, c in rows)])
    busy = max(saved["loadavg_start"][0], saved["loadavg_end"][0])
    caveat = (f"\n\nCaveat: the machine was shared (load average {saved['loadavg_start'][0]} at the start, "
              f"{saved['loadavg_end'][0]} at the end); re-run on a quiet machine." if busy > 1.5 else "")
    write_section("soak", "Soak: a long session, joins and leaves", (
        f"Measured {saved['date']} on {saved['machine']}: `python -m bench.soak --minutes {args['minutes']:g} "
        f"--viewers {args['viewers']} --waves {args['waves']}`. Server on core 0 (demo data, SQLite, the session "
        f"recorded); on core 1 one WHIP publisher ({args['size']}@30 VP8 "
        f"{'looped clip' if args['source'] == 'clip' else 'live encode'} + Opus) and {args['viewers']} WHEP viewers "
        f"that count frames without decoding, for {args['minutes']:g} min; then {args['waves']} joins and leaves "
        f"in waves of {args['wave_size']} ({_pct(args['ws_share'], 0)} by websocket, the rest WHEP with DELETE), "
        f"each receiving {args['wave_seconds']:g} s; then everyone leaves. RSS every {args['sample_seconds']:g} s "
        "from /proc; fds and sockets from /proc/<pid>/fd and net/udp, tcp; tasks, endpoints and live objects "
        "from a state dump the bench adds to `bridgecast serve` (SIGUSR1/SIGUSR2: the server has no metrics "
        f"endpoint). \"After\" is {f['final_after_s']} s after the last leave. Server CPU "
        f"{saved['server_cpu_percent']} %, load CPU {saved['load_cpu_percent']} % of a core over the run."
        f"\n\n{table}{caveat}"))


def main() -> None:
    if sys.argv[1:2] == ["_server"]:
        raise SystemExit(serve_instrumented())
    if sys.argv[1:2] == ["_load"]:
        run_load(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30, help="steady phase: the publisher and --viewers")
    parser.add_argument("--viewers", type=int, default=50, help="steady WHEP viewers")
    parser.add_argument("--waves", type=int, default=100, help="joins (and leaves) after the steady phase, in total")
    parser.add_argument("--wave-size", type=int, default=10, help="viewers joining at once in each wave")
    parser.add_argument("--wave-seconds", type=float, default=5, help="what each wave receives before leaving")
    parser.add_argument("--wave-pause", type=float, default=2, help="seconds between waves")
    parser.add_argument("--ws-share", type=float, default=0.2, help="share of wave viewers joining by websocket")
    parser.add_argument("--first-frame-timeout", type=float, default=15)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--source", choices=["clip", "live"], default="clip",
                        help="clip: a pre-encoded VP8 clip looped (cheap, steady); live: aiortc encodes a pattern")
    parser.add_argument("--sample-seconds", type=float, default=10, help="server RSS and fds sampled this often")
    parser.add_argument("--rss-from", type=float, default=5,
                        help="RSS growth from this minute of the steady phase (half of it in shorter runs)")
    parser.add_argument("--settle", type=float, default=90, help="at most this long for the server to let go")
    parser.add_argument("--linger", type=float, default=40,
                        help="the final state is taken at least this long after the last leave")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--from-json", help="only rewrite the doc from a saved run (bench/results/soak-*.json)")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        write_doc(saved)
        return
    if args.wave_size < 1 or args.viewers < 0 or args.minutes < 0:
        parser.error("--wave-size must be at least 1, --viewers and --minutes not negative")
    raw = run(args)
    saved = {"machine": machine(), "date": datetime.date.today().isoformat(), "args": vars(args), **raw}
    saved["figures"] = summarise(saved)
    for line in report(saved):
        print(line, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"soak-{stamp}.json"
    path.write_text(json.dumps(saved, indent=2))
    print(f"results: {path.relative_to(ROOT)}", flush=True)
    if not args.no_doc:
        write_doc(saved)


if __name__ == "__main__":
    main()
