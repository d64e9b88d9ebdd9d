"""Refusals of the live domain: each has a stable ``code`` that clients receive."""

from __future__ import annotations


class LiveError(Exception):
    """An operation the live session refuses.

    Codes used by :class:`server.live.session.LiveSession`: ``session_closed``,
    ``removed``, ``already_joined``, ``not_connected`` (the floor goes only to a
    connected hall), ``invalid_target``, ``unknown_participant``,
    ``invalid_message``. Floor and roster refusals are subclasses with codes
    of their own.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
