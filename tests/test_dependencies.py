"""Dependencies point inward (docs/architecture.md): checked on the source, so a shortcut fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parent.parent / "server"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    return sorted((SERVER / package).rglob("*.py"))


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(name for name in imports(path) if name.split(".")[0] in forbidden or name in forbidden
                     or any(name.startswith(prefix + ".") for prefix in forbidden))
        if bad:
            found[str(path.relative_to(SERVER))] = bad
    return found


@pytest.mark.parametrize(("package", "forbidden"), [
    # The live domain is pure: no web framework, no WebRTC, no database.
    ("live", ("aiohttp", "aiortc", "aioice", "av", "sqlalchemy", "server.storage", "server.views",
              "server.media", "server.signaling")),
    # Authentication does not reach into storage (Role lives in server.auth.roles).
    ("auth", ("aiohttp", "aiortc", "sqlalchemy", "server.storage", "server.views")),
    # Attendance rules (intervals, the credit rule, check-in codes, spreadsheets) are pure: no web, no database.
    ("attendance", ("aiohttp", "aiortc", "aioice", "av", "sqlalchemy", "server.storage", "server.views",
                    "server.media", "server.signaling")),
    # The protocol layer sees media only through MediaRoom's plain interface.
    ("signaling", ("aiohttp", "aiortc", "aioice", "sqlalchemy", "server.storage", "server.views")),
    # The archive is a subscriber: it knows the bus and the program feed, never the web or the live room.
    ("recording", ("aiohttp", "aiortc", "aioice", "server.views", "server.signaling")),
    # A relay moves media and asks the hub: no database, no live room of its own.
    ("cascade", ("aiortc", "aioice", "sqlalchemy", "server.storage", "server.signaling")),
])
def test_packages_import_only_inward(package: str, forbidden: tuple[str, ...]) -> None:
    assert offending(modules(package), forbidden) == {}


def test_only_server_media_touches_webrtc() -> None:
    outside = [path for path in SERVER.rglob("*.py") if "media" not in path.relative_to(SERVER).parts]
    assert offending(outside, ("aiortc", "aioice")) == {}
