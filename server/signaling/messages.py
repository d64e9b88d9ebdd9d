"""The messages clients send, each validated by a schema (the same engine as the HTTP API).

Every message is a JSON object with a ``type``; docs/protocol.md has an
example of each.  Anything else gets an ``error`` message and the connection
stays open.
"""

from __future__ import annotations

import json
from typing import Any

from server.errors import ValidationFailed
from server.validation import Field, Schema

# A websocket frame larger than this closes the connection with 1009.
MAX_MESSAGE_BYTES = 256 * 1024
PEERS = ("publish", "view")

_PC = Field("pc", choices=PEERS, description="which of the client's peer connections")

CLIENT_MESSAGES: dict[str, Schema] = {
    "join": Schema("join", (Field("as", required=False, choices=("host", "hall", "member")),)),
    "offer": Schema("offer", (
        _PC, Field("sdp", max_length=200_000, text="raw"),
        # A view the relay it was sent to could not serve: the hub serves it (issue 14).
        Field("here", "boolean", required=False, default=False),
    )),
    "candidate": Schema("candidate", (
        _PC,
        Field("candidate", required=False, max_length=2000, default=""),
        Field("sdpMid", required=False, nullable=True, max_length=64),
        Field("sdpMLineIndex", "integer", required=False, nullable=True, minimum=0, maximum=64),
    )),
    "close_pc": Schema("close_pc", (_PC,)),
    "raise_hand": Schema("raise_hand", ()),
    "lower_hand": Schema("lower_hand", (Field("point_id", "integer", required=False, minimum=1),)),
    "grant_floor": Schema("grant_floor", (
        Field("point_id", "integer", minimum=1),
        Field("limit_seconds", "integer", required=False, nullable=True, minimum=10, maximum=3600),
    )),
    "revoke_floor": Schema("revoke_floor", ()),
    "show": Schema("show", (Field("source", choices=("floor", "speaker")),)),
    "mute": Schema("mute", (Field("point_id", "integer", minimum=1), Field("muted", "boolean"))),
    "remove": Schema("remove", (Field("key", max_length=64, pattern=r"(point|user):\d{1,12}"),)),
    "question": Schema("question", (Field("text", max_length=1000, text="lines"),)),
    # What a hall's browser decodes of the program (getStats), every few seconds, for the quality board.
    "stats": Schema("stats", (
        Field("frames_decoded", "integer", minimum=0, maximum=2**31 - 1),
        Field("freezes", "integer", minimum=0, maximum=10**6),
        Field("fps", "integer", required=False, nullable=True, minimum=0, maximum=240),
        Field("audio_level", "integer", required=False, nullable=True, minimum=0, maximum=100,
              description="percent of full scale"),
    )),
    "start": Schema("start", ()),
    "end": Schema("end", ()),
    "leave": Schema("leave", ()),
    # A browser's Date.now(), echoed back: milliseconds since 1970, far past the database's INTEGER.
    "ping": Schema("ping", (Field("t", "integer", required=False, minimum=0, maximum=2**53 - 1),)),
}


class ProtocolError(Exception):
    """A message the server refuses; sent back as ``{"type": "error", ...}``."""

    def __init__(self, code: str, message: str, details: Any = None, *, request: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        # The refused message's type, when it was known (an invalid message of a known type).
        self.request = request


def parse(raw: str) -> tuple[str, dict[str, Any]]:
    """Decode and validate one message: (type, values)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, nested too deep, a 5,000-digit number
        raise ProtocolError("invalid_json", "the message is not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_message", "a message is a JSON object")
    kind = data.pop("type", None)
    if not isinstance(kind, str):
        raise ProtocolError("invalid_message", "the message has no type")
    schema = CLIENT_MESSAGES.get(kind)
    if schema is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}")
    data.pop("id", None)  # a client may number its messages; errors echo it
    try:
        return kind, schema.parse(data)
    except ValidationFailed as exc:
        raise ProtocolError("invalid_message", f"invalid {kind} message", exc.errors, request=kind) from None


def error(code: str, message: str, *, request: str | None = None, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request:
        body["request"] = request
    if details:
        body["details"] = details
    return body
