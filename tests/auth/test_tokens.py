import base64
import json
import time

import jwt
import pytest

from server.auth.tokens import ALGORITHM, TokenError, issue_token, verify_token

SECRET = "k" * 64


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_valid_token_yields_its_claims() -> None:
    token = issue_token(SECRET, 7, 3, 600, session_id=12)
    claims = verify_token(SECRET, token)
    assert (claims.user_id, claims.token_version, claims.session_id) == (7, 3, 12)
    assert claims.expires_at - claims.issued_at == 600
    assert len(claims.token_id) == 32


def test_expired_token_is_refused() -> None:
    token = issue_token(SECRET, 1, 1, 60, now=time.time() - 3600)
    with pytest.raises(TokenError) as caught:
        verify_token(SECRET, token)
    assert caught.value.code == "token_expired"


def test_expiry_follows_the_given_clock() -> None:
    token = issue_token(SECRET, 1, 1, 60, now=1_000_000)
    assert verify_token(SECRET, token, now=1_000_050).user_id == 1
    with pytest.raises(TokenError):
        verify_token(SECRET, token, now=1_000_100)


def test_tampered_payload_is_refused() -> None:
    token = issue_token(SECRET, 1, 1, 600)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "2"  # become another user
    with pytest.raises(TokenError) as caught:
        verify_token(SECRET, ".".join([header, _b64(claims), signature]))
    assert caught.value.code == "invalid_token"


def test_wrong_key_is_refused() -> None:
    with pytest.raises(TokenError):
        verify_token(SECRET, issue_token("o" * 64, 1, 1, 600))


def test_alg_none_is_refused() -> None:
    now = int(time.time())
    claims = {"iss": "bridgecast", "sub": "1", "ver": 1, "iat": now, "exp": now + 600}
    token = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + "."
    with pytest.raises(TokenError):
        verify_token(SECRET, token)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_algorithms_are_refused_even_with_the_right_key(algorithm: str) -> None:
    assert algorithm != ALGORITHM
    now = int(time.time())
    claims = {"iss": "bridgecast", "sub": "1", "ver": 1, "iat": now, "exp": now + 600}
    with pytest.raises(TokenError):
        verify_token(SECRET, jwt.encode(claims, SECRET, algorithm=algorithm))


@pytest.mark.parametrize("missing", ["exp", "sub", "ver", "iss", "iat"])
def test_tokens_without_required_claims_are_refused(missing: str) -> None:
    now = int(time.time())
    claims = {"iss": "bridgecast", "sub": "1", "ver": 1, "iat": now, "exp": now + 600}
    del claims[missing]
    with pytest.raises(TokenError):
        verify_token(SECRET, jwt.encode(claims, SECRET, algorithm=ALGORITHM))


def test_wrong_issuer_is_refused() -> None:
    now = int(time.time())
    claims = {"iss": "someone-else", "sub": "1", "ver": 1, "iat": now, "exp": now + 600}
    with pytest.raises(TokenError):
        verify_token(SECRET, jwt.encode(claims, SECRET, algorithm=ALGORITHM))


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c", "x" * 5000])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(TokenError):
        verify_token(SECRET, token)
