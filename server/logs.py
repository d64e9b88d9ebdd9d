"""Log lines that outsiders can cause are throttled, so that nobody can flood the log.

A refused message, an offer that never connects, a socket too slow to keep
up, a request while the database is away: each is worth one line, but a
script can cause thousands a second, filling the disk and burying what
matters. :class:`Throttled` writes the first few per key and interval, then
one line saying how many like them were left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable


class Throttled:
    """At most ``burst`` lines per key each ``interval`` seconds; the rest are counted and summarised."""

    def __init__(self, logger: logging.Logger, *, interval: float = 60.0, burst: int = 5, max_keys: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        # key -> [window start, lines written, lines left out]
        self._windows: dict[Hashable, list[float]] = {}

    def log(self, level: int, key: Hashable, message: str, *args: object) -> bool:
        """Write the line unless its key is over the limit; True if written."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.interval:
            if window is not None and window[2]:
                self.logger.log(level, "%d more like the last %s line were left out in %.0f s", int(window[2]),
                                _name(key), now - window[0])
            if window is None and len(self._windows) >= self.max_keys:
                self._windows.pop(next(iter(self._windows)))
            window = self._windows[key] = [now, 0, 0]
        if window[1] >= self.burst:
            window[2] += 1
            return False
        window[1] += 1
        self.logger.log(level, message, *args)
        return True

    def warning(self, key: Hashable, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)

    def info(self, key: Hashable, message: str, *args: object) -> bool:
        return self.log(logging.INFO, key, message, *args)


def _name(key: Hashable) -> str:
    return repr(key[0]) if isinstance(key, tuple) and key else repr(key)


def quiet_media_libraries() -> None:
    """aioice and aiortc log every check and state change at INFO: per peer connection, dozens of lines."""
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(logging.WARNING)
