"""The attendance tests' shared set-up: the hand-computed scenario behind a real application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.storage.db import Database
from tests.attendance.scenario import Scenario, build
from tests.conftest import Seed, make_settings, seed_database


@pytest.fixture
async def env(aiohttp_client: Any, database: Database, password_hash: str,
              tmp_path: Path) -> tuple[TestClient, Seed, Scenario]:
    seed = await seed_database(database, password_hash)
    scenario = await build(database, seed, password_hash)
    data_dir = tmp_path / "app"
    data_dir.mkdir()
    client = await aiohttp_client(create_app(make_settings(data_dir, database_url=database.url)))
    return client, seed, scenario
