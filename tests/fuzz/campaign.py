"""The SDP fuzzer's cases, run against an app in the caller's event loop (a test's client, the bench's server).

Five kinds of case, each from a ``random.Random`` of its own (reproducible):

* ``whep``: a mutated viewer offer POSTed to /whep/sessions/{id} (as a member, a hall's operator, an admin);
* ``whip``: a mutated publisher offer POSTed to /whip/sessions/{id} with the speaker's session token;
* ``trickle``: a PATCH with an application/trickle-ice-sdpfrag body on a real resource (RFC 9725: 405)
  and on one that does not exist;
* ``ws-offer``: a mutated offer in the websocket's ``offer`` message (a member's view, the host's publish);
* ``ws-candidate``: a mutated candidate in the websocket's ``candidate`` message, for an open peer connection;
* ``whep-connect``: a real client's offer with its DTLS, ICE or RTP attributes changed, POSTed to WHEP, and
  the client then tries to connect with the answer: what fails after the answer (ICE, DTLS, in the
  server's background tasks) must fail quietly too, and the endpoint must still go.

After every case: no response in 5xx, no ``internal_error`` on the socket, no
ERROR and no traceback in the server's log, and the room's media endpoints
are back where they were (a 201 is DELETEd at once, an answered websocket
offer closed with ``close_pc``). At the end the process's UDP sockets must be
back to where they started.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server import keys
from server.auth.tokens import issue_token
from server.storage.models import User
from tests.fuzz.harness import endpoint_count, held_tickets, resource_count, udp_sockets
from tests.fuzz.mutations import (
    PUBLISH_SEEDS,
    VIEW_SEEDS,
    Mutant,
    candidates_of,
    mutate_candidate,
    mutate_connectable,
    mutate_offer,
    trickle_fragment,
)
from tests.signaling.helpers import LiveClient

KINDS = ("whep", "whip", "trickle", "ws-offer", "ws-candidate", "whep-connect")
CONTENT_TYPES = ["application/sdp"] * 12 + ["application/sdp; charset=utf-8", "APPLICATION/SDP", "text/plain",
                                            "application/sdp, text/plain", "multipart/form-data", None]
MID_VALUES: list[Any] = ["0", "1", None, "", "x" * 64, "9", "\u202e"]
MLINE_VALUES: list[Any] = [0, 1, None, 2, 64]


def signature(problem: str) -> str:
    """What went wrong, without the case: a traceback's last line, or the problem's first."""
    lines = [line for line in problem.strip().splitlines() if line.strip()]
    if not lines:
        return "?"
    return (lines[-1] if "Traceback" in problem else lines[0])[:200]


@dataclass
class Totals:
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)  # "whep 201", "ws-offer answer", ...
    # Every failure (case, problem) up to KEEP; beyond, only counted by signature.
    failures: list[tuple[str, str]] = field(default_factory=list)
    signatures: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0  # 5xx responses and internal_error replies

    KEEP = 3000

    def add(self, case: str, problem: str) -> None:
        key = signature(problem)
        if self.signatures[key] < 20 and len(self.failures) < self.KEEP:
            self.failures.append((case, problem))
        self.signatures[key] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"cases": dict(self.cases), "total_cases": sum(self.cases.values()),
                "statuses": dict(sorted(self.statuses.items())), "server_errors": self.server_errors,
                "failures": sum(self.signatures.values())}

    def grouped(self, examples: int = 3) -> list[dict[str, Any]]:
        """Failures by signature, most frequent first, with example cases and where in server/ it failed."""
        groups = []
        for key, count in self.signatures.most_common():
            found = [(case, problem) for case, problem in self.failures if signature(problem) == key]
            where = [line.strip() for line in (found[0][1] if found else "").splitlines()
                     if line.strip().startswith('File "') and "/server/" in line]
            groups.append({"count": count, "problem": key, "cases": [case[:400] for case, _ in found[:examples]],
                           "server_frames": where[-4:]})
        return groups


class Http:
    """``request(method, path, ...)`` against a base URL (the bench), like aiohttp's TestClient does."""

    def __init__(self, session: Any, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.session.request(method, self.base_url + path, **kwargs)

    def ws_connect(self, path: str, **kwargs: Any) -> Any:
        return self.session.ws_connect(self.base_url + path, **kwargs)


class Campaign:
    """The cases against one session of ``app``, reached through ``http`` (TestClient or :class:`Http`)."""

    def __init__(self, app: web.Application, http: Any, session_id: int, users: dict[str, User],
                 offers: dict[str, str], new_problems: Callable[[], list[str]], *, seed: int = 12) -> None:
        self.app = app
        self.http = http
        self.session_id = session_id
        self.users = users
        self.offers = offers
        self.new_problems = new_problems
        self.rngs = {kind: random.Random(f"{seed}:{kind}") for kind in KINDS}
        self.totals = Totals()
        self.udp_start = udp_sockets()
        self._sockets: dict[str, LiveClient] = {}
        self._tokens = iter(range(10**12, 10**13))

    # helpers ----------------------------------------------------------------------------------

    def headers(self, role: str, content_type: str | None = "application/sdp", **extra: str) -> dict[str, str]:
        user = self.users[role]
        # WHIP as OBS does it: the speaker's token scoped to the session.
        scope = self.session_id if role == "speaker" else None
        token = issue_token(self.app[keys.JWT_SECRET], user.id, user.token_version, 3600, session_id=scope)
        headers = {"Authorization": f"Bearer {token}", **extra}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    def room(self) -> Any:
        return self.app[keys.LIVE].rooms.get(self.session_id)

    def fail(self, case: str, problem: str) -> None:
        self.totals.add(case, problem)

    async def settled(self, case: str, endpoints: int) -> None:
        """After a case: nothing logged, and the endpoints back to ``endpoints`` (a moment's grace)."""
        for problem in self.new_problems():
            self.fail(case, f"the server logged: {problem}")
        deadline = time.monotonic() + 3
        while endpoint_count(self.app) > endpoints and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        left = endpoint_count(self.app)
        if left > endpoints:
            self.fail(case, f"{left - endpoints} media endpoint(s) left behind (now {left}, {endpoints} before)")
        elif left < endpoints:
            self.totals.statuses["an endpoint closed meanwhile"] += 1

    async def post(self, kind: str, role: str, path: str, mutant: Mutant, content_type: str | None) -> None:
        case = f"{kind} as {role} [{content_type}] {mutant.name}"
        before = endpoint_count(self.app)
        try:
            async with self.http.request("POST", path, data=mutant.body,
                                         headers=self.headers(role, content_type)) as response:
                status, text, location = response.status, await response.text(), response.headers.get("Location")
        except Exception as exc:  # noqa: BLE001 - the connection itself failing is a finding
            self.fail(case, f"the request failed: {exc!r}")
            return
        self.totals.cases[kind] += 1
        self.totals.statuses[f"{kind} {status}"] += 1
        if status >= 500:
            self.totals.server_errors += 1
            self.fail(case, f"{status} {text[:300]}")
        if status == 429:
            self.fail(case, f"429 with every earlier resource deleted (a quota ticket leaked?): {text[:200]}")
        if status == 201:
            if not location:
                self.fail(case, "201 without a Location")
            else:
                async with self.http.request("DELETE", location, headers=self.headers(role, None)) as deleted:
                    if deleted.status != 200:
                        self.fail(case, f"DELETE {location} answered {deleted.status}")
        await self.settled(case, before)

    # the kinds of case --------------------------------------------------------------------------

    async def whep(self) -> None:
        rng = self.rngs["whep"]
        seed = rng.choice(VIEW_SEEDS)
        mutant = mutate_offer(rng, seed, self.offers[seed])
        role = rng.choice(["member", "member", "operator", "admin"])
        await self.post("whep", role, f"/whep/sessions/{self.session_id}", mutant, rng.choice(CONTENT_TYPES))

    async def whip(self) -> None:
        rng = self.rngs["whip"]
        seed = rng.choice(PUBLISH_SEEDS)
        mutant = mutate_offer(rng, seed, self.offers[seed])
        await self.post("whip", "speaker", f"/whip/sessions/{self.session_id}", mutant, rng.choice(CONTENT_TYPES))

    async def trickle(self) -> None:
        rng = self.rngs["trickle"]
        body = trickle_fragment(rng, "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host")
        before = endpoint_count(self.app)
        async with self.http.request("POST", f"/whep/sessions/{self.session_id}", data=self.offers["aiortc-view"],
                                     headers=self.headers("member")) as opened:
            location = opened.headers.get("Location") if opened.status == 201 else None
            if location is None:
                self.fail("trickle", f"a real offer was not answered: {opened.status} {(await opened.text())[:200]}")
                return
        targets = [location, location.rsplit("/", 1)[0] + "/" + "0" * 32, location.replace("/whep/", "/whip/")]
        for target in targets:
            case = f"trickle PATCH {target.rsplit('/', 1)[1][:6]}… {body[:80]!r}"
            content_type = rng.choice(["application/trickle-ice-sdpfrag"] * 4 + ["application/sdp", None])
            headers = self.headers("member", content_type, **({"If-Match": rng.choice(['"x"', "*"])}
                                                             if rng.random() < 0.3 else {}))
            async with self.http.request("PATCH", target, data=body, headers=headers) as response:
                status, text = response.status, await response.text()
            self.totals.cases["trickle"] += 1
            self.totals.statuses[f"trickle {status}"] += 1
            if status >= 500:
                self.totals.server_errors += 1
                self.fail(case, f"{status} {text[:300]}")
            elif target == location and status != 405:
                self.fail(case, f"trickle on a real resource answered {status}, not 405 (RFC 9725 without trickle)")
        async with self.http.request("DELETE", location, headers=self.headers("member", None)) as deleted:
            if deleted.status != 200:
                self.fail("trickle", f"DELETE after the PATCHes answered {deleted.status}")
        await self.settled("trickle", before)

    async def socket(self, role: str) -> LiveClient:
        live = self._sockets.get(role)
        if live is None or live.ws.closed:
            ws = await self.http.ws_connect(f"/ws/sessions/{self.session_id}", headers=self.headers(role, None))
            live = self._sockets[role] = LiveClient(ws)
            await live.send("join")
            await live.expect("welcome", timeout=15)
        return live

    async def barrier(self, live: LiveClient, since: int) -> bool:
        token = next(self._tokens)
        try:
            await live.send("ping", t=token)
            await live.expect("pong", since=since, t=token, timeout=20)
            return True
        except (AssertionError, ConnectionError, RuntimeError):
            return False

    def replies(self, kind: str, case: str, live: LiveClient, since: int) -> list[dict[str, Any]]:
        found = live.received[since:]
        for reply in found:
            if reply.get("type") == "error":
                self.totals.statuses[f"{kind} {reply['code']}"] += 1
                if reply["code"] == "internal_error":
                    self.totals.server_errors += 1
                    self.fail(case, f"internal_error: {reply}")
            elif reply.get("type") == "answer":
                self.totals.statuses[f"{kind} answer"] += 1
        return found

    async def ws_offer(self) -> None:
        rng = self.rngs["ws-offer"]
        role, pc = rng.choice([("member", "view"), ("member", "view"), ("operator", "view"), ("admin", "publish")])
        seed = rng.choice(VIEW_SEEDS if pc == "view" else PUBLISH_SEEDS)
        mutant = mutate_offer(rng, seed, self.offers[seed])
        case = f"ws-offer {pc} as {role} {mutant.name}"
        live = await self.socket(role)
        before = endpoint_count(self.app)
        since = live.mark()
        await live.send("offer", pc=pc, sdp=mutant.text)
        answered = await self.barrier(live, since)
        self.totals.cases["ws-offer"] += 1
        replies = self.replies("ws-offer", case, live, since)
        if not answered:
            self.fail(case, f"the socket did not answer a ping after the offer (closed {live.ws.close_code})")
        if any(r.get("type") == "answer" for r in replies):
            since = live.mark()
            await live.send("close_pc", pc=pc)
            await self.barrier(live, since)
        await self.settled(case, before)

    async def ws_candidate(self) -> None:
        rng = self.rngs["ws-candidate"]
        live = await self.socket("member")
        room = self.room()
        key = f"user:{self.users['member'].id}"
        member = next((m for m in room.members if m.key == key), None) if room else None
        if member is None or "view" not in member.endpoints:
            since = live.mark()
            await live.send("offer", pc="view", sdp=self.offers["aiortc-view"])
            await live.expect("answer", since=since, timeout=20)
        before = endpoint_count(self.app)
        base = rng.choice(candidates_of(self.offers["aiortc-view"]) or ["candidate:1 1 udp 1 127.0.0.1 9 typ host"])
        candidate = mutate_candidate(rng, base)
        message: dict[str, Any] = {"pc": rng.choice(["view"] * 6 + ["publish"]), "candidate": candidate}
        if rng.random() < 0.8:
            message["sdpMid"] = rng.choice(MID_VALUES)
        if rng.random() < 0.8:
            message["sdpMLineIndex"] = rng.choice(MLINE_VALUES)
        case = f"ws-candidate {message!r:.200}"
        since = live.mark()
        await live.send("candidate", **message)
        answered = await self.barrier(live, since)
        self.totals.cases["ws-candidate"] += 1
        self.replies("ws-candidate", case, live, since)
        if not answered:
            self.fail(case, f"the socket did not answer a ping after the candidate (closed {live.ws.close_code})")
        else:
            self.totals.statuses["ws-candidate taken"] += not any(r.get("type") == "error" for r in live.received[since:])
        await self.settled(case, before)

    async def whep_connect(self) -> None:
        from aiortc import RTCSessionDescription

        from tests.media.clients import new_client

        rng = self.rngs["whep-connect"]
        pc = new_client()
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        mutant = mutate_connectable(rng, "aiortc-view", pc.localDescription.sdp)
        case = f"whep-connect {mutant.name}"
        before = endpoint_count(self.app)
        location = None
        try:
            async with self.http.request("POST", f"/whep/sessions/{self.session_id}", data=mutant.body,
                                         headers=self.headers("member")) as response:
                status, text = response.status, await response.text()
                location = response.headers.get("Location") if status == 201 else None
            self.totals.cases["whep-connect"] += 1
            self.totals.statuses[f"whep-connect {status}"] += 1
            if status >= 500:
                self.totals.server_errors += 1
                self.fail(case, f"{status} {text[:300]}")
            if location is not None:
                try:
                    await pc.setRemoteDescription(RTCSessionDescription(text, "answer"))
                except Exception as exc:  # noqa: BLE001 - the client may refuse what its own mutation made
                    self.totals.statuses[f"whep-connect client refused the answer ({type(exc).__name__})"] += 1
                deadline = time.monotonic() + 3
                while pc.connectionState not in ("connected", "failed", "closed") and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                self.totals.statuses[f"whep-connect client {pc.connectionState}"] += 1
        finally:
            await pc.close()
            if location is not None:
                async with self.http.request("DELETE", location, headers=self.headers("member", None)) as deleted:
                    if deleted.status not in (200, 404):  # 404: it failed and closed by itself meanwhile
                        self.fail(case, f"DELETE {location} answered {deleted.status}")
        await asyncio.sleep(0.1)
        gc.collect()  # a background task that failed is reported when it is collected
        await asyncio.sleep(0)
        await self.settled(case, before)

    # running -----------------------------------------------------------------------------------

    async def run(self, kind: str, count: int) -> None:
        step: Callable[[], Awaitable[None]] = getattr(self, kind.replace("-", "_"))
        for _ in range(count):
            await step()

    async def run_for(self, seconds: float, report: Callable[[Campaign], None] | None = None,
                      every: float = 30.0) -> None:
        """Round robin over the kinds until ``seconds`` have passed."""
        # A connecting client takes a second or more: one case in twenty.
        order = ["whep", "whip", "ws-offer", "ws-candidate", "whep", "whip", "ws-offer", "ws-candidate"] * 2 + [
            "whep", "trickle", "whep", "whep-connect"]
        deadline = time.monotonic() + seconds
        next_report = time.monotonic() + every
        index = 0
        while time.monotonic() < deadline:
            await self.run(order[index % len(order)], 1)
            index += 1
            if report is not None and time.monotonic() >= next_report:
                report(self)
                next_report += every

    async def finish(self) -> dict[str, Any]:
        """Close the sockets; then nothing of the fuzz may be left: endpoints, resources, tickets, UDP sockets."""
        for live in self._sockets.values():
            await live.close()
        self._sockets.clear()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (endpoint_count(self.app) or held_tickets(self.app)
                                               or udp_sockets() > self.udp_start):
            await asyncio.sleep(0.1)
        left = {"endpoints": endpoint_count(self.app), "resources": resource_count(self.app),
                "tickets": held_tickets(self.app), "udp_sockets_start": self.udp_start, "udp_sockets_end": udp_sockets()}
        if left["endpoints"] or left["resources"] or left["tickets"]:
            self.fail("the end", f"left behind: {left}")
        if left["udp_sockets_end"] > self.udp_start:
            self.fail("the end", f"UDP sockets: {self.udp_start} at the start, {left['udp_sockets_end']} at the end")
        for problem in self.new_problems():
            self.fail("the end", f"the server logged: {problem}")
        return left
