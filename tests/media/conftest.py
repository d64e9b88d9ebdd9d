"""Fixtures of the media tests."""

import pytest

from server.media.peer import LOOPBACK, IceConfig
from server.media.room import MediaRoom


@pytest.fixture
async def room():  # type: ignore[no-untyped-def]
    """A media room on loopback, closed after the test."""
    media = MediaRoom(IceConfig(addresses=LOOPBACK))
    yield media
    await media.close()
