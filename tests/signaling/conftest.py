from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from tests.conftest import Seed, make_settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Media in tests goes to 127.0.0.1 only.
    return make_settings(settings.data_dir, ice={"addresses": "127.0.0.1"})


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, seed: Seed) -> TestClient:
    app: web.Application = create_app(settings)
    return await aiohttp_client(app)


# Every message a test client received matches its schema (autouse).
from tests.signaling.helpers import server_messages_match_their_schemas  # noqa: E402,F401
