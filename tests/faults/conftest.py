"""Fixtures of the fault tests: every server message a test client got must match its schema."""

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def server_messages_match_their_schemas() -> Iterator[None]:
    from tests.signaling.helpers import OPENED

    OPENED.clear()
    yield
    invalid = [problem for live in OPENED for problem in live.invalid]
    OPENED.clear()
    assert not invalid, invalid[:3]
