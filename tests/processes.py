"""The server (``bridgecast serve``) or a relay (``bridgecast relay serve``) in a process of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``bridgecast serve`` in a process of its own, on the test's database."""

    def __init__(self, data_dir: Path, database_url: str, **environment: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "server.log"
        self.env = {**os.environ, "BRIDGECAST_DATA_DIR": str(data_dir), "BRIDGECAST_DATABASE_URL": database_url,
                    "BRIDGECAST_SERVER_PORT": str(self.port), "BRIDGECAST_AUTH_JWT_SECRET": TEST_SECRET,
                    "BRIDGECAST_ICE_ADDRESSES": "127.0.0.1", "BRIDGECAST_ATTENDANCE_HEARTBEAT_SECONDS": "1",
                    # Recordings stay in the test's folder, never in the checkout's recordings/.
                    "BRIDGECAST_RECORDINGS_DIR": str(data_dir / "recordings"),
                    **environment}
        self.process: subprocess.Popen[bytes] | None = None
        self.command = ["serve"]
        self.ready_path = "/readyz"

    async def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "server", *self.command], cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.process.poll() is None, self.log.read_text()[-2000:]
                try:
                    async with http.get(f"{self.url}{self.ready_path}") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the server did not start"
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class RelayProcess(ServerProcess):
    """``bridgecast relay serve`` in a process of its own: a relay of the hub at ``hub_url``.

    It has a data folder of its own and no database: everything it knows, it
    learns from the hub.
    """

    def __init__(self, data_dir: Path, hub_url: str, token: str, *, port: int | None = None,
                 **environment: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(data_dir, "sqlite+aiosqlite:///unused-by-a-relay.db", **environment)
        if port is not None:
            self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.env.pop("BRIDGECAST_AUTH_JWT_SECRET")  # a relay signs nothing
        self.command = ["relay", "serve", "--hub", hub_url, "--token", token, "--host", "127.0.0.1",
                        "--port", str(self.port)]
        self.ready_path = "/healthz"

    async def health(self) -> dict[str, object]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/healthz") as response:
            return await response.json()
