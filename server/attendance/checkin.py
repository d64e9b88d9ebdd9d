"""Check-in codes: what a hall's screen shows so that members record their presence there.

Each (session, bridge point) has, per time window of ``window_seconds``, a
6-digit code (HMAC-SHA256 truncated as TOTP does, RFC 4226 section 5.3) and
a signed token for the QR link. Window ``n`` covers
``[n * window, (n + 1) * window)`` of Unix time; a code is shown during its
window and still accepted during the next one, so a member who read it just
before the screen rotated is not refused.

A scan is also remembered as a *ticket* (signed, about 10 minutes) while the
member signs in, so a slow sign-in after a rotation is not refused either.

The keys are derived from the server's secret with a purpose label each:
a code, a QR token, a ticket and a sign-in token can never be mistaken for
one another. Pure: no I/O, time only from the clock it is given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CODE_DIGITS = 6
# ASCII digits only: \d would match other scripts' digits, which no hall screen shows.
CODE_PATTERN = re.compile(r"[0-9]{6}")
TOKEN_PREFIX = "c1"
TICKET_PREFIX = "s1"
TICKET_SECONDS = 600
# A typed code that matches a window this far back is "expired", not "wrong".
EXPIRED_LOOKBACK_SECONDS = 1800
_MAC_BYTES = 16
_MAX_TOKEN_LENGTH = 200


class CheckinError(Exception):
    """A code, token or ticket that does not check anyone in; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Hall:
    """One (session, bridge point) where a member may check in."""

    session_id: int
    point_id: int


@dataclass(frozen=True)
class Issued:
    """What the hall's screen shows now."""

    hall: Hall
    window: int
    code: str
    token: str
    rotates_at: float  # the next code appears
    expires_at: float  # this code is refused from then on


@dataclass(frozen=True)
class Scan:
    """A validated QR token or ticket: the hall, and when it was read."""

    hall: Hall
    scanned_at: float


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class CheckinCodes:
    """Issues and checks the codes, tokens and tickets of every hall."""

    def __init__(self, secret: str, window_seconds: int, clock: Callable[[], float] = time.time) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.window_seconds = window_seconds
        self.clock = clock
        master = secret.encode("utf-8")
        self._code_key = hmac.new(master, b"bridgecast/checkin-code/v1", hashlib.sha256).digest()
        self._token_key = hmac.new(master, b"bridgecast/checkin-token/v1", hashlib.sha256).digest()
        self._ticket_key = hmac.new(master, b"bridgecast/checkin-ticket/v1", hashlib.sha256).digest()

    # windows ------------------------------------------------------------------------------

    def window(self, at: float | None = None) -> int:
        return int((self.clock() if at is None else at) // self.window_seconds)

    def accepted_windows(self) -> tuple[int, int]:
        """The current window and the one before it."""
        now = self.window()
        return now, now - 1

    # codes ----------------------------------------------------------------------------------

    def code(self, hall: Hall, window: int) -> str:
        digest = hmac.new(self._code_key, f"{hall.session_id}:{hall.point_id}:{window}".encode(),
                          hashlib.sha256).digest()
        offset = digest[-1] & 0x0F
        number = int.from_bytes(digest[offset:offset + 4], "big") & 0x7FFFFFFF
        return str(number % 10**CODE_DIGITS).zfill(CODE_DIGITS)

    def issue(self, hall: Hall) -> Issued:
        window = self.window()
        start = window * self.window_seconds
        return Issued(hall=hall, window=window, code=self.code(hall, window), token=self.token(hall, window),
                      rotates_at=start + self.window_seconds, expires_at=start + 2 * self.window_seconds)

    def match_code(self, typed: str, halls: Iterable[Hall], home: Iterable[Hall] = ()) -> Hall:
        """The hall whose current or previous code was typed.

        Two halls showing the same code: the member's ``home`` hall wins,
        otherwise the code is ambiguous and the member must scan the QR.
        A code of an older window is ``expired_code``; anything else is
        ``wrong_code``.
        """
        typed = typed.strip()
        if not CODE_PATTERN.fullmatch(typed):
            raise CheckinError("wrong_code", "the code has 6 digits")
        candidates = list(dict.fromkeys(halls))
        accepted = self.accepted_windows()
        found = [hall for hall in candidates
                 if any(hmac.compare_digest(self.code(hall, window), typed) for window in accepted)]
        if len(found) == 1:
            return found[0]
        if found:
            homes = set(home)
            home_found = [hall for hall in found if hall in homes]
            if len(home_found) == 1:
                return home_found[0]
            raise CheckinError("ambiguous_code", "two halls show this code now: scan the QR code instead")
        oldest = self.window() - max(2, EXPIRED_LOOKBACK_SECONDS // self.window_seconds)
        for window in range(accepted[1] - 1, oldest - 1, -1):
            if any(hmac.compare_digest(self.code(hall, window), typed) for hall in candidates):
                raise CheckinError("expired_code", "this code has expired: type the one on the screen now")
        raise CheckinError("wrong_code", "this code is not shown in a hall of your session")

    # QR tokens --------------------------------------------------------------------------------

    def _mac(self, key: bytes, text: str) -> str:
        return _b64(hmac.new(key, text.encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES])

    def token(self, hall: Hall, window: int) -> str:
        body = f"{TOKEN_PREFIX}.{hall.session_id}.{hall.point_id}.{window}"
        return f"{body}.{self._mac(self._token_key, body)}"

    def read_token(self, token: str) -> Scan:
        """The hall a QR token names, if it is genuine and its window still accepted."""
        session_id, point_id, window = self._verify(token, TOKEN_PREFIX, self._token_key)
        current = self.window()
        if window > current:
            raise CheckinError("wrong_code", "this code is not valid yet")
        if window < current - 1:
            raise CheckinError("expired_code", "this QR code has expired: scan the one on the screen now")
        return Scan(Hall(session_id, point_id), self.clock())

    # tickets: a scan remembered while the member signs in ------------------------------------------

    def ticket(self, scan: Scan) -> str:
        body = f"{TICKET_PREFIX}.{scan.hall.session_id}.{scan.hall.point_id}.{int(scan.scanned_at)}"
        return f"{body}.{self._mac(self._ticket_key, body)}"

    def read_ticket(self, ticket: str) -> Scan:
        session_id, point_id, scanned_at = self._verify(ticket, TICKET_PREFIX, self._ticket_key)
        age = self.clock() - scanned_at
        if age < -60:
            raise CheckinError("wrong_code", "this scan is not valid")
        if age > TICKET_SECONDS:
            raise CheckinError("expired_code", "the scan is too old: scan the QR code on the screen again")
        return Scan(Hall(session_id, point_id), float(scanned_at))

    def _verify(self, value: str, prefix: str, key: bytes) -> tuple[int, int, int]:
        if not isinstance(value, str) or len(value) > _MAX_TOKEN_LENGTH or not value.isascii():
            raise CheckinError("wrong_code", "this is not a check-in code")
        parts = value.strip().split(".")
        if len(parts) != 5 or parts[0] != prefix or not all(
                p.isascii() and p.isdigit() and len(p) <= 15 for p in parts[1:4]):
            raise CheckinError("wrong_code", "this is not a check-in code")
        body = ".".join(parts[:4])
        if not hmac.compare_digest(self._mac(key, body), parts[4]):
            raise CheckinError("wrong_code", "this check-in code is not genuine")
        return int(parts[1]), int(parts[2]), int(parts[3])


def looks_like_code(value: str) -> bool:
    """A typed 6-digit code (spaces allowed between digits), rather than a QR token."""
    return value.isascii() and bool(CODE_PATTERN.fullmatch(re.sub(r"\s+", "", value)))


def normalise_code(value: str) -> str:
    return re.sub(r"\s+", "", value)
