"""A database that is away is a 503 with Retry-After; a bug in a query stays a 500 with its traceback."""

from __future__ import annotations

import socket
import sqlite3

import pytest
from sqlalchemy import exc as sa_exc

from server.storage.db import database_unavailable


def _operational(message: str) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize(("error", "away"), [
    (_operational("database is locked"), True),
    (_operational("unable to open database file"), True),
    (_operational("no such table: sessions"), False),  # a migration missing: a bug, not an outage
    (_operational('near "SELEC": syntax error'), False),
    (sa_exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")), True),
    (sa_exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")), False),
    (sa_exc.TimeoutError("QueuePool limit reached"), True),
    (ConnectionRefusedError(111, "Connection refused"), True),
    (socket.gaierror(-2, "Name or service not known"), True),
    (FileNotFoundError(2, "No such file"), False),
    (ValueError("a bug"), False),
])
def test_what_counts_as_the_database_being_away(error: BaseException, away: bool) -> None:
    assert database_unavailable(error) is away
