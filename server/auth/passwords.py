"""Password hashing with Argon2id (argon2-cffi's current recommended parameters)."""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

MIN_LENGTH = 8
MAX_LENGTH = 256

@functools.cache
def _dummy_hash() -> str:
    # Verified when the account is unknown, so that a login for a missing user
    # costs as much as one for a real user and does not reveal which exist.
    return _hasher.hash("bridgecast-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing hash still costs one verify."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return "password_too_short"
    if len(password) > MAX_LENGTH:
        return "password_too_long"
    return None


# Argon2 costs tens of milliseconds of CPU on purpose: never on the event loop,
# where it would stall every live session's media.
async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password, password_hash, password)


class Busy(Exception):
    """More password checks are waiting than the server takes: try again in a moment."""


class PasswordChecks:
    """Argon2 work bounded: ``slots`` hashes at once (one per core), ``waiting`` more queued, beyond that Busy.

    Without a bound, two hundred concurrent sign-ins put two hundred hashes in
    the thread pool: both cores saturate, every live room's media and
    signalling stalls behind them, and the database pool runs dry.
    """

    def __init__(self, slots: int | None = None, waiting: int = 32) -> None:
        self.slots = slots or max(1, (os.cpu_count() or 1))
        self.waiting = waiting
        self._semaphore = asyncio.Semaphore(self.slots)
        self._queued = 0
        self._running = 0
        # For the metrics: checks refused as busy, done, the most that ran at once and that were let in at once.
        self.refused = 0
        self.done = 0
        self.peak = 0
        self.peak_queued = 0

    async def _run(self, function: Any, *args: Any) -> Any:
        if self._queued >= self.slots + self.waiting:
            self.refused += 1
            raise Busy("too many sign-ins at once")
        self._queued += 1
        self.peak_queued = max(self.peak_queued, self._queued)
        try:
            async with self._semaphore:
                self._running += 1
                self.peak = max(self.peak, self._running)
                try:
                    return await asyncio.to_thread(function, *args)
                finally:
                    self._running -= 1
                    self.done += 1
        finally:
            self._queued -= 1

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return bool(await self._run(verify_password, password_hash, password))

    async def hash(self, password: str) -> str:
        return str(await self._run(hash_password, password))
