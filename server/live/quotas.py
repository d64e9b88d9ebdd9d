"""How many live connections one user, and one session, may hold at once.

A peer connection costs the server sockets, a polling loop and, once it
receives, a share of the fan-out; a websocket costs a writer task and an
outbox. Both are cheap for a member with a tab or two open and ruinous in a
loop, so every one is taken as a :class:`Ticket` from a :class:`Quota` before
anything is built, and given back when it closes, whichever way it closes.

Counting is synchronous: asyncio runs one ``take`` at a time, so a hundred
concurrent requests cannot all pass a check made before any of them counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable


class QuotaExceeded(Exception):
    """Over a limit; ``retry_after`` is when one may reasonably have been given back (seconds)."""

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


class Ticket:
    """One connection counted against its user (and session); ``release`` gives it back, once."""

    __slots__ = ("_quota", "_user", "_scope", "_held")

    def __init__(self, quota: Quota, user: Hashable, scope: Hashable | None) -> None:
        self._quota = quota
        self._user = user
        self._scope = scope
        self._held = True

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        if self._held:
            self._held = False
            self._quota._give_back(self._user, self._scope)


class Quota:
    """At most ``per_user`` tickets per user and ``per_scope`` per scope (a session); 0: no limit.

    ``what`` names the resource in refusals ("peer connections", "websockets").
    """

    def __init__(self, what: str, *, per_user: int, per_scope: int = 0, retry_after: int = 30) -> None:
        self.what = what
        self.per_user = per_user
        self.per_scope = per_scope
        self.retry_after = max(1, retry_after)
        self._users: Counter[Hashable] = Counter()
        self._scopes: Counter[Hashable] = Counter()

    def take(self, user: Hashable, scope: Hashable | None = None) -> Ticket:
        if self.per_user and self._users[user] >= self.per_user:
            raise QuotaExceeded("too_many_connections",
                                f"at most {self.per_user} {self.what} per user are open at once: "
                                "close one (another tab or device) and try again", self.retry_after)
        if scope is not None and self.per_scope and self._scopes[scope] >= self.per_scope:
            raise QuotaExceeded("session_full",
                                f"this session holds its most {self.what} ({self.per_scope}): try again later",
                                self.retry_after)
        self._users[user] += 1
        if scope is not None:
            self._scopes[scope] += 1
        return Ticket(self, user, scope)

    def held_by(self, user: Hashable) -> int:
        return self._users[user]

    def held_in(self, scope: Hashable) -> int:
        return self._scopes[scope]

    def _give_back(self, user: Hashable, scope: Hashable | None) -> None:
        self._users[user] -= 1
        if self._users[user] <= 0:
            del self._users[user]
        if scope is not None:
            self._scopes[scope] -= 1
            if self._scopes[scope] <= 0:
                del self._scopes[scope]


class Quotas:
    """The server's two quotas: media endpoints (per user and per session) and websockets (per user)."""

    def __init__(self, *, endpoints_per_user: int, endpoints_per_session: int, sockets_per_user: int,
                 retry_after: int) -> None:
        self.endpoints = Quota("peer connections", per_user=endpoints_per_user, per_scope=endpoints_per_session,
                               retry_after=retry_after)
        self.sockets = Quota("websockets", per_user=sockets_per_user, retry_after=retry_after)

    @classmethod
    def unlimited(cls) -> Quotas:
        return cls(endpoints_per_user=0, endpoints_per_session=0, sockets_per_user=0, retry_after=1)
