"""The test's handle on a hall agent (``tests/faults/hall_agent.py``) running in a network namespace."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any

from server.auth.tokens import issue_token
from tests.conftest import TEST_SECRET
from tests.media.browsers import Namespace
from tests.processes import ROOT


def token(user: Any) -> str:
    return issue_token(TEST_SECRET, user.id, user.token_version, 3600)


class Agent:
    """The hall agent's process and what it printed."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            with contextlib.suppress(json.JSONDecodeError):
                self.lines.append(json.loads(line))

    def events(self, kind: str, after: float = 0.0) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == kind and line["at"] >= after]

    def frames(self) -> int:
        counts = self.events("frames")
        return counts[-1]["frames"] if counts else 0

    async def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                await asyncio.wait_for(self.process.wait(), 5)
                break
            except TimeoutError:
                continue
        self._reader.cancel()


async def start_agent(ns: Namespace, url: str, session_id: int, bearer: str) -> Agent:
    """The hall's screen in ``ns``, joined to the session at ``url`` with ``bearer``."""
    process = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns.name, sys.executable, "-m", "tests.faults.hall_agent",
        "--url", url, "--session", str(session_id), "--token", bearer,
        "--addresses", f"{ns.address},{ns.host_address}", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        start_new_session=True)
    return Agent(process)
