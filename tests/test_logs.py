"""The server's log: lines an outsider can cause are throttled (issue 12, item 7: log flooding);
JSON or text with the ids a line is about, and never a secret (issue 13)."""

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from server import logs
from server.logs import Throttled


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_writes_a_few_lines_then_says_how_many_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    throttled = Throttled(logging.getLogger("flood"), interval=60, burst=3, clock=clock)
    with caplog.at_level(logging.INFO, logger="flood"):
        written = [throttled.warning("refused", "refused %s", n) for n in range(1000)]
        assert written.count(True) == 3 and len(caplog.records) == 3
        # Another key has its own allowance.
        assert throttled.warning("slow", "slow socket")
        clock.now = 61
        throttled.warning("refused", "refused again")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == ["refused 0", "refused 1", "refused 2"]
    assert messages[-2:] == ["997 more like the last 'refused' line were left out in 61 s", "refused again"]


def test_keys_are_bounded() -> None:
    throttled = Throttled(logging.getLogger("flood"), max_keys=10, clock=Clock())
    for n in range(1000):
        throttled.info(("user", n), "line")
    assert len(throttled._windows) <= 10


# Structured lines and secrets (issue 13) -------------------------------------------------------------

def _capture(format: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logs.configure(format, "DEBUG", stream)
    return logging.getLogger(f"capture.{format}"), stream


@pytest.fixture(autouse=False)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImV4cCI6MTc5NjMwMDAwMH0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize("line", [
    f"token {JWT} refused",
    "Authorization: Bearer abcdefghijklmnop",
    'body {"username": "speaker", "password": "correct horse battery"}',
    "form password=correct-horse&next=/",
    "offer a=ice-ufrag:Zx8q a=ice-pwd:correcthorsebatterystaple1",
    "turn_secret = 'shared-turn-secret'",
])
def test_secrets_never_reach_a_line(restore_logging: None, line: str) -> None:
    log, stream = _capture("json")
    log.warning("%s", line)
    text = stream.getvalue()
    for secret in (JWT, "abcdefghijklmnop", "correct horse battery", "correct-horse", "correcthorsebatterystaple1",
                   "Zx8q", "shared-turn-secret"):
        assert secret not in text, text
    assert "[redacted]" in text or "[token]" in text


def test_json_lines_carry_the_context_and_the_traceback(restore_logging: None) -> None:
    log, stream = _capture("json")
    with logs.bind(session=3, user=12):
        with logs.bind(endpoint="ab12"):
            try:
                raise ValueError(f"bad token {JWT}")
            except ValueError:
                log.exception("handling failed")
        log.info("outside the endpoint")
    log.info("outside everything")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["handling failed", "outside the endpoint", "outside everything"]
    assert (lines[0]["session"], lines[0]["user"], lines[0]["endpoint"]) == (3, 12, "ab12")
    assert "ValueError" in lines[0]["exception"] and JWT not in lines[0]["exception"]
    assert "endpoint" not in lines[1] and lines[1]["session"] == 3
    assert "session" not in lines[2] and lines[2]["level"] == "INFO"


def test_text_lines_name_the_context(restore_logging: None) -> None:
    log, stream = _capture("text")
    with logs.bind(session=5, user=9):
        log.warning("slow socket")
    assert stream.getvalue().rstrip().endswith("WARNING capture.text: slow socket [session=5 user=9]")


def test_a_rooms_tasks_log_as_the_session_not_as_the_request_that_opened_it(restore_logging: None) -> None:
    log, stream = _capture("json")

    async def main() -> None:
        with logs.bind(user=77, session=1):
            context = logs.fresh_context(session=1)
            task = asyncio.get_running_loop().create_task(asyncio.sleep(0), context=context)
            await task
            context.run(log.info, "room tick")
    asyncio.run(main())
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["session"] == 1 and "user" not in line
