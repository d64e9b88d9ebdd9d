"""The websockets of one live room: who is behind each, and where to send a message."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from server.auth.principal import Principal
from server.live.events import LiveRole, ParticipantRef

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
# The server cannot take the connection now (RFC 6455 1013): the client retries.
CLOSE_TRY_AGAIN = 1013
CLOSE_SIGNED_OUT = 4001
# The token the socket opened with expired: the page signs in again.
CLOSE_TOKEN_EXPIRED = 4002
CLOSE_REMOVED = 4003
# The caller's seat changed (a replaced speaker, an operator moved to another hall): the page reloads.
CLOSE_ROLE_CHANGED = 4004

# Per connection: a burst of this many messages, refilled at RATE per second.
BURST = 40
RATE = 20.0


class Connection(Protocol):
    """A client's websocket as the room sees it (the view layer adapts aiohttp's).

    ``send`` must not wait on the client: a slow client's messages queue up
    (boundedly) behind it, never in front of everyone else's.
    """

    id: str

    async def send(self, message: dict[str, Any] | str) -> None:
        """Send a message (a dict, or one already serialized to JSON text)."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


class TokenBucket:
    """Messages a connection may send: ``burst`` at once, ``rate`` per second sustained."""

    def __init__(self, burst: float = BURST, rate: float = RATE, clock: Any = time.monotonic) -> None:
        self.burst = burst
        self.rate = rate
        self._clock = clock
        self._tokens = burst
        self._refilled = clock()

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class HeldConnection:
    """A connection whose messages wait, in order, until :meth:`release` (a join not yet on record).

    The room queues a joining socket's welcome first, then whatever is
    broadcast meanwhile; once the join is durable, all of it goes out in that
    order and later messages pass straight through.
    """

    def __init__(self, connection: Connection) -> None:
        self.inner = connection
        self.id = connection.id
        self._held: list[dict[str, Any] | str] | None = []

    @property
    def queued(self) -> int:
        """Messages waiting behind this socket: held here, then in its outbox (/metrics)."""
        return len(self._held or ()) + getattr(self.inner, "queued", 0)

    async def send(self, message: dict[str, Any] | str) -> None:
        if self._held is not None:
            self._held.append(message)
        else:
            await self.inner.send(message)

    async def release(self) -> None:
        # Drained in place: what is broadcast while this sends still queues behind it.
        try:
            while self._held:
                await self.inner.send(self._held.pop(0))
        except (ConnectionError, RuntimeError):
            pass  # closed meanwhile; its disconnect() cleans up
        finally:
            self._held = None

    async def close(self, code: int, reason: str) -> None:
        self._held = None
        await self.inner.close(code, reason)


@dataclass(eq=False)
class Member:
    """One joined websocket: its connection, the account, the participant it speaks for."""

    connection: Connection
    principal: Principal
    participant: ParticipantRef
    endpoints: dict[str, str] = field(default_factory=dict)  # pc name ("view", "publish") -> media endpoint id
    relayed: dict[str, str] = field(default_factory=dict)  # pc name -> the relay it was sent to (issue 14)

    @property
    def key(self) -> str:
        return self.participant.key

    @property
    def role(self) -> LiveRole:
        return self.participant.role


class Members:
    """The joined websockets of a room, by connection id and by participant key."""

    def __init__(self) -> None:
        self._by_id: dict[str, Member] = {}
        self._by_key: dict[str, dict[str, Member]] = {}
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Member]:
        return iter(list(self._by_id.values()))

    def get(self, connection_id: str) -> Member | None:
        return self._by_id.get(connection_id)

    def add(self, member: Member) -> None:
        self._by_id[member.connection.id] = member
        self._by_key.setdefault(member.key, {})[member.connection.id] = member

    def pop(self, connection_id: str) -> Member | None:
        self._buckets.pop(connection_id, None)
        member = self._by_id.pop(connection_id, None)
        if member is not None:
            same = self._by_key.get(member.key, {})
            same.pop(connection_id, None)
            if not same:
                self._by_key.pop(member.key, None)
        return member

    def of(self, key: str) -> list[Member]:
        return list(self._by_key.get(key, {}).values())

    def clear(self) -> list[Member]:
        members = list(self._by_id.values())
        self._by_id.clear()
        self._by_key.clear()
        self._buckets.clear()
        return members

    def allow(self, connection_id: str) -> bool:
        """Rate limit: False when the connection sends faster than it may."""
        bucket = self._buckets.get(connection_id)
        if bucket is None:
            bucket = self._buckets[connection_id] = TokenBucket()
        return bucket.allow()


async def safe_send(member: Member, message: dict[str, Any] | str) -> None:
    try:
        await member.connection.send(message)
    except (ConnectionError, RuntimeError):
        # The socket is closing; its disconnect() will clean up.
        pass
