"""The hub's side of the cascade (issue 14): which relay serves a viewer, and what a relay's death costs.

Relays beat into the node registry (a key with a TTL: in this process, or in
Redis). A viewer is sent to the relay of its unit (the nearest one up the
unit's chain: a commune's relay before its province's) while that relay is
alive and carries the session: a WHEP player by a 307, a hall's or member's
page by a ``redirect`` answering its ``view`` offer (it keeps its websocket
here). A relay whose heartbeat expired is dead: the viewers it served are
dropped here, so attendance shows a gap rather than an absence, its uplink is
closed without waiting for ICE to notice, and the pages it served are told to
offer their view again (``renegotiate``): here, or at a sibling relay.

The floor holder hears the program without its own voice: the hub mixes
that for each publisher, a relay forwards the hub's full mix. So a hall
given the floor watches at the hub: its views through a relay are ended
when the floor is granted (its player asks the hub again, and is not
redirected while it holds the floor).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import quote

from server.auth.principal import Principal
from server.live import events as ev
from server.live.bus import EventBus, Subscription, dispatcher
from server.live.events import LiveRole
from server.live.nodes import NodeInfo, NodeRegistry
from server.live.roles import live_role
from server.signaling.directions import Direction
from server.signaling.registry import LiveRegistry
from server.signaling.room import LiveRoom

log = logging.getLogger(__name__)

# A unit's chain up to the country changes when an admin moves a unit: read again after this long.
UNITS_FOR_SECONDS = 30.0


class RelayWatch:
    """The registry's live relays, as the hub acts on them; the cascade's :class:`ViewDirections`.

    ``units_above(unit_id)``: the unit and the units above it, nearest first.
    ``ticket(principal, session_id)``: a token for that session only, taken
    within a minute, that stands for the viewer's own (a client drops its
    Authorization header on a redirect to another origin).
    """

    def __init__(self, registry: NodeRegistry, live: LiveRegistry, *, interval: float = 1.0,
                 units_above: Callable[[int], Awaitable[Sequence[int]]] | None = None,
                 ticket: Callable[[Principal, int], str] | None = None) -> None:
        self.registry = registry
        self._live = live
        self._interval = interval
        self._units_above = units_above
        self._ticket = ticket
        self._units: dict[int, tuple[float, tuple[int, ...]]] = {}
        # unit id -> (until, the live sessions its relays carry): what every heartbeat answers.
        self._carried: dict[int, tuple[float, list[dict[str, object]]]] = {}
        self._carried_generation = 0  # moves on at each change: a read begun before one is not kept
        self._task: asyncio.Task[None] | None = None
        self._alive: dict[str, NodeInfo] = {}
        self._alive_at = -1e9
        self.dropped = 0  # viewers dropped because their relay died (/metrics, tests)
        self._work: set[asyncio.Task[None]] = set()

    def subscribe(self, bus: EventBus) -> Subscription:
        forget = self._forget_carried
        return bus.subscribe(dispatcher({ev.FloorGranted: self._floor_granted, ev.SessionStarted: forget,
                                         ev.SessionResumed: forget, ev.SessionEnded: forget,
                                         ev.SessionChanged: forget}), name="relay-watch")

    async def _forget_carried(self, event: ev.Event) -> None:
        # A session went live, ended or changed: every relay's answer is read again.
        self._carried_generation += 1
        self._carried.clear()

    async def carried(self, unit_id: int,
                      load: Callable[[int], Awaitable[list[dict[str, object]]]]) -> list[dict[str, object]]:
        """The live sessions a relay of ``unit_id`` carries, from ``load`` once until a session changes.

        Every relay asks at every heartbeat (68 relays every 2 s in the plan
        for 7,439 points): the sessions change only when one goes live, ends
        or is edited (events this watch hears); the units below a relay's only
        when an admin moves one, read again after UNITS_FOR_SECONDS.
        """
        now = time.monotonic()
        cached = self._carried.get(unit_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        generation = self._carried_generation
        sessions = await load(unit_id)
        if generation == self._carried_generation:  # else a session changed while it was read
            if len(self._carried) > 10_000:
                self._carried.clear()
            self._carried[unit_id] = (now + UNITS_FOR_SECONDS, sessions)
        return sessions

    async def _floor_granted(self, event: ev.FloorGranted) -> None:
        # Published under the room's lock: the views are ended by a task of its own, after it.
        if event.session_id is None:
            return
        task = asyncio.create_task(self._to_the_hub(event.session_id, ev.hall_key(event.point_id)),
                                   name="floor-to-the-hub")
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _to_the_hub(self, session_id: int, key: str) -> None:
        room = self._live.existing(session_id)
        if room is None:
            return
        for resource in room.resources.all():
            if resource.key == key and resource.node is not None:
                log.info("the floor holder %s watched through relay %s: its view there is ended", key, resource.node)
                await room.close_resource(resource.endpoint_id)
        await room.move_views(lambda member, node: member.key == key, "floor")

    async def direct(self, room: LiveRoom, principal: Principal) -> Direction | None:
        """The relay that serves this hall or member now (its unit's, nearest first), or None: the hub does.

        The speaker is never sent away (it publishes here), nor the hall
        holding the floor: it hears the program without its own voice only here.
        """
        seat = live_role(principal, room.info)
        if principal.unit_id is None or seat.role is LiveRole.HOST or self._units_above is None:
            return None
        if seat.role is LiveRole.HALL and seat.point_id is not None and seat.point_id == room.session.floor.holder:
            return None
        try:
            chain = await self._chain(principal.unit_id)
        except Exception:  # noqa: BLE001 - the database away: the hub serves the viewer itself
            log.warning("the unit chain of unit %s could not be read: the hub serves its viewer", principal.unit_id,
                        exc_info=True)
            return None
        relay = await self.serving(chain, room.info.id)
        if relay is None:
            return None
        url = f"{relay.url}/whep/sessions/{room.info.id}"
        if self._ticket is not None:
            url += f"?ticket={quote(self._ticket(principal, room.info.id), safe='')}"
        return Direction(relay.name, url)

    async def _chain(self, unit_id: int) -> Sequence[int]:
        assert self._units_above is not None
        now = time.monotonic()
        cached = self._units.get(unit_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        chain = tuple(await self._units_above(unit_id))
        if len(self._units) > 10_000:
            self._units.clear()
        self._units[unit_id] = (now + UNITS_FOR_SECONDS, chain)
        return chain

    async def alive(self, max_age: float = 0.5) -> dict[str, NodeInfo]:
        """The live relays (read at most every ``max_age`` s: a storm of joins asks once)."""
        now = time.monotonic()
        if now - self._alive_at > max_age:
            nodes = await self.registry.alive()
            self._alive = {name: info for name, info in nodes.items() if info.kind == "relay"}
            self._alive_at = now
        return self._alive

    async def serving(self, units: Sequence[int], session_id: int) -> NodeInfo | None:
        """The relay that serves a viewer of ``units`` (its unit, nearest first) in this session, or None."""
        try:
            alive = await self.alive()
        except Exception:  # noqa: BLE001 - a registry that is away: the hub serves everyone itself
            log.warning("the node registry did not answer: viewers are served by the hub", exc_info=True)
            return None
        for unit in units:
            for info in sorted(alive.values(), key=lambda n: n.name):
                if info.unit_id == unit and session_id in info.sessions:
                    return info
        return None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relay-watch")

    async def stop(self) -> None:
        for task in list(self._work):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the next round tries again; nobody is dropped on a doubt
                log.warning("relay watch: the node registry did not answer", exc_info=True)

    async def check(self) -> int:
        """Drop what relays that are no longer alive served; the number of viewers dropped."""
        alive = await self.alive(max_age=0)
        dropped = 0
        for room in list(self._live.rooms.values()):
            nodes = room.nodes_in_use()
            for node in sorted(nodes - alive.keys()):
                count = await room.drop_node(node)
                dropped += count
                log.warning("relay %s is silent: %d of its viewers dropped in session %s", node, count, room.info.id)
        self.dropped += dropped
        return dropped
