"""The load side of the signaling benchmark: many websocket endpoints in one process.

Opens N endpoints (members) in bursts, then has the host change the floor K
times and records when each endpoint hears of each change.  Prints one JSON
object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


class Endpoint:
    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.http, self.url, self.token = http, url, token
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.floor_seen: dict[str, float] = {}  # holder key -> first time seen
        self.errors = 0
        self.joined = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            self.ws = await self.http.ws_connect(self.url, headers={"Authorization": f"Bearer {self.token}"},
                                                 heartbeat=None, max_msg_size=0)
            await self.ws.send_json({"type": "join"})
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                kind = data.get("type")
                if kind == "welcome":
                    self.joined.set()
                elif kind == "floor":
                    holder = data["holder"]["point_id"] if data["holder"] else None
                    self.floor_seen.setdefault(str(holder), time.monotonic())
                elif kind == "error":
                    self.errors += 1
        except (aiohttp.ClientError, OSError):
            self.errors += 1
            self.joined.set()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def run(args: argparse.Namespace) -> dict[str, object]:
    tokens = json.loads(open(args.tokens).read())
    url = f"{args.url}/ws/sessions/{args.session}"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        host = Endpoint(http, url, tokens["speaker"])
        hall = Endpoint(http, url, tokens["hall"])
        for special in (host, hall):
            special.task = asyncio.ensure_future(special.run())
            await asyncio.wait_for(special.joined.wait(), 10)

        # A join storm: the first `storm` endpoints within `storm_seconds`, evenly spread.
        endpoints = [Endpoint(http, url, tokens["members"][i % len(tokens["members"])]) for i in range(args.endpoints)]
        storm = endpoints[: args.storm]
        started = time.monotonic()
        join_times: list[float] = []

        async def join(endpoint: Endpoint, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            begun = time.monotonic()
            endpoint.task = asyncio.ensure_future(endpoint.run())
            try:
                await asyncio.wait_for(endpoint.joined.wait(), 30)
                join_times.append(time.monotonic() - begun)
            except TimeoutError:
                endpoint.errors += 1

        await asyncio.gather(*(join(e, started + i * args.storm_seconds / max(1, len(storm)))
                               for i, e in enumerate(storm)))
        storm_elapsed = time.monotonic() - started
        storm_errors = sum(e.errors for e in storm)
        storm_join = list(join_times)

        # The rest as fast as the server takes them, 100 at a time.
        rest = endpoints[args.storm:]
        for start in range(0, len(rest), 100):
            await asyncio.gather(*(join(e, 0) for e in rest[start:start + 100]))
        connected = sum(1 for e in endpoints if e.joined.is_set() and e.ws is not None and not e.ws.closed)
        await asyncio.sleep(1)

        # Floor changes: grant the hall, take it back; time until each endpoint hears it.
        latencies: list[float] = []
        for change in range(args.changes):
            granting = change % 2 == 0
            expect = str(tokens["hall_point"]) if granting else "None"
            for e in endpoints:
                e.floor_seen.pop(expect, None)
            sent = time.monotonic()
            assert host.ws is not None
            if granting:
                await host.ws.send_json({"type": "grant_floor", "point_id": tokens["hall_point"]})
            else:
                await host.ws.send_json({"type": "revoke_floor"})
            deadline = sent + 10
            while time.monotonic() < deadline and not all(expect in e.floor_seen for e in endpoints):
                await asyncio.sleep(0.01)
            latencies.extend(e.floor_seen[expect] - sent for e in endpoints if expect in e.floor_seen)
            missed = sum(1 for e in endpoints if expect not in e.floor_seen)
            if missed:
                latencies.extend([float("inf")] * missed)
            await asyncio.sleep(0.5)

        for e in [host, hall, *endpoints]:
            if e.ws is not None:
                await e.ws.close()
            if e.task is not None:
                e.task.cancel()
    finite = [v for v in latencies if v != float("inf")]
    return {
        "endpoints": args.endpoints,
        "connected": connected,
        "storm": {"endpoints": len(storm), "seconds": round(storm_elapsed, 2), "errors": storm_errors,
                  "join_p50_ms": round(percentile(storm_join, 0.5) * 1000, 1),
                  "join_p99_ms": round(percentile(storm_join, 0.99) * 1000, 1)},
        "floor_changes": args.changes,
        "floor_missed": len(latencies) - len(finite),
        "floor_p50_ms": round(percentile(finite, 0.5) * 1000, 1),
        "floor_p99_ms": round(percentile(finite, 0.99) * 1000, 1),
        "floor_max_ms": round(max(finite) * 1000, 1) if finite else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--session", type=int, required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--storm", type=int, default=200)
    parser.add_argument("--storm-seconds", type=float, default=10)
    parser.add_argument("--changes", type=int, default=10)
    print(json.dumps(asyncio.run(run(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
