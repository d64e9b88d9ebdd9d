"""ICE servers for browsers: STUN, and TURN with coturn's time-limited REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from server.config import IceSettings


def _urls(value: str) -> list[str]:
    return [url.strip() for url in value.split(",") if url.strip()]


def browser_ice_servers(settings: IceSettings, user_id: int, now: float | None = None) -> list[dict[str, Any]]:
    """The ``iceServers`` a browser should use (RTCConfiguration form).

    TURN credentials follow the REST convention coturn implements with
    ``use-auth-secret``: username ``<expiry>:<user id>``, password
    base64(HMAC-SHA1(secret, username)).

    None while ``ice.addresses`` confines the server's media: it would refuse
    the relayed and server-reflexive candidates they produce, and browsers
    asking a STUN or TURN server would send outside the addresses named.
    """
    if settings.address_list:
        return []
    servers: list[dict[str, Any]] = []
    stun = _urls(settings.stun_urls)
    if stun:
        servers.append({"urls": stun})
    turn = _urls(settings.turn_urls)
    if turn and settings.turn_secret:
        expiry = int((time.time() if now is None else now) + settings.turn_ttl_seconds)
        username = f"{expiry}:{user_id}"
        digest = hmac.new(settings.turn_secret.encode(), username.encode(), hashlib.sha1).digest()
        servers.append({"urls": turn, "username": username, "credential": base64.b64encode(digest).decode()})
    return servers
