"""What the benchmarks share: a demo server on its own core, tokens, process accounting, the results doc."""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server.auth.tokens import issue_token
from server.config import ensure_jwt_secret, load_settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def py_spy() -> str:
    """py-spy for a profile on request (not a project dependency: `pip install py-spy` into the venv)."""
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, Linux {platform.release()}"


@dataclass
class Demo:
    env: dict[str, str]
    session_id: int
    secret: str
    users: dict[str, int]
    point_of: dict[str, int]

    def token(self, username: str) -> str:
        return issue_token(self.secret, self.users[username], 1, 3600, session_id=self.session_id)

    @property
    def members(self) -> list[str]:
        return sorted(name for name in self.users if re.fullmatch(r"[a-z-]+-\d\d", name))


def prepare(data_dir: Path, tree: Path = ROOT) -> Demo:
    """Migrate and load the demo into ``data_dir``; media stays on loopback.

    ``tree``: the checkout whose server does it (another commit's, to compare), this one by default.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGECAST_")}
    # Recordings stay in the run's folder, never in the checkout's recordings/.
    env.update({"BRIDGECAST_DATA_DIR": str(data_dir), "BRIDGECAST_ICE_ADDRESSES": "127.0.0.1",
                "BRIDGECAST_RECORDINGS_DIR": str(data_dir / "recordings"),
                # Benchmarks open hundreds of viewers and thousands of sockets with a few demo accounts.
                "BRIDGECAST_LIMITS_ENDPOINTS_PER_USER": "5000", "BRIDGECAST_LIMITS_ENDPOINTS_PER_SESSION": "5000",
                "BRIDGECAST_LIMITS_SOCKETS_PER_USER": "5000"})
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "server", *args], env=env, check=True, cwd=tree, capture_output=True, text=True).stdout
    run("db", "upgrade")
    session_id = int(re.search(r"Session id: (\d+)", run("demo")).group(1))  # type: ignore[union-attr]
    secret = ensure_jwt_secret(load_settings(environ=env))
    db = sqlite3.connect(data_dir / "bridgecast.db")
    users = dict(db.execute("SELECT username, id FROM users"))
    point_of = dict(db.execute("SELECT username, bridge_point_id FROM users WHERE bridge_point_id IS NOT NULL"))
    db.close()
    return Demo(env, session_id, secret, users, point_of)


@contextmanager
def serving(demo: Demo, command: list[str] | None = None, core: int = 0, *, env: dict[str, str] | None = None,
            log: Path | None = None, tree: Path = ROOT) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The server (``bridgecast serve`` unless told otherwise) pinned to ``core``; (process, base URL).

    ``env`` adds to (or overrides) the demo's environment; ``log`` receives the server's output;
    ``tree`` is the checkout it runs from (as in :func:`prepare`).
    """
    port = free_port()
    env = {**demo.env, **(env or {}), "BRIDGECAST_SERVER_PORT": str(port)}
    command = command or ["-m", "server", "serve"]
    command = [part.replace("{port}", str(port)) for part in command]
    output = log.open("w") if log is not None else subprocess.DEVNULL
    server = subprocess.Popen(["taskset", "-c", str(core), sys.executable, *command], env=env, cwd=tree,
                              stdout=output, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        if log is not None:
            output.close()  # type: ignore[union-attr]


def start_session(url: str, demo: Demo) -> None:
    request = urllib.request.Request(f"{url}/api/v1/sessions/{demo.session_id}/start", method="POST",
                                     headers={"Authorization": f"Bearer {demo.token('speaker')}"})
    urllib.request.urlopen(request).read()


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or add) one marked section of docs/benchmarks.md."""
    section = f"<!-- {name}:start -->\n{body}\n<!-- {name}:end -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if f"<!-- {name}:start -->" in text:
        text = re.sub(rf"<!-- {name}:start -->.*<!-- {name}:end -->", lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n" + section + "\n"
    DOC.write_text(text)
