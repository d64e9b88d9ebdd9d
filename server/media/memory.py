"""Native memory freed by closed peer connections goes back to the system.

A peer connection allocates in C (OpenSSL's DTLS, libsrtp, PyAV's buffers,
the socket's buffers); when it closes, glibc keeps the freed memory in its
arenas for reuse, so after a wave of joins and leaves the server's resident
size stays at its high-water mark (measured: about 22 MiB after 100 joins
and leaves, then flat; bench/soak.py). ``malloc_trim`` hands the free pages
back. It runs a few seconds after the last close of a burst, in a worker
thread, at most once per ``DELAY``: a storm of leaves costs one trim.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

DELAY = 5.0


def _malloc_trim() -> object:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None


_TRIM = _malloc_trim()
# The loop a trim is scheduled on (one at a time; a loop that closed first leaves nothing pending).
_scheduled: asyncio.AbstractEventLoop | None = None


def release_soon() -> None:
    """Ask for a trim shortly (call it when a peer connection closed)."""
    global _scheduled
    if _TRIM is None:
        return
    loop = asyncio.get_running_loop()
    if _scheduled is loop:
        return
    _scheduled = loop
    loop.call_later(DELAY, _run, loop)


def _run(loop: asyncio.AbstractEventLoop) -> None:
    global _scheduled
    _scheduled = None
    try:
        loop.run_in_executor(None, _trim)
    except RuntimeError:  # the executor is shutting down with the loop
        pass


def _trim() -> None:
    try:
        _TRIM(0)  # type: ignore[operator]
    except Exception:  # noqa: BLE001 - a trim that fails changes nothing
        log.debug("malloc_trim failed", exc_info=True)
