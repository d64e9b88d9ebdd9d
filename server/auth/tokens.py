"""Signed bearer tokens: one verify-to-claims function for every way in.

Pages (cookie), the JSON API and WHIP/WHEP (``Authorization: Bearer``) and
websockets all call :func:`verify_token`.  The algorithm list is pinned, so a
token signed with another algorithm (``none`` included) is refused.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
ISSUER = "bridgecast"
# Tokens are checked against these claims; a token without them is refused.
_REQUIRED = ["exp", "iat", "sub", "ver", "iss"]
_LEEWAY_SECONDS = 10


class TokenError(Exception):
    """The token is missing, malformed, expired, tampered with or revoked."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Claims:
    user_id: int
    token_version: int
    issued_at: int
    expires_at: int
    token_id: str
    # A token may be scoped to one live session (for WHIP/WHEP and scripts).
    session_id: int | None = None
    # A redirect ticket (the hub's 307 to a relay) is taken within a minute, but the connection it
    # opens lasts as long as the token it was issued for: until then (Unix seconds).
    connection_until: int | None = None

    @property
    def connection_expires_at(self) -> int:
        return self.connection_until if self.connection_until is not None else self.expires_at


def issue_token(
    secret: str,
    user_id: int,
    token_version: int,
    ttl_seconds: int,
    *,
    session_id: int | None = None,
    now: float | None = None,
    connection_until: int | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    payload: dict[str, object] = {
        "iss": ISSUER,
        "sub": str(user_id),
        "ver": token_version,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if session_id is not None:
        payload["sid"] = session_id
    if connection_until is not None:
        payload["until"] = int(connection_until)
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, *, now: float | None = None) -> Claims:
    """Check signature, algorithm, issuer and expiry; return the claims.

    Revocation (the user's token version, the active flag) needs the
    database and is checked by the caller: see ``server.views.auth``.
    """
    if not token or len(token) > 4096:
        raise TokenError("invalid_token", "missing or oversized token")
    current = time.time() if now is None else now
    try:
        # Expiry, issue and not-before times are checked below against ``current`` so tests can set the clock.
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise TokenError("invalid_token", f"invalid token: {exc}") from None
    expires = payload["exp"]
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise TokenError("invalid_token", "malformed expiry")
    if expires + _LEEWAY_SECONDS < current:
        raise TokenError("token_expired", "the token has expired")
    issued = payload["iat"]
    if not isinstance(issued, int) or isinstance(issued, bool) or issued > current + _LEEWAY_SECONDS:
        # Issued in the future: not by this server's clock (a forged or replayed-ahead token).
        raise TokenError("invalid_token", "the token is not valid yet")
    not_before = payload.get("nbf")
    if not_before is not None and (not isinstance(not_before, (int, float)) or not_before > current + _LEEWAY_SECONDS):
        raise TokenError("invalid_token", "the token is not valid yet")
    try:
        session_id = payload.get("sid")
        until = payload.get("until")
        if until is not None and (isinstance(until, bool) or not isinstance(until, int) or session_id is None):
            raise TokenError("invalid_token", "malformed ticket")
        return Claims(
            user_id=int(payload["sub"]),
            token_version=int(payload["ver"]),
            issued_at=int(payload["iat"]),
            expires_at=int(payload["exp"]),
            token_id=str(payload.get("jti", "")),
            session_id=None if session_id is None else int(session_id),
            connection_until=until,
        )
    except (TypeError, ValueError):
        raise TokenError("invalid_token", "malformed claims") from None
