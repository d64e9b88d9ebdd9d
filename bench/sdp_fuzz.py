"""The SDP and ICE-candidate fuzzer for as long as asked (issue 12): what tests/fuzz/test_sdp_fuzz.py does, longer.

    python -m bench.sdp_fuzz --minutes 60 [--seed 12] [--json FILE]

The application runs in this process on 127.0.0.1 (a free port), with a
fresh SQLite database in a temporary folder, the test accounts
(tests/conftest.py) and one scheduled session inviting two halls; media on
loopback only (``ice.addresses = 127.0.0.1``), the default limits (6 peer
connections per user: every resource is deleted after its case, so a 429 is
a leaked quota ticket). The websocket's rate limit is lifted, as in the
tests, so that the socket's cases reach the offer and candidate handlers.

The cases (tests/fuzz/campaign.py, mutations from tests/fuzz/mutations.py)
take turns: WHEP and WHIP offers mutated, trickle PATCHes, the socket's
``offer`` and ``candidate`` messages, and real clients connecting with
altered DTLS/ICE attributes. Every 30 s a progress line (JSON); at the end
the cases run, responses by status, server errors (5xx responses and
``internal_error`` replies), what the server logged at ERROR or with a
traceback, the endpoints, resources, quota tickets and UDP sockets left, and
the failures grouped by what went wrong with example cases. The same goes
to bench/results/sdp-fuzz-<time>.json (or ``--json FILE``). Exit status 1
when anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, machine


async def fuzz(minutes: float, seed: int) -> dict[str, Any]:
    import aiohttp
    from aiohttp import web

    from server import keys
    from server.app import create_app
    from server.auth.passwords import hash_password
    from server.signaling.connections import Members
    from server.storage.db import upgrade
    from tests.conftest import TEST_PASSWORD, make_settings, seed_database
    from tests.fuzz.campaign import Campaign, Http
    from tests.fuzz.harness import ServerErrors
    from tests.fuzz.mutations import real_offers
    from tests.signaling.helpers import add_session

    errors = ServerErrors()
    root = logging.getLogger()
    root.addHandler(errors)
    root.setLevel(logging.WARNING)
    # The socket cases are 2-4 messages each; the limiter would answer rate_limited to most of them.
    Members.allow = lambda self, connection_id: True  # type: ignore[method-assign]

    with tempfile.TemporaryDirectory(prefix="sdp-fuzz-") as folder:
        data_dir = Path(folder) / "data"
        data_dir.mkdir()
        await asyncio.to_thread(upgrade, f"sqlite+aiosqlite:///{data_dir / 'bridgecast.db'}")
        settings = make_settings(data_dir, ice={"addresses": "127.0.0.1"}, recordings={"mp4": False})
        app = create_app(settings)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        try:
            seed_data = await seed_database(app[keys.DATABASE], await asyncio.to_thread(hash_password, TEST_PASSWORD))
            session_id = await add_session(app[keys.DATABASE], seed_data,
                                           [seed_data.point_a.id, seed_data.point_b.id])
            offers = await real_offers()
            await asyncio.sleep(0.5)
            seen = {"at": 0}

            def new_problems() -> list[str]:
                found = errors.since(seen["at"])
                seen["at"] += len(found)
                return [str(problem) for problem in found]

            users = {"member": seed_data.member, "operator": seed_data.operator, "admin": seed_data.admin,
                     "speaker": seed_data.speaker}
            started = time.monotonic()

            def progress(campaign: Campaign) -> None:
                totals = campaign.totals
                print(json.dumps({"elapsed_s": round(time.monotonic() - started), **totals.as_dict(),
                                  "endpoints_now": sum(len(r.media.endpoints()) for r in app[keys.LIVE].rooms.values())}),
                      flush=True)

            async with aiohttp.ClientSession() as session:
                campaign = Campaign(app, Http(session, f"http://127.0.0.1:{port}"), session_id, users, offers,
                                    new_problems, seed=seed)
                try:
                    await campaign.run_for(minutes * 60, report=progress)
                finally:
                    left = await campaign.finish()
            elapsed = time.monotonic() - started
        finally:
            await runner.cleanup()
            root.removeHandler(errors)
    totals = campaign.totals
    return {"machine": machine(), "seed": seed, "minutes": minutes, "elapsed_s": round(elapsed, 1),
            "cases_per_second": round(sum(totals.cases.values()) / max(elapsed, 1e-9), 1),
            **totals.as_dict(), "server_logged": len(errors.problems), "left": left,
            "failures_by_problem": totals.grouped()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=12, help="the mutations' seed (the same seed, the same cases)")
    parser.add_argument("--json", help="write the results here (default: bench/results/sdp-fuzz-<time>.json)")
    args = parser.parse_args()
    result = asyncio.run(fuzz(args.minutes, args.seed))
    if args.json:
        path = Path(args.json)
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"sdp-fuzz-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"\n{result['total_cases']} cases in {result['elapsed_s']} s ({result['cases_per_second']}/s), seed "
          f"{result['seed']}")
    print("cases:", ", ".join(f"{kind} {count}" for kind, count in sorted(result["cases"].items())))
    print("responses:", ", ".join(f"{status}: {count}" for status, count in result["statuses"].items()))
    print(f"server errors (5xx, internal_error): {result['server_errors']}; logged at ERROR or with a traceback: "
          f"{result['server_logged']}")
    print("left behind:", json.dumps(result["left"]))
    for group in result["failures_by_problem"][:12]:
        print(f"\n{group['count']} x {group['problem']}")
        for case in group["cases"]:
            print(f"    - {case}")
        for frame in group["server_frames"]:
            print(f"      {frame}")
    print(f"\nresults: {path}")
    sys.exit(1 if result["failures"] else 0)


if __name__ == "__main__":
    main()
