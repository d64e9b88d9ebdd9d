"""A relay node (issue 14): its parent's program, once per session, fanned out to the viewers of its unit.

``bridgecast relay serve --hub URL --token TOKEN`` runs one. The hub keeps
every record (the roster, attendance, the floor); a relay only moves media:

- **heartbeat.** Every ``cascade.heartbeat_seconds`` it tells the hub it is
  alive, which sessions' uplinks are up and how many viewers it serves. The
  answer lists the live sessions that invite points of its unit, its parent
  (the hub, or a relay above it) and, per session, the viewers the hub still
  holds for it: one the hub ended (removed, signed out, token expired) is
  closed here at the next beat. A hub that does not answer is asked again
  with backoff; nothing here stops meanwhile.
- **uplink.** Per carried session, one :class:`~server.media.uplink.Uplink`
  to the parent's program: received without decoding, the only input of this
  node's :class:`~server.media.room.MediaRoom`. Lost, it is made again with
  backoff (0.5 s doubling to 5 s); the viewers here keep their connections
  and get the picture back at the next keyframe.
- **viewers.** ``POST /whep/sessions/{id}`` takes a viewer's offer with its
  own bearer token or the ticket of the hub's 307. The hub admits the viewer
  first (its checks, the quota, the roster, attendance: the same as when it
  watches at the hub), under an endpoint id chosen here; then this node
  answers the offer. When the program first reaches the viewer, and when it
  leaves or is lost, the hub is told, so the roll call and the attendance
  record are the hub's as for any viewer.

- **relays below.** A relay whose parent is this one takes its uplink here
  (``POST /api/v1/relay/sessions/{id}/feed`` with its own token, which the
  hub vouches for): one more subscriber of this node's program.

Its HTTP side (the routes, the error shape) is ``server/cascade/relay_app.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from server.errors import NotFound, ServiceUnavailable, Unauthorized
from server.live.events import relay_key
from server.media.peer import IceConfig
from server.media.room import EndpointState, MediaRoom
from server.media.stats import MediaStats
from server.media.uplink import Uplink

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 5.0
HUB_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=3)
CHILDREN_FOR_SECONDS = 5.0
# The parent's mix comes every 20 ms while the session is live: this long without it, the uplink is dead.
UPLINK_SILENT_SECONDS = 4.0


class HubRefused(Exception):
    """The hub (or the parent) answered with an error: its status, its error body and its headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        super().__init__(f"{status} {error.get('code', '')}: {error.get('message', '')}")
        self.status = status
        self.body = body
        self.headers = headers


class HubClient:
    """The hub's relay API (server/views/relays.py), with this relay's token."""

    def __init__(self, hub_url: str, token: str, http: aiohttp.ClientSession) -> None:
        self.hub_url = hub_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"}
        self._http = http

    async def _call(self, method: str, url: str, *, json: object = None, sdp: str | None = None,
                    ) -> tuple[int, dict[str, Any] | str, dict[str, str]]:
        headers = dict(self._auth)
        data = None
        if sdp is not None:
            headers["Content-Type"] = "application/sdp"
            data = sdp.encode()
        async with self._http.request(method, url, json=json, data=data, headers=headers, timeout=HUB_TIMEOUT,
                                      allow_redirects=False) as response:
            kept = {name: response.headers[name] for name in ("Location", "Retry-After") if name in response.headers}
            if response.content_type == "application/json":
                body: dict[str, Any] | str = await response.json()
            else:
                body = await response.text()
            if response.status >= 400:
                raise HubRefused(response.status, body if isinstance(body, dict) else {}, kept)
            return response.status, body, kept

    async def heartbeat(self, sessions: list[int], viewers: int, cpu_percent: int, rss_mib: int) -> dict[str, Any]:
        _, body, _ = await self._call("POST", f"{self.hub_url}/api/v1/relay/heartbeat", json={
            "sessions": sessions, "viewers": viewers, "cpu_percent": cpu_percent, "rss_mib": rss_mib})
        assert isinstance(body, dict)
        return body

    async def forget(self) -> None:
        await self._call("DELETE", f"{self.hub_url}/api/v1/relay/heartbeat")

    async def feed(self, parent_url: str, session_id: int, sdp: str) -> tuple[str, str]:
        """The uplink's offer to the parent: its answer and the resource URL."""
        base = parent_url.rstrip("/")
        _, body, headers = await self._call("POST", f"{base}/api/v1/relay/sessions/{session_id}/feed", sdp=sdp)
        location = headers.get("Location", "")
        return str(body), (base + location if location.startswith("/") else location)

    async def close_feed(self, location: str) -> None:
        await self._call("DELETE", location)

    async def child(self, token: str) -> dict[str, Any]:
        """Whose token a relay below this one showed (404 from the hub: none of ours)."""
        _, body, _ = await self._call("POST", f"{self.hub_url}/api/v1/relay/children", json={"token": token})
        assert isinstance(body, dict)
        return body

    async def admit(self, session_id: int, token: str, endpoint: str) -> dict[str, Any]:
        _, body, _ = await self._call("POST", f"{self.hub_url}/api/v1/relay/sessions/{session_id}/viewers",
                                      json={"endpoint": endpoint, "token": token})
        assert isinstance(body, dict)
        return body

    async def receiving(self, session_id: int, endpoint: str) -> None:
        await self._call("PATCH", f"{self.hub_url}/api/v1/relay/sessions/{session_id}/viewers/{endpoint}",
                         json={"receiving": True})

    async def left(self, session_id: int, endpoint: str, *, dropped: bool) -> None:
        query = "?dropped=1" if dropped else ""
        await self._call("DELETE", f"{self.hub_url}/api/v1/relay/sessions/{session_id}/viewers/{endpoint}{query}")


@dataclass(eq=False)
class _Viewer:
    endpoint: str
    key: str
    admitted_at: float  # monotonic: a beat sent before it cannot know it
    leaving: bool = False  # closed on purpose (its DELETE, the hub ended it): not "lost"
    told_gone: bool = False  # the hub knows already


@dataclass(eq=False)
class Carried:
    """One live session on this node: its uplink and its viewers."""

    session_id: int
    media: MediaRoom
    viewers: dict[str, _Viewer] = field(default_factory=dict)
    uplink: Uplink | None = None
    uplinks_made: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def carrying(self) -> bool:
        return self.uplink is not None and self.uplink.connected


class RelayNode:
    """The relay's state: the sessions it carries, its heartbeat, its hub."""

    def __init__(self, hub: HubClient, ice: IceConfig, *, heartbeat_seconds: float = 2.0) -> None:
        self.hub = hub
        self.ice = ice
        self.heartbeat_seconds = heartbeat_seconds
        self.stats = MediaStats()
        self.carried: dict[int, Carried] = {}
        self.name: str | None = None
        self.parent_url: str | None = None  # None: the hub
        self.beats = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._beat_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._cpu_at = (time.monotonic(), time.process_time())
        # Relays below this one, by their token's digest: (name, known until) (asked of the hub every 5 s).
        self._children: dict[str, tuple[str, float]] = {}

    # the heartbeat -------------------------------------------------------------------

    def start(self) -> None:
        self._beat_task = asyncio.create_task(self._beat_loop(), name="relay-heartbeat")

    async def _beat_loop(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the hub away: try again, with backoff; media goes on
                log.warning("relay: the hub did not take the heartbeat (%s); again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF_FIRST
            await asyncio.sleep(self.heartbeat_seconds)

    def _health(self) -> tuple[int, int]:
        now, cpu = time.monotonic(), time.process_time()
        (then, cpu_then), self._cpu_at = self._cpu_at, (now, cpu)
        percent = round(100 * (cpu - cpu_then) / (now - then)) if now > then else 0
        try:
            with open("/proc/self/statm", encoding="ascii") as statm:
                rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
        except (OSError, ValueError, IndexError):
            rss = 0
        return max(percent, 0), rss

    async def beat(self) -> None:
        """One heartbeat, and what its answer asks: sessions to carry or to stop, viewers the hub ended."""
        sent_at = time.monotonic()
        carrying = sorted(sid for sid, carried in self.carried.items() if carried.carrying)
        cpu, rss = self._health()
        answer = await self.hub.heartbeat(carrying, sum(len(c.viewers) for c in self.carried.values()), cpu, rss)
        self.beats += 1
        self.name = str(answer.get("relay"))
        self.parent_url = answer.get("parent_url") or None
        # The hub's pace: one setting for every node (its TTL is counted in these beats).
        with contextlib.suppress(TypeError, ValueError):
            self.heartbeat_seconds = min(max(float(answer.get("heartbeat_seconds", self.heartbeat_seconds)), 0.1), 60)
        wanted = {int(s["id"]) for s in answer.get("sessions", [])}
        for session_id in sorted(wanted - self.carried.keys()):
            self._carry(session_id)
        for session_id in sorted(self.carried.keys() - wanted):
            await self._drop(session_id)
        held = answer.get("viewers", {})
        for session_id, carried in list(self.carried.items()):
            kept = set(held.get(str(session_id), []))
            for viewer in list(carried.viewers.values()):
                if viewer.endpoint not in kept and viewer.admitted_at < sent_at:
                    log.info("relay: the hub ended viewer %s of session %s", viewer.endpoint, session_id)
                    viewer.leaving = viewer.told_gone = True
                    await carried.media.close_endpoint(viewer.endpoint)

    # sessions --------------------------------------------------------------------------

    def _carry(self, session_id: int) -> Carried:
        media = MediaRoom(self.ice, stats=self.stats,
                          on_endpoint=lambda state, sid=session_id: self._endpoint_changed(sid, state))
        media.set_live(True)
        carried = Carried(session_id, media)
        carried.task = asyncio.create_task(self._keep_uplink(carried), name=f"uplink-{session_id}")
        self.carried[session_id] = carried
        log.info("relay: carrying session %s", session_id)
        return carried

    async def _keep_uplink(self, carried: Carried) -> None:
        """The session's one uplink, made again with backoff whenever it is lost."""
        delay = BACKOFF_FIRST
        while True:
            lost = asyncio.Event()
            uplink = Uplink(carried.media.feed, self.ice, on_lost=lost.set)
            location = ""

            async def exchange(sdp: str) -> str:
                nonlocal location
                answer, location = await self.hub.feed(self.parent_url or self.hub.hub_url, carried.session_id, sdp)
                return answer

            try:
                await uplink.connect(exchange)
            except asyncio.CancelledError:
                await uplink.close()
                raise
            except Exception as exc:  # noqa: BLE001 - the parent refused or is away: again, later
                log.warning("relay: no uplink for session %s (%s); again in %.1f s", carried.session_id, exc, delay)
                await uplink.close()
                await self._forget_feed(location)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            carried.uplink = uplink
            carried.uplinks_made += 1
            delay = BACKOFF_FIRST
            try:
                await self._until_lost(uplink, lost)
                log.warning("relay: the uplink of session %s was lost; making it again", carried.session_id)
            finally:
                carried.uplink = None
                await uplink.close()
                await self._forget_feed(location)

    @staticmethod
    async def _until_lost(uplink: Uplink, lost: asyncio.Event) -> None:
        """Until the connection fails, or the parent's sound stops (it mixes every 20 ms while live).

        A parent that died says nothing: its connection would fail only when
        ICE consent expires, about 30 s later. The sound's silence says it in
        UPLINK_SILENT_SECONDS.
        """
        heard, heard_at = uplink.audio_packets, time.monotonic()
        while not lost.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(lost.wait(), 1.0)
            if uplink.audio_packets != heard:
                heard, heard_at = uplink.audio_packets, time.monotonic()
            elif time.monotonic() - heard_at > UPLINK_SILENT_SECONDS:
                log.warning("relay: no sound from the parent for %.0f s", UPLINK_SILENT_SECONDS)
                return

    async def _forget_feed(self, location: str) -> None:
        if location:
            with contextlib.suppress(Exception):
                await self.hub.close_feed(location)

    async def _drop(self, session_id: int) -> None:
        """The session is no longer live here (it ended, or the unit is no longer invited)."""
        carried = self.carried.pop(session_id)
        for viewer in carried.viewers.values():
            viewer.leaving = viewer.told_gone = True  # the hub ended them with the session
        if carried.task is not None:
            carried.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await carried.task
        await carried.media.close()
        log.info("relay: session %s is no longer carried", session_id)

    # viewers ---------------------------------------------------------------------------

    async def open_viewer(self, session_id: int, token: str, sdp: str) -> tuple[str, str]:
        """Admit at the hub, then answer here: (endpoint id, answer SDP)."""
        carried = self.carried.get(session_id)
        if carried is None or not carried.carrying:
            raise ServiceUnavailable("this relay does not carry the session now: ask the hub again",
                                     retry_after=2, code="not_carried")
        endpoint = uuid.uuid4().hex
        try:
            admitted = await self.hub.admit(session_id, token, endpoint)
        except HubRefused:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise ServiceUnavailable(f"the hub did not answer ({type(exc).__name__})", code="hub_unavailable"
                                     ) from None
        viewer = _Viewer(endpoint, str(admitted["key"]), time.monotonic())
        carried.viewers[endpoint] = viewer
        try:
            answer = await carried.media.view(viewer.key, sdp, endpoint_id=endpoint)
        except BaseException:
            carried.viewers.pop(endpoint, None)
            self._tell(lambda: self.hub.left(session_id, endpoint, dropped=False))
            raise
        return answer.endpoint_id, answer.sdp

    async def close_viewer(self, session_id: int, endpoint: str) -> bool:
        carried = self.carried.get(session_id)
        viewer = carried.viewers.get(endpoint) if carried is not None else None
        if carried is None or viewer is None:
            return False
        viewer.leaving = True
        await carried.media.close_endpoint(endpoint)
        return True

    def _endpoint_changed(self, session_id: int, state: EndpointState) -> None:
        carried = self.carried.get(session_id)
        viewer = carried.viewers.get(state.id) if carried is not None else None
        if carried is None or viewer is None:
            return
        if state.closed:
            del carried.viewers[state.id]
            if not viewer.told_gone:
                self._tell(lambda: self.hub.left(session_id, state.id, dropped=not viewer.leaving))
        elif state.receiving:
            self._tell(lambda: self.hub.receiving(session_id, state.id))

    def _tell(self, call: Callable[[], Awaitable[None]]) -> None:
        """Tell the hub of a viewer's change, in the background; tried a few times (a 4xx: it knows already)."""

        async def tell() -> None:
            delay = BACKOFF_FIRST
            for _ in range(4):
                try:
                    await call()
                    return
                except HubRefused as exc:
                    if exc.status < 500:
                        return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
            log.warning("relay: the hub was not told of a viewer's change")

        task = asyncio.create_task(tell())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # relays below this one ------------------------------------------------------------

    async def child_of(self, token: str) -> str:
        """The name of the relay below this one that holds ``token`` (the hub says), or Unauthorized."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        known = self._children.get(digest)
        if known is not None and known[1] > now:
            return known[0]
        try:
            child = await self.hub.child(token)
        except HubRefused as exc:
            if exc.status in (401, 404, 422):
                raise Unauthorized("this token is no relay's below this one", code="invalid_token") from None
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise ServiceUnavailable(f"the hub did not answer ({type(exc).__name__})", code="hub_unavailable"
                                     ) from None
        if len(self._children) > 1000:
            self._children.clear()
        self._children[digest] = (str(child["name"]), now + CHILDREN_FOR_SECONDS)
        return str(child["name"])

    async def open_feed(self, session_id: int, child: str, sdp: str) -> tuple[str, str]:
        """A relay below takes its uplink here: one subscription of this node's program (one per child)."""
        carried = self.carried.get(session_id)
        if carried is None or not carried.carrying:
            raise NotFound("this relay does not carry the session now", code="not_carried")
        key = relay_key(child)
        await carried.media.close_key(key, "view")
        # The full picture always: the child forwards it to every viewer behind it.
        answer = await carried.media.view(key, sdp, adaptive=False)
        return answer.endpoint_id, answer.sdp

    async def close_feed(self, session_id: int, child: str, endpoint: str) -> bool:
        carried = self.carried.get(session_id)
        if carried is None or not any(e.id == endpoint for e in carried.media.endpoints(relay_key(child))):
            return False
        await carried.media.close_endpoint(endpoint)
        return True

    # stopping --------------------------------------------------------------------------

    async def stop(self) -> None:
        """SIGTERM: every viewer is closed cleanly (it left, it was not lost), then the hub forgets this node."""
        self._stopping = True
        if self._beat_task is not None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
        for carried in list(self.carried.values()):
            for viewer in list(carried.viewers.values()):
                viewer.leaving = True
                await carried.media.close_endpoint(viewer.endpoint)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        for session_id in list(self.carried):
            await self._drop(session_id)
        with contextlib.suppress(Exception):
            await self.hub.forget()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.beats else "starting",
            "relay": self.name,
            "parent": self.parent_url or self.hub.hub_url,
            "sessions": {
                str(sid): {"carrying": c.carrying, "uplinks_made": c.uplinks_made, "viewers": len(c.viewers),
                           "uplink_video_frames": c.uplink.video_frames if c.uplink else 0,
                           "uplink_audio_packets": c.uplink.audio_packets if c.uplink else 0,
                           "children": sorted(e.key.split(":", 1)[1] for e in c.media.endpoints()
                                              if e.key.startswith("relay:") and not e.closed)}
                for sid, c in sorted(self.carried.items())
            },
        }
