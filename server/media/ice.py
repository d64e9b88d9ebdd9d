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

    TURN is handed out whenever it is configured, whatever ``ice.addresses``
    confines: a hall behind a strict firewall needs it most, and the relay's
    candidates pass the server's address rule like any other (a relay on
    an address the rule allows). STUN only while the server's media is not
    confined: a confined server refuses the server-reflexive candidates it
    finds, and a browser asking a STUN server would send outside the
    addresses named.
    """
    servers: list[dict[str, Any]] = []
    stun = _urls(settings.stun_urls)
    if stun and not settings.address_list:
        servers.append({"urls": stun})
    turn = _urls(settings.turn_urls)
    if turn and settings.turn_secret:
        expiry = int((time.time() if now is None else now) + settings.turn_ttl_seconds)
        username = f"{expiry}:{user_id}"
        digest = hmac.new(settings.turn_secret.encode(), username.encode(), hashlib.sha1).digest()
        servers.append({"urls": turn, "username": username, "credential": base64.b64encode(digest).decode()})
    return servers
