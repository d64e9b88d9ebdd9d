"""Sign-in throttling that slows guessing down without locking the owner out.

A lockout ("eight wrong passwords, five minutes") is a weapon: anyone can
lock the speaker out before a national lecture, and behind a reverse proxy
every client shares one address, so thirty failures lock out everyone.
Instead, failures make the next attempt *wait*, and the wait grows:

* **Per account and source.** The source is the browser's device cookie
  when it holds one for this account (it signed in here before), else the
  client's address. After ``free`` failures each further attempt waits
  ``2**n`` seconds (n = failures beyond ``free``, from 1 s up to ``max_delay``)
  after the last one. A guesser at one source gets a handful of tries an
  hour; the owner elsewhere is not affected.
* **Per account, from unknown sources.** Beyond ``per_account`` failures in
  ``window`` seconds from sources that never signed in to the account,
  every unknown source waits too (a guess spread over many addresses).
  A known source (a device cookie of this account, or an address it signed
  in from) is exempt: the real speaker, on their own laptop, gets in.
* **Per address, across accounts.** Beyond ``per_address`` failures in
  ``window`` from one address, its attempts on accounts it is not known to
  wait as well (password spraying).

Every attempt is counted as a failure *before* the password is checked, so
concurrent guesses cannot all pass the check while the first ones are
being hashed; a success takes it back.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class _Bounded(OrderedDict[str, object]):
    """An LRU map: at most ``limit`` keys, the oldest dropped first (memory stays bounded under attack)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def touch(self, key: str, value: object) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@dataclass(frozen=True)
class Attempt:
    """One counted sign-in attempt: ``succeeded`` or nothing (it stays a failure)."""

    account: str
    source: str
    address: str
    known: bool


class LoginThrottle:
    def __init__(self, *, free: int = 5, max_delay: float = 300.0, per_account: int = 20, per_address: int = 30,
                 window: float = 300.0, known_days: float = 30.0, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free = free
        self.max_delay = max_delay
        self.per_account = per_account
        self.per_address = per_address
        self.window = window
        self.known_seconds = known_days * 86400
        self._clock = clock
        self._pairs: _Bounded = _Bounded(max_keys)  # (account, source) -> _Failures
        self._unknown: _Bounded = _Bounded(max_keys)  # account -> deque of failure times from unknown sources
        self._addresses: _Bounded = _Bounded(max_keys)  # address -> deque of failure times
        self._known: _Bounded = _Bounded(max_keys)  # (account, address) -> time of the last success

    # the decision -------------------------------------------------------------

    def wait(self, account: str, source: str, address: str, *, device: bool = False) -> int:
        """Seconds this attempt must wait (0: it may go ahead). ``device``: ``source`` is a device cookie of the account."""
        account = account.lower()
        now = self._clock()
        known = device or self._is_known(account, address, now)
        waits = [self._pair_wait(account, source, now)]
        if not known:
            waits.append(self._crowd_wait(self._unknown.get(account), self.per_account, now))
            waits.append(self._crowd_wait(self._addresses.get(address), self.per_address, now))
        longest = max(waits)
        return 0 if longest <= 0 else max(1, int(longest + 0.999))

    def attempt(self, account: str, source: str, address: str, *, device: bool = False) -> Attempt:
        """Count the attempt as a failure now (before the password is checked)."""
        account = account.lower()
        now = self._clock()
        known = device or self._is_known(account, address, now)
        pair = self._pairs.get(f"{account}\0{source}")
        failures = pair if isinstance(pair, _Failures) else _Failures()
        failures.count += 1
        failures.last = now
        self._pairs.touch(f"{account}\0{source}", failures)
        if not known:
            self._remember(self._unknown, account, now)
            self._remember(self._addresses, address, now)
        return Attempt(account, source, address, known)

    def withdraw(self, attempt: Attempt) -> None:
        """The attempt was never checked (the server was busy): it does not count."""
        pair = self._pairs.get(f"{attempt.account}\0{attempt.source}")
        if isinstance(pair, _Failures):
            pair.count -= 1
            if pair.count <= 0:
                self._pairs.pop(f"{attempt.account}\0{attempt.source}", None)
        self._take_back(attempt)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the pair starts afresh, the address becomes known to the account."""
        self._pairs.pop(f"{attempt.account}\0{attempt.source}", None)
        self._take_back(attempt)
        self._known.touch(f"{attempt.account}\0{attempt.address}", self._clock())

    def _take_back(self, attempt: Attempt) -> None:
        if not attempt.known:
            for table, key in ((self._unknown, attempt.account), (self._addresses, attempt.address)):
                times = table.get(key)
                if isinstance(times, deque) and times:
                    times.pop()

    # internals ------------------------------------------------------------------

    def _is_known(self, account: str, address: str, now: float) -> bool:
        since = self._known.get(f"{account}\0{address}")
        return isinstance(since, float) and now - since < self.known_seconds

    def _delay(self, beyond: int) -> float:
        """The wait after ``beyond`` failures past the free ones: 1, 2, 4, ... seconds, capped."""
        return 0.0 if beyond <= 0 else min(self.max_delay, 2.0 ** (beyond - 1))

    def _pair_wait(self, account: str, source: str, now: float) -> float:
        failures = self._pairs.get(f"{account}\0{source}")
        if not isinstance(failures, _Failures):
            return 0.0
        if now - failures.last > self.max_delay * 4:
            # Long quiet: the pair is forgiven (a member who forgot a password last month).
            self._pairs.pop(f"{account}\0{source}", None)
            return 0.0
        return failures.last + self._delay(failures.count - self.free + 1) - now

    def _crowd_wait(self, times: object, limit: int, now: float) -> float:
        if not isinstance(times, deque):
            return 0.0
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < limit:
            return 0.0
        return times[-1] + self._delay(len(times) - limit + 1) - now

    def _remember(self, table: _Bounded, key: str, now: float) -> None:
        times = table.get(key)
        if not isinstance(times, deque):
            times = deque()
        times.append(now)
        # A window holds at most what makes the longest delay: older failures change nothing.
        while len(times) > self.per_account + self.per_address + 64:
            times.popleft()
        table.touch(key, times)
