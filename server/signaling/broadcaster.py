"""The socket broadcaster: a subscriber of one session's events that tells its websockets.

Some events are told to the participant concerned (``floor_granted`` to the
hall), some to the hosts' board (questions, the end of a grant); after every
event everyone gets the ``floor`` message if anything in it changed, and the
hosts' roll call and roster are refreshed at most every ``HOST_REFRESH``
seconds, so a storm of joins costs the hosts a few messages, not one per join.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from server.live import events as ev
from server.live.bus import dispatcher
from server.live.events import hall_key
from server.live.permissions import Action, allowed
from server.live.session import LiveSession, Question
from server.signaling import outgoing
from server.signaling.connections import CLOSE_REMOVED, Member, Members, safe_send

HOST_REFRESH = 0.25


class Broadcaster:
    def __init__(self, session: LiveSession, members: Members,
                 spawn: Callable[[Awaitable[Any]], None]) -> None:
        self.session = session
        self.members = members
        self._spawn = spawn
        self._last_floor: str | None = None
        self._floor_due = False
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self.handle = dispatcher({
            ev.FloorGranted: self._floor_granted,
            ev.FloorEnded: self._floor_ended,
            ev.ParticipantMuted: self._muted,
            ev.ParticipantRemoved: self._removed,
            ev.QuestionAsked: self._question,
            ev.SessionStarted: self._session,
            ev.SessionEnded: self._session,
        }, fallback=self._changed)

    # one participant, or the hosts ---------------------------------------------------------

    async def _floor_granted(self, event: ev.FloorGranted) -> None:
        await self.send_to(hall_key(event.point_id), outgoing.floor_granted(event.limit_seconds))

    async def _floor_ended(self, event: ev.FloorEnded) -> None:
        await self.send_to(hall_key(event.point_id), outgoing.floor_revoked(event.reason))
        name = self.session.info.invited.get(event.point_id, "")
        await self.send_to_hosts(outgoing.floor_ended(event.point_id, name, event.reason))

    async def _muted(self, event: ev.ParticipantMuted) -> None:
        await self.send_to(hall_key(event.point_id), outgoing.MUTED if event.muted else outgoing.UNMUTED)

    async def _removed(self, event: ev.ParticipantRemoved) -> None:
        for member in self.members.of(event.participant.key):
            self.members.pop(member.connection.id)
            await safe_send(member, outgoing.REMOVED)
            # Not awaited: a client that stopped reading must not freeze the room.
            self._spawn(member.connection.close(CLOSE_REMOVED, "removed by the host"))

    async def _question(self, event: ev.QuestionAsked) -> None:
        question = Question(event.question_id, event.participant, event.sender_name, event.text, event.at)
        await self.send_to_hosts(outgoing.question_message(question))

    async def _session(self, event: ev.Event) -> None:
        await self.broadcast(outgoing.session_message(self.session))

    # everyone ---------------------------------------------------------------------------------

    async def _changed(self, event: ev.Event) -> None:
        """Something changed: the floor is checked once the whole change is delivered (see batch_done)."""
        self._floor_due = True
        self.refresh_hosts_soon()

    async def batch_done(self) -> None:
        """Tell everyone the floor if it changed: one message per change, however many events it took
        (a grant that ends another is FloorEnded and FloorGranted)."""
        if not self._floor_due or self._stopped:
            return
        self._floor_due = False
        floor = outgoing.floor_message(self.session)
        holder = floor["holder"]
        key = json.dumps([{k: v for k, v in floor.items() if k != "holder"},
                          holder and {k: v for k, v in holder.items() if k != "remaining"}])
        if key != self._last_floor:
            self._last_floor = key
            await self.broadcast(floor)

    def refresh_hosts_soon(self) -> None:
        if self._timer is None and not self._stopped:
            self._timer = asyncio.get_running_loop().call_later(HOST_REFRESH, self._refresh_hosts)

    def _refresh_hosts(self) -> None:
        self._timer = None
        hosts = self.hosts()
        if hosts:
            roll_call = json.dumps(outgoing.roll_call_message(self.session))
            roster = json.dumps(outgoing.roster_message(self.session))
            for member in hosts:
                self._spawn(safe_send(member, roll_call))
                self._spawn(safe_send(member, roster))

    def hosts(self) -> list[Member]:
        # Who sees the board is the permission table's call, not a role test here.
        return [m for m in self.members if allowed(m.role, Action.VIEW_ROLL_CALL)]

    async def broadcast(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)  # serialized once for everyone
        for member in self.members:
            await safe_send(member, text)

    async def send_to(self, key: str, message: dict[str, Any]) -> None:
        for member in self.members.of(key):
            await safe_send(member, message)

    async def send_to_hosts(self, message: dict[str, Any]) -> None:
        for member in self.hosts():
            await safe_send(member, message)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
