"""docs/protocol.md names exactly the message types the code speaks, both ways."""

from __future__ import annotations

import re
from pathlib import Path

from server.signaling.messages import CLIENT_MESSAGES
from server.signaling.outgoing import SERVER_MESSAGES

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def documented(section: str) -> set[str]:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {section}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"docs/protocol.md has no '## {section}' section"
    names: set[str] = set()
    for heading in re.findall(r"^### (.+)$", match.group(1), re.M):
        names.update(part.strip() for part in heading.split("/"))
    return names


def test_client_messages_are_documented_and_nothing_else() -> None:
    assert documented("Client to server") == set(CLIENT_MESSAGES)


def test_server_messages_are_documented_and_nothing_else() -> None:
    assert documented("Server to client") == set(SERVER_MESSAGES)


def test_every_documented_example_parses_as_its_type() -> None:
    import json

    from tests.signaling.helpers import check_server_message

    text = DOC.read_text(encoding="utf-8")
    server_part = re.search(r"^## Server to client\n(.*?)(?=^## )", text, re.S | re.M)
    assert server_part
    examples = re.findall(r"```json\n(.*?)```", server_part.group(1), re.S)
    checked = 0
    for block in examples:
        # A block holds one message per line, or one message over several lines.
        candidates = [line for line in block.splitlines() if line.startswith("{") and line.endswith("}")]
        bodies = [json.loads(line) for line in candidates] if candidates else [json.loads(block)]
        for body in bodies:
            check_server_message(body)
            checked += 1
    assert checked >= len(SERVER_MESSAGES) - 1
