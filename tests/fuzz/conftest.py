"""Fixtures of the fuzzers: the app in-process on loopback media, a session to fuzz, and log problems."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from tests.conftest import Seed, make_settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Media in tests goes to 127.0.0.1 only; no MP4 job after a fuzzed session ends.
    return make_settings(settings.data_dir, ice={"addresses": "127.0.0.1"}, recordings={"mp4": False})


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, seed: Seed) -> TestClient:
    app: web.Application = create_app(settings)
    return await aiohttp_client(app)


def problems(records: list[logging.LogRecord]) -> list[str]:
    """Log records no input may cause: ERROR and worse, and anything carrying a traceback."""
    found = []
    for record in records:
        message = record.getMessage()
        if record.levelno >= logging.ERROR or record.exc_info or "Traceback" in message:
            text = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
            found.append(f"[{record.levelname} {record.name}] {message}\n{text}".rstrip())
    return found


@pytest.fixture
def log_problems(caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
    """``log_problems(since)``: the problems logged from record index ``since`` on (see ``problems``)."""
    def since(mark: int = 0) -> list[str]:
        return problems(caplog.records[mark:])

    since.mark = lambda: len(caplog.records)  # type: ignore[attr-defined]
    yield since
