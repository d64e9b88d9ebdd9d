"""Fixtures of the fault tests: every server message a test client got must match its schema."""

from tests.signaling.helpers import server_messages_match_their_schemas  # noqa: F401  (autouse)
