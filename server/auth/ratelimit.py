"""A sliding-window limiter (check-in code guesses); sign-ins use ``server.auth.throttle``."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most ``limit`` events per key in the last ``window`` seconds.

    Memory is bounded: keys whose window emptied are dropped on the next
    sweep, and at most ``max_keys`` keys are tracked (oldest evicted).
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            return deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
        return events

    def blocked(self, key: str) -> bool:
        return len(self._recent(key, self._clock())) >= self.limit

    def retry_after(self, key: str) -> int:
        """Seconds until one more attempt is allowed (0 if allowed now)."""
        now = self._clock()
        events = self._recent(key, now)
        if len(events) < self.limit:
            return 0
        return max(1, int(events[0] + self.window - now + 0.999))

    def hit(self, key: str) -> None:
        now = self._clock()
        events = self._recent(key, now)
        if key not in self._events:
            if len(self._events) >= self.max_keys:
                self._events.pop(next(iter(self._events)))
            self._events[key] = events
        events.append(now)

    def unhit(self, key: str) -> None:
        """Take back the latest event of ``key`` (counted up front, then found not to count)."""
        events = self._events.get(key)
        if events:
            events.pop()
            if not events:
                del self._events[key]

    def reset(self, key: str) -> None:
        self._events.pop(key, None)
