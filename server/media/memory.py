"""Memory that closed peer connections held goes back, soon after they close.

Two things kept it (measured with bench/soak.py and heap dumps of the
server, issue 12):

* **Garbage cycles.** A closed ``RTCPeerConnection`` is a web of reference
  cycles (transports, senders, receivers, their tasks' callbacks), freed
  only by the cyclic collector's oldest generation, which CPython runs
  rarely once the heap is large: after a wave of leaves, the dead peer
  connections (with their packet histories) stayed for minutes. A full
  collection runs a few seconds after the last close of a burst.
  :func:`freeze_startup` moves what the server made at start (modules,
  classes, the app) out of the collector's sight first, so that collection
  walks only what the lecture made: a few milliseconds with fifty viewers.
* **glibc's arenas.** Native memory (OpenSSL's DTLS, libsrtp, PyAV's
  buffers) freed by the close stays in glibc's arenas at the high-water
  mark; ``malloc_trim`` hands the free pages back, in a worker thread.

Both run at most once per ``DELAY``: a storm of leaves costs one of each.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time

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
    """Ask for a collection and a trim shortly (call it when a peer connection closed)."""
    global _scheduled
    loop = asyncio.get_running_loop()
    if _scheduled is loop:
        return
    _scheduled = loop
    loop.call_later(DELAY, _run, loop)


def freeze_startup() -> None:
    """Keep what exists now (the server as started) out of every later collection."""
    gc.collect()
    gc.freeze()


def _run(loop: asyncio.AbstractEventLoop) -> None:
    global _scheduled
    _scheduled = None
    began = time.perf_counter()
    found = gc.collect()
    log.debug("collected %d objects of closed connections in %.1f ms", found, (time.perf_counter() - began) * 1000)
    if _TRIM is None:
        return
    try:
        loop.run_in_executor(None, _trim)
    except RuntimeError:  # the executor is shutting down with the loop
        pass


def _trim() -> None:
    try:
        _TRIM(0)  # type: ignore[operator]
    except Exception:  # noqa: BLE001 - a trim that fails changes nothing
        log.debug("malloc_trim failed", exc_info=True)
