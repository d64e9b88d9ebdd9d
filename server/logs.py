"""The server's log: one line per event, who it is about, no secret, and no flood.

* **Context.** :func:`bind` puts the session, endpoint and user ids a piece
  of work is about in a context variable; every line logged under it
  carries them (asyncio tasks inherit it), in text as ``[session=3 user=12]``
  and in JSON as fields. :func:`fresh_context` gives a room's own tasks a
  context of their own, not that of whoever opened the room.
* **Format.** ``[logging] format``: ``text`` (default) or ``json`` (one
  object per line: time, level, logger, message, the context ids, and the
  exception's traceback as one string).
* **Secrets.** :class:`Redactor`, on every handler, replaces bearer tokens,
  JWTs, ``password``/``token``/``secret`` values, SDP ``ice-pwd`` and
  ``ice-ufrag`` and TURN credentials in any line before it is written:
  nothing the code logs by mistake (or a library at DEBUG) leaks them.
* **Floods.** Lines that outsiders can cause are throttled: a refused
  message, an offer that never connects, a socket too slow to keep up, a
  request while the database is away: each is worth one line, but a script
  can cause thousands a second, filling the disk and burying what matters.
  :class:`Throttled` writes the first few per key and interval, then one
  line saying how many like them were left out.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

# The ids a line is about: session, endpoint, user (any of them may be missing).
_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("bridgecast_log_context", default={})
CONTEXT_FIELDS = ("session", "endpoint", "user")


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Lines logged inside (and in tasks started inside) carry these ids."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def fresh_context(**fields: Any) -> contextvars.Context:
    """A context holding only ``fields``: for tasks that belong to a room, not to the request that made it."""
    context = contextvars.Context()
    context.run(_CONTEXT.set, {k: v for k, v in fields.items() if v is not None})
    return context


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.bc_context = _CONTEXT.get()
        return True


# What must never reach a log line, whatever logged it.
_SECRETS = [
    # A JWT (ours are HS256: header.payload.signature, base64url).
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "[token]"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [redacted]"),
    (re.compile(r"(?i)\b(a=ice-pwd|a=ice-ufrag):\S+"), r"\1:[redacted]"),
    (re.compile(r"""(?i)(["']?\b(?:password|passwd|new_password|current_password|token|access_token|secret|"""
                r"""jwt_secret|turn_secret|credential|authorization|cookie)\b["']?\s*[:=]\s*)"""
                r"""(?:"[^"]*"|'[^']*'|[^\s,;&}]+)"""), r"\1[redacted]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class Redactor(logging.Filter):
    """Scrubs secrets out of the message (with its arguments) and the traceback of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep what can be shown
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info))
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "bc_context", None) or {}
        ids = " ".join(f"{k}={context[k]}" for k in CONTEXT_FIELDS if k in context)
        if not ids:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [{ids}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        body.update(getattr(record, "bc_context", None) or {})
        if record.exc_text or record.exc_info:
            body["exception"] = record.exc_text or "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(body, ensure_ascii=False, default=str)


def configure(format: str = "text", level: str = "INFO", stream: Any = None) -> None:
    """The process's logging: one handler on the root logger, with context and redaction."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(Redactor())
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


class Throttled:
    """At most ``burst`` lines per key each ``interval`` seconds; the rest are counted and summarised."""

    def __init__(self, logger: logging.Logger, *, interval: float = 60.0, burst: int = 5, max_keys: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        # key -> [window start, lines written, lines left out]
        self._windows: dict[Hashable, list[float]] = {}

    def log(self, level: int, key: Hashable, message: str, *args: object) -> bool:
        """Write the line unless its key is over the limit; True if written."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.interval:
            if window is not None and window[2]:
                self.logger.log(level, "%d more like the last %s line were left out in %.0f s", int(window[2]),
                                _name(key), now - window[0])
            if window is None and len(self._windows) >= self.max_keys:
                self._windows.pop(next(iter(self._windows)))
            window = self._windows[key] = [now, 0, 0]
        if window[1] >= self.burst:
            window[2] += 1
            return False
        window[1] += 1
        self.logger.log(level, message, *args)
        return True

    def warning(self, key: Hashable, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)

    def info(self, key: Hashable, message: str, *args: object) -> bool:
        return self.log(logging.INFO, key, message, *args)


def _name(key: Hashable) -> str:
    return repr(key[0]) if isinstance(key, tuple) and key else repr(key)


def quiet_media_libraries() -> None:
    """aioice and aiortc log every check and state change at INFO: per peer connection, dozens of lines."""
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(logging.WARNING)
