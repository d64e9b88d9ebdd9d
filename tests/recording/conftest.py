from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from tests.conftest import Seed, make_settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Media in tests goes to 127.0.0.1 only; the MP4 job runs only where a test asks for it.
    return make_settings(settings.data_dir, ice={"addresses": "127.0.0.1"}, recordings={"mp4": False})


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, seed: Seed) -> TestClient:
    app: web.Application = create_app(settings)
    return await aiohttp_client(app)
