"""Every way a token is accepted, against every way a token can be bad (issue 12, "Access").

Ways in (``WAYS``): ``Authorization: Bearer`` on the JSON API, the
``bc_token`` cookie on the API and on pages, the live websocket with either,
and WHIP and WHEP with a Bearer token. Bad tokens (``TOKENS``): expired, not
yet valid (``iat`` or ``nbf`` in the future), scoped to another session,
signed with another key, tampered with, ``alg: none``, signed RS256, HS256
with the RSA public key as the HMAC secret (the classic RS/HS confusion),
without an expiry, of another issuer, of an unknown user, of a deactivated
user, revoked (token version bumped by a password change, by an
administrator or by the user), and signed out (``POST /api/v1/auth/logout``
or the page's ``POST /logout``). Each is refused on each way: 401 (a page:
the sign-in form, and the stale cookie cleared), or 403 for a token limited
to another session. A valid token of the same user, the control, is
accepted on each.

tests/auth/test_tokens.py checks ``verify_token`` alone; this checks that
every route family applies it, and the database checks after it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server import keys
from server.auth.roles import Role
from server.auth.tokens import ISSUER
from tests.conftest import TEST_PASSWORD
from tests.security.conftest import World

pytestmark = pytest.mark.asyncio(loop_scope="module")

BAD_SDP = "v=0\r\n"
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PRIVATE = _RSA.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
RSA_PUBLIC = _RSA.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"


@dataclass
class Subject:
    """The case's own speaker and the session they present (a bad token is tried on it)."""

    user_id: int
    username: str
    token_version: int
    session_id: int
    other_session_id: int


def claims(subject: Subject, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    payload: dict[str, Any] = {"iss": ISSUER, "sub": str(subject.user_id), "ver": subject.token_version,
                               "iat": now, "exp": now + 3600, "jti": f"case-{now}-{id(changes)}-{time.perf_counter_ns()}"}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def signed(world: World, payload: dict[str, Any]) -> str:
    return jwt.encode(payload, world.app[keys.JWT_SECRET], algorithm="HS256")


# How each bad token is made; some change the account after issuing a good one (``after``).
Maker = Callable[[World, Subject], Awaitable[str]]


async def _valid(world: World, subject: Subject) -> str:
    return signed(world, claims(subject))


async def _expired(world: World, subject: Subject) -> str:
    now = int(time.time())
    return signed(world, claims(subject, iat=now - 7200, exp=now - 3600))


async def _iat_future(world: World, subject: Subject) -> str:
    now = int(time.time())
    return signed(world, claims(subject, iat=now + 3600, exp=now + 7200))


async def _nbf_future(world: World, subject: Subject) -> str:
    return signed(world, claims(subject, nbf=int(time.time()) + 3600))


async def _other_session(world: World, subject: Subject) -> str:
    return signed(world, claims(subject, sid=subject.other_session_id))


async def _other_key(world: World, subject: Subject) -> str:
    return jwt.encode(claims(subject), "another-secret-" + "y" * 40, algorithm="HS256")


async def _tampered(world: World, subject: Subject) -> str:
    # A good token whose payload is swapped for the administrator's, signature kept.
    header, _, signature = signed(world, claims(subject)).split(".")
    payload = _b64(json.dumps(claims(subject, sub=str(world.seed.admin.id))).encode())
    return f"{header}.{payload}.{signature}"


async def _alg_none(world: World, subject: Subject) -> str:
    return _unsigned({"alg": "none", "typ": "JWT"}, claims(subject)) + "."


async def _alg_none_with_signature(world: World, subject: Subject) -> str:
    good = signed(world, claims(subject))
    return _unsigned({"alg": "None", "typ": "JWT"}, claims(subject)) + "." + good.split(".")[2]


async def _rs256(world: World, subject: Subject) -> str:
    return jwt.encode(claims(subject), RSA_PRIVATE, algorithm="RS256")


async def _hs256_with_public_key(world: World, subject: Subject) -> str:
    # What a verifier that takes the algorithm from the token would check against its RSA public key.
    head = _unsigned({"alg": "HS256", "typ": "JWT"}, claims(subject))
    mac = hmac.new(RSA_PUBLIC, head.encode(), hashlib.sha256).digest()
    return f"{head}.{_b64(mac)}"


async def _hs512(world: World, subject: Subject) -> str:
    # Made by hand: PyJWT warns (an error here) that the test's key is short for SHA-512.
    head = _unsigned({"alg": "HS512", "typ": "JWT"}, claims(subject))
    mac = hmac.new(world.app[keys.JWT_SECRET].encode(), head.encode(), hashlib.sha512).digest()
    return f"{head}.{_b64(mac)}"


async def _no_expiry(world: World, subject: Subject) -> str:
    return signed(world, claims(subject, exp=None))


async def _other_issuer(world: World, subject: Subject) -> str:
    return signed(world, claims(subject, iss="someone-else"))


async def _unknown_user(world: World, subject: Subject) -> str:
    return signed(world, claims(subject, sub="987654"))


async def _deactivated(world: World, subject: Subject) -> str:
    token = signed(world, claims(subject))
    changed = await world.call("PATCH", f"/api/v1/users/{subject.user_id}", json={"active": False},
                               headers=world.bearer(world.seed.admin))
    assert changed.status == 200, changed.text
    return token


async def _password_reset_by_admin(world: World, subject: Subject) -> str:
    token = signed(world, claims(subject))
    changed = await world.call("PATCH", f"/api/v1/users/{subject.user_id}", json={"password": "a new password 42"},
                               headers=world.bearer(world.seed.admin))
    assert changed.status == 200, changed.text
    return token


async def _password_changed_by_user(world: World, subject: Subject) -> str:
    token = signed(world, claims(subject))
    other_browser = signed(world, claims(subject))
    changed = await world.call("POST", "/account/password", headers=world.cookie(token=other_browser),
                               form={"current_password": TEST_PASSWORD, "new_password": "a new password 42"})
    assert changed.status == 303, changed.text
    return token


async def _signed_out_by_api(world: World, subject: Subject) -> str:
    token = signed(world, claims(subject))
    out = await world.call("POST", "/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert out.status == 204, out.text
    return token


async def _signed_out_by_page(world: World, subject: Subject) -> str:
    token = signed(world, claims(subject))
    out = await world.call("POST", "/logout", headers=world.cookie(token=token))
    assert out.status == 303 and out.location.startswith("/login"), out.text
    return token


SCOPED = "scoped"  # refused as limited to another session (403), not as unauthenticated
TOKENS: dict[str, tuple[Maker, str | None]] = {
    "valid": (_valid, None),
    "expired": (_expired, "refused"),
    "iat in the future": (_iat_future, "refused"),
    "nbf in the future": (_nbf_future, "refused"),
    "scoped to another session": (_other_session, SCOPED),
    "signed with another key": (_other_key, "refused"),
    "payload tampered with": (_tampered, "refused"),
    "alg none": (_alg_none, "refused"),
    "alg None with a signature": (_alg_none_with_signature, "refused"),
    "RS256": (_rs256, "refused"),
    "HS256 keyed with the RSA public key": (_hs256_with_public_key, "refused"),
    "HS512 with the right key": (_hs512, "refused"),
    "without exp": (_no_expiry, "refused"),
    "another issuer": (_other_issuer, "refused"),
    "unknown user": (_unknown_user, "refused"),
    "user deactivated": (_deactivated, "refused"),
    "password reset by an admin": (_password_reset_by_admin, "refused"),
    "password changed by the user": (_password_changed_by_user, "refused"),
    "signed out (API logout)": (_signed_out_by_api, "refused"),
    "signed out (page logout)": (_signed_out_by_page, "refused"),
}


@dataclass(frozen=True)
class Way:
    """A way in: how the token is sent, and what comes back when it is accepted."""

    send: Callable[[World, Subject, str], Awaitable[tuple[int, str, list[str]]]]
    accepted: int
    refused: int | str  # "login": a page's 303 to the sign-in form


async def _api_bearer(world: World, subject: Subject, token: str) -> tuple[int, str, list[str]]:
    reply = await world.call("GET", f"/api/v1/sessions/{subject.session_id}", headers={"Authorization": f"Bearer {token}"})
    return reply.status, reply.location, reply.set_cookies


async def _api_cookie(world: World, subject: Subject, token: str) -> tuple[int, str, list[str]]:
    reply = await world.call("GET", f"/api/v1/sessions/{subject.session_id}", headers=world.cookie(token=token))
    return reply.status, reply.location, reply.set_cookies


async def _page_cookie(world: World, subject: Subject, token: str) -> tuple[int, str, list[str]]:
    reply = await world.call("GET", f"/sessions/{subject.session_id}", headers=world.cookie(token=token))
    return reply.status, reply.location, reply.set_cookies


async def _ws_bearer(world: World, subject: Subject, token: str) -> tuple[int, str, list[str]]:
    return await world.upgrade(f"/ws/sessions/{subject.session_id}", {"Authorization": f"Bearer {token}"}), "", []


async def _ws_cookie(world: World, subject: Subject, token: str) -> tuple[int, str, list[str]]:
    return await world.upgrade(f"/ws/sessions/{subject.session_id}", world.cookie(token=token)), "", []


async def _whip(world: World, subject: Subject, token: str) -> tuple[int, str, list[str]]:
    # A malformed offer: 400 once every check of who may has passed, before any media is made.
    reply = await world.call("POST", f"/whip/sessions/{subject.session_id}", data=BAD_SDP,
                             content_type="application/sdp", headers={"Authorization": f"Bearer {token}"})
    return reply.status, reply.location, reply.set_cookies


async def _whep(world: World, subject: Subject, token: str) -> tuple[int, str, list[str]]:
    reply = await world.call("POST", f"/whep/sessions/{subject.session_id}", data=BAD_SDP,
                             content_type="application/sdp", headers={"Authorization": f"Bearer {token}"})
    return reply.status, reply.location, reply.set_cookies


WAYS: dict[str, Way] = {
    "API bearer": Way(_api_bearer, 200, 401),
    "API cookie": Way(_api_cookie, 200, 401),
    "page cookie": Way(_page_cookie, 200, "login"),
    "websocket bearer": Way(_ws_bearer, 101, 401),
    "websocket cookie": Way(_ws_cookie, 101, 401),
    "WHIP bearer": Way(_whip, 400, 401),
    "WHEP bearer": Way(_whep, 400, 401),
}


async def _subject(world: World) -> Subject:
    user = await world.new_user(Role.SPEAKER, unit_id=world.seed.central.id)
    session_id = await world.new_session([world.seed.point_a.id], speaker=user)
    other = await world.new_session([world.seed.point_a.id], speaker=user)
    return Subject(user.id, user.username, user.token_version, session_id, other)


CASES = [(token, way) for token in TOKENS for way in WAYS]


@pytest.mark.parametrize(("kind", "way"), CASES, ids=[f"{t} on {w}" for t, w in CASES])
async def test_token_on_every_way_in(world: World, kind: str, way: str) -> None:
    subject = await _subject(world)
    make, refusal = TOKENS[kind]
    token = await make(world, subject)
    entry = WAYS[way]
    status, location, cookies = await entry.send(world, subject, token)
    assert status != 500
    if refusal is None:
        assert status == entry.accepted, f"a valid token on {way}: {status} {location}"
    elif refusal == SCOPED:
        assert status == 403, f"{kind} on {way}: expected 403, got {status} {location}"
    elif entry.refused == "login":
        assert status == 303 and location.startswith("/login?next="), (
            f"{kind} on {way}: expected the sign-in page, got {status} {location}")
        # The stale cookie is cleared, not left to be sent again.
        assert any(c.startswith("bc_token=") and ("Max-Age=0" in c or 'bc_token=""' in c) for c in cookies), cookies
    else:
        assert status == entry.refused, f"{kind} on {way}: expected {entry.refused}, got {status} {location}"

