"""Who is asking, as far as the network tells: the client's address and its device cookie.

* :func:`client_address` believes ``X-Forwarded-For`` only from the reverse
  proxies named in ``server.trusted_proxies``; anyone else could write any
  address there and pick the throttle bucket they are counted in.
* The device cookie (``bc_device``) marks a browser that signed in to an
  account before (OWASP's "device cookies"): sign-in throttling counts its
  failures apart from everyone else's, so a guesser elsewhere does not slow
  the owner down. It names the account only by an HMAC, so it says nothing
  to whoever reads it, and it grants nothing by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets

from aiohttp import web

from server import keys

DEVICE_COOKIE = "bc_device"
DEVICE_MAX_AGE = 365 * 86400
_VERSION = "d1"


def client_address(request: web.BaseRequest) -> str:
    """The client's IP address: the peer, or behind trusted proxies the last untrusted hop they forwarded."""
    peer = request.remote or "unknown"
    proxies = request.app[keys.SETTINGS].server.trusted_proxy_list
    if not proxies or not _within(peer, proxies):
        return peer
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", [])
            for hop in value.split(",")]
    # From the nearest hop outwards: the first that is not one of our proxies is the client.
    for hop in reversed(hops):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            return peer  # a malformed chain: trust nothing in it
        if not _within(address, proxies):
            return address
    return peer


def _within(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == network.version and ip in network for network in networks)


def _key(request: web.BaseRequest) -> bytes:
    return hmac.new(request.app[keys.JWT_SECRET].encode(), b"bridgecast device cookie", hashlib.sha256).digest()


def _mac(key: bytes, *parts: str) -> str:
    digest = hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def device_of(request: web.BaseRequest, account: str) -> str | None:
    """The device id of this browser if its cookie was issued for ``account``, else None."""
    value = request.cookies.get(DEVICE_COOKIE, "")
    parts = value.split(".")
    if len(parts) != 4 or parts[0] != _VERSION or len(value) > 200:
        return None
    _, device, account_mac, signature = parts
    key = _key(request)
    expected_account = _mac(key, "account", account.strip().lower())
    expected_signature = _mac(key, "device", device, account_mac)
    if hmac.compare_digest(account_mac, expected_account) and hmac.compare_digest(signature, expected_signature):
        return device
    return None


def set_device_cookie(request: web.BaseRequest, response: web.StreamResponse, account: str) -> None:
    """Mark this browser as one that signed in to ``account`` (kept across sign-outs)."""
    from server.views.auth import is_secure

    key = _key(request)
    device = device_of(request, account) or secrets.token_urlsafe(12)
    account_mac = _mac(key, "account", account.strip().lower())
    value = ".".join((_VERSION, device, account_mac, _mac(key, "device", device, account_mac)))
    response.set_cookie(DEVICE_COOKIE, value, max_age=DEVICE_MAX_AGE, httponly=True, samesite="Lax",
                        secure=is_secure(request), path="/")
