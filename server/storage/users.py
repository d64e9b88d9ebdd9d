"""User accounts: creation, changes that revoke tokens, and the members CSV import."""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass, field
from typing import Any

from datetime import UTC, datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.passwords import hash_password_async
from server.errors import Conflict, NotFound, ValidationFailed
from server.schemas import MEMBER_ROW
from server.auth.roles import Role
from server.storage.models import BridgePoint, RevokedToken, Unit, User

# Each row costs one Argon2 hash (~110 ms of a core here): a file of this many
# rows takes about a minute on two cores; bigger lists are split into files.
MAX_IMPORT_ROWS = 1_000


async def get_user(db: AsyncSession, user_id: int) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def user_by_username(db: AsyncSession, username: str) -> User | None:
    return await db.scalar(select(User).where(User.username == username.strip().lower()))


async def list_users(
    db: AsyncSession,
    *,
    role: Role | None = None,
    unit_id: int | None = None,
    search: str = "",
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[User], int]:
    """A page of users and the total that match."""
    query = select(User)
    if role is not None:
        query = query.where(User.role == role)
    if unit_id is not None:
        query = query.where(User.unit_id == unit_id)
    if search:
        # The words are searched for as written: % and _ are LIKE's wildcards, escaped here.
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        query = query.where(or_(func.lower(User.username).like(pattern, escape="\\"),
                                func.lower(User.full_name).like(pattern, escape="\\")))
    total = await db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await db.scalars(query.order_by(User.role, User.username).offset(offset).limit(limit))
    return list(rows), total


async def _check_refs(db: AsyncSession, role: Role, unit_id: int | None, point_id: int | None) -> None:
    if unit_id is not None and await db.get(Unit, unit_id) is None:
        raise ValidationFailed.one("unit_id", "unknown_unit", "no such unit")
    if point_id is not None and await db.get(BridgePoint, point_id) is None:
        raise ValidationFailed.one("bridge_point_id", "unknown_point", "no such bridge point")
    if role is Role.OPERATOR and point_id is None:
        raise ValidationFailed.one("bridge_point_id", "required", "an operator runs a bridge point: choose one")


async def create_user(db: AsyncSession, data: dict[str, Any]) -> User:
    values = dict(data)
    values["username"] = values["username"].lower()
    role = values["role"] = Role(values["role"])
    if role is not Role.OPERATOR:
        values["bridge_point_id"] = None
    await _check_refs(db, role, values.get("unit_id"), values.get("bridge_point_id"))
    if await user_by_username(db, values["username"]) is not None:
        raise Conflict(f"username {values['username']!r} is taken", code="username_taken")
    values["password_hash"] = await hash_password_async(values.pop("password"))
    user = User(**values)
    db.add(user)
    await db.flush()
    return user


async def update_user(db: AsyncSession, user_id: int, data: dict[str, Any]) -> User:
    """Apply an administrator's change; a new password or deactivation revokes tokens."""
    user = await get_user(db, user_id)
    values = dict(data)
    role = Role(values.get("role", user.role))
    if "role" in values:
        values["role"] = role
    if role is not Role.OPERATOR:
        values["bridge_point_id"] = None
    await _check_refs(
        db, role, values.get("unit_id", user.unit_id), values.get("bridge_point_id", user.bridge_point_id)
    )
    revoke = False
    password = values.pop("password", None)
    if password:
        user.password_hash = await hash_password_async(password)
        revoke = True
    if values.get("active") is False and user.active:
        revoke = True
    if "role" in values and values["role"] is not user.role:
        # A token states no role, but a role change should still end old sessions.
        revoke = True
    for key, value in values.items():
        setattr(user, key, value)
    if revoke:
        user.token_version += 1
    await db.flush()
    return user


async def change_password(db: AsyncSession, user: User, password_hash: str) -> None:
    """Store a new password (hashed by the caller, outside any database session) and revoke every token."""
    user.password_hash = password_hash
    user.token_version += 1
    await db.flush()


async def revoke_token(db: AsyncSession, token_id: str, user_id: int, expires_at: int) -> None:
    """Put one token on the revocation list until it expires (a sign-out); forget the ones expired."""
    now = datetime.now(UTC)
    await db.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
    if await db.get(RevokedToken, token_id) is None:
        # A minute past the expiry: token checks allow ten seconds of clock leeway.
        db.add(RevokedToken(token_id=token_id, user_id=user_id,
                            expires_at=datetime.fromtimestamp(expires_at + 60, UTC)))
    await db.flush()


async def count_admins(db: AsyncSession) -> int:
    query = select(func.count()).select_from(User).where(User.role == Role.ADMIN, User.active.is_(True))
    return await db.scalar(query) or 0


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    # (line number in the file, field, code, message)
    errors: list[tuple[int, str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def read_members_csv(raw: bytes) -> tuple[list[tuple[int, dict[str, str]]], list[tuple[int, str, str, str]]]:
    """Decode the file and split it into (line, row) pairs, or file-level errors."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [(0, "", "not_utf8", "the file must be UTF-8 encoded CSV")]
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [name.strip().lower() for name in (reader.fieldnames or [])]
    expected = {f.name for f in MEMBER_ROW.fields}
    missing = sorted(name for name in expected if name not in header and name != "email")
    if missing:
        return [], [(1, ",".join(missing), "missing_columns", "missing columns: " + ", ".join(missing))]
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for row in reader:
            if len(rows) >= MAX_IMPORT_ROWS:
                return [], [(reader.line_num, "", "too_many_rows", f"at most {MAX_IMPORT_ROWS} rows per file")]
            cleaned = {key: (value or "") for key, value in row.items() if key in expected}
            if None in row:
                return [], [(reader.line_num, "", "extra_values", "a row has more values than the header")]
            if any(value.strip() for value in cleaned.values()):
                rows.append((reader.line_num, cleaned))
    except csv.Error as exc:
        return [], [(reader.line_num, "", "malformed_csv", str(exc))]
    return rows, []


async def import_members(db: AsyncSession, raw: bytes) -> ImportReport:
    """Create member accounts from a CSV file, all or nothing.

    Columns: username, full_name, email (optional), unit (slug), password.
    Every row is checked before anything is written; any error leaves the
    database unchanged and the report lists each bad row with its line.
    """
    report = ImportReport()
    rows, problems = read_members_csv(raw)
    report.errors.extend(problems)
    if problems:
        return report
    if not rows:
        report.errors.append((0, "", "empty", "the file has no rows"))
        return report
    units = {unit.slug: unit.id for unit in await db.scalars(select(Unit))}
    existing = set(await db.scalars(select(User.username)))
    seen: dict[str, int] = {}
    accepted: list[dict[str, Any]] = []
    for line, row in rows:
        # Spreadsheets capitalise freely; usernames are lowercase.
        row["username"] = row.get("username", "").strip().lower()
        try:
            values = MEMBER_ROW.parse(row, forms=True)
        except ValidationFailed as exc:
            report.errors.extend((line, e["field"], e["code"], e["message"]) for e in exc.errors)
            continue
        username = values["username"].lower()
        if username in existing:
            report.errors.append((line, "username", "taken", f"username {username!r} already exists"))
        elif username in seen:
            report.errors.append((line, "username", "duplicate", f"username {username!r} repeats line {seen[username]}"))
        elif values["unit"] not in units:
            report.errors.append((line, "unit", "unknown_unit", f"no unit with slug {values['unit']!r}"))
        else:
            seen[username] = line
            accepted.append({**values, "username": username})
    if report.errors:
        return report
    # Two hashes at a time: the import uses both cores but leaves the default
    # executor free for logins.
    gate = asyncio.Semaphore(2)

    async def hashed(password: str) -> str:
        async with gate:
            return await hash_password_async(password)

    hashes = await asyncio.gather(*(hashed(values["password"]) for values in accepted))
    for values, password_hash in zip(accepted, hashes, strict=True):
        db.add(
            User(
                username=values["username"],
                full_name=values["full_name"],
                email=values.get("email") or "",
                role=Role.MEMBER,
                unit_id=units[values["unit"]],
                password_hash=password_hash,
            )
        )
        report.created.append(values["username"])
    await db.flush()
    return report
