"""The bridgecast command, run as a real process on a real SQLite file."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from server.auth.tokens import verify_token
from server.storage.demo import PROVINCES

SLUGS = ["hai-phong", "thai-nguyen", "tuyen-quang", "son-la", "ha-tinh", "dak-lak", "binh-dinh", "can-tho",
         "binh-duong"]


def bridgecast(data_dir: Path, *args: str, stdin: str = "", python: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m server ARGS`` on ``data_dir``; ``python=True``: ``python ARGS`` (a script that calls the CLI)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BRIDGECAST_")}
    env["BRIDGECAST_DATA_DIR"] = str(data_dir)
    command = [sys.executable, *args] if python else [sys.executable, "-m", "server", *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    upgraded = bridgecast(data_dir, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    first = bridgecast(data_dir, "demo")
    assert first.returncode == 0, first.stderr
    assert "191 accounts added" in first.stdout
    return data_dir


def test_demo_is_the_hub_and_the_nine_pilot_provinces(demo_dir: Path) -> None:
    assert [slug for _, _, slug in PROVINCES] == SLUGS
    listing = bridgecast(demo_dir, "sessions", "--json")
    assert listing.returncode == 0, listing.stderr
    sessions = json.loads(listing.stdout)
    assert len(sessions) == 1
    assert sessions[0]["status"] == "scheduled"
    assert len(sessions[0]["invited_point_ids"]) == 9
    assert set(sessions[0]) == {"id", "title", "status", "scheduled_start", "invited_point_ids"}


def test_demo_is_idempotent_and_prints_the_same_logins(demo_dir: Path) -> None:
    logins = json.loads((demo_dir / "demo-logins.json").read_text())
    assert stat.S_IMODE(os.stat(demo_dir / "demo-logins.json").st_mode) == 0o600
    again = bridgecast(demo_dir, "demo")
    assert again.returncode == 0
    assert "0 accounts added" in again.stdout
    assert logins["admin"] in again.stdout and logins["members"] in again.stdout
    sessions = json.loads(bridgecast(demo_dir, "sessions", "--json").stdout)
    assert len(sessions) == 1


def test_demo_logins_work_and_name_the_roles(demo_dir: Path) -> None:
    import asyncio

    from sqlalchemy import func, select

    from server.auth.passwords import verify_password
    from server.storage.db import Database
    from server.auth.roles import Role
    from server.storage.models import User

    logins = json.loads((demo_dir / "demo-logins.json").read_text())

    async def load() -> dict[str, User]:
        database = Database(f"sqlite+aiosqlite:///{demo_dir / 'bridgecast.db'}")
        try:
            async with database.session() as db:
                users = {u.username: u for u in await db.scalars(select(User))}
                roles = dict((await db.execute(select(User.role, func.count()).group_by(User.role))).all())
        finally:
            await database.close()
        assert roles == {Role.ADMIN: 1, Role.SPEAKER: 1, Role.OPERATOR: 9, Role.MEMBER: 180}
        return users

    users = asyncio.run(load())
    assert verify_password(users["admin"].password_hash, logins["admin"])
    assert verify_password(users["speaker"].password_hash, logins["speaker"])
    for slug in SLUGS:
        assert users[f"op-{slug}"].role.value == "operator"
        assert users[f"op-{slug}"].bridge_point_id is not None
        assert f"{slug}-01" in users and f"{slug}-20" in users and f"{slug}-21" not in users
    assert verify_password(users["op-can-tho"].password_hash, logins["operators"])
    assert verify_password(users["binh-duong-20"].password_hash, logins["members"])
    assert not verify_password(users["binh-duong-20"].password_hash, logins["admin"])


def test_user_add_and_token(demo_dir: Path) -> None:
    added = bridgecast(demo_dir, "user", "add", "speaker-2", "--role", "speaker", "--full-name", "Báo cáo viên 2",
                       "--unit", "trung-uong", "--password-stdin", stdin="a long password\n")
    assert added.returncode == 0, added.stderr
    duplicate = bridgecast(demo_dir, "user", "add", "speaker-2", "--role", "speaker", "--full-name", "X",
                           "--password-stdin", stdin="a long password\n")
    assert duplicate.returncode != 0
    assert "taken" in duplicate.stderr
    weak = bridgecast(demo_dir, "user", "add", "speaker-3", "--role", "speaker", "--full-name", "X",
                      "--password-stdin", stdin="short\n")
    assert weak.returncode == 2
    operator = bridgecast(demo_dir, "user", "add", "op-2", "--role", "operator", "--full-name", "X",
                          "--point", "can-tho", "--password-stdin", stdin="a long password\n")
    assert operator.returncode == 0, operator.stderr

    session_id = json.loads(bridgecast(demo_dir, "sessions", "--json").stdout)[0]["id"]
    token = bridgecast(demo_dir, "token", "speaker", "--session", str(session_id), "--ttl", "120")
    assert token.returncode == 0, token.stderr
    secret = (demo_dir / "jwt-secret").read_text().strip()
    claims = verify_token(secret, token.stdout.strip())
    assert claims.session_id == session_id
    assert claims.expires_at - claims.issued_at == 120
    assert bridgecast(demo_dir, "token", "nobody").returncode == 1
    assert bridgecast(demo_dir, "token", "speaker", "--session", "999").returncode == 1


def test_configuration_errors_are_reported_not_raised(tmp_path: Path) -> None:
    result = bridgecast(tmp_path, "--config", str(tmp_path / "missing.toml"), "sessions")
    assert result.returncode == 2
    assert "configuration error" in result.stderr
    assert "Traceback" not in result.stderr


# bridgecast report --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory, password_hash: str) -> tuple[Path, int]:
    """A data folder holding the hand-computed attendance scenario (tests/attendance/scenario.py)."""
    import asyncio

    from server.storage.db import Database
    from tests.attendance.scenario import build
    from tests.conftest import seed_database

    data_dir = tmp_path_factory.mktemp("cli-report") / "data"
    assert bridgecast(data_dir, "db", "upgrade").returncode == 0

    async def fill() -> int:
        database = Database(f"sqlite+aiosqlite:///{data_dir / 'bridgecast.db'}")
        try:
            seed = await seed_database(database, password_hash)
            return (await build(database, seed, password_hash)).session_id
        finally:
            await database.close()

    return data_dir, asyncio.run(fill())


def test_report_csv_to_stdout(report_dir: tuple[Path, int]) -> None:
    import csv
    import io

    data_dir, session_id = report_dir
    result = subprocess.run([sys.executable, "-m", "server", "report", str(session_id), "--format", "csv", "--lang",
                             "en"], capture_output=True, env={**os.environ, "BRIDGECAST_DATA_DIR": str(data_dir)},
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(result.stdout.decode("utf-8-sig"))))
    assert rows[0][:10] == ["Username", "Full name", "Unit", "Bridge point", "Live seconds", "Replay seconds",
                            "Credited seconds", "Result", "Late (minutes)", "Left early (minutes)"]
    members = {r[0]: r for r in rows[1:11]}
    assert members["sv-early"][4:10] == ["2400", "0", "2400", "Partial", "0", "20"]
    assert members["sv-absent"][7] == "Absent"  # absent members are rows too
    assert any("80%" in r[0] for r in rows[11:] if r)


def test_report_xlsx_goes_to_a_file_or_a_pipe_never_a_terminal(report_dir: tuple[Path, int], tmp_path: Path) -> None:
    import io
    import pty

    import openpyxl

    data_dir, session_id = report_dir
    env = {key: value for key, value in os.environ.items() if not key.startswith("BRIDGECAST_")}
    env["BRIDGECAST_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-m", "server", "report", str(session_id), "--format", "xlsx"]
    # Onto a terminal: refused, with the way out.
    terminal, other_end = pty.openpty()
    try:
        refused = subprocess.run(command, stdout=other_end, stderr=subprocess.PIPE, env=env, timeout=120, check=False)
    finally:
        os.close(terminal)
        os.close(other_end)
    assert refused.returncode == 2 and b"--out" in refused.stderr
    # Into a pipe: the workbook itself.
    piped = subprocess.run(command, capture_output=True, env=env, timeout=120, check=False)
    assert piped.returncode == 0, piped.stderr
    assert openpyxl.load_workbook(io.BytesIO(piped.stdout)).worksheets[0].max_row == 11
    out = tmp_path / "report.xlsx"
    written = bridgecast(data_dir, "report", str(session_id), "--format", "xlsx", "--out", str(out))
    assert written.returncode == 0, written.stderr
    book = openpyxl.load_workbook(out)
    assert book.worksheets[0].max_row == 11 and book.sheetnames[1:] == ["Điểm cầu - Points", "Quy tắc - Rule"]
    assert book.worksheets[0]["A1"].value == "Tên đăng nhập"


@pytest.mark.parametrize(("args", "code", "message"), [
    (["999999"], 1, "session 999999 not found"),
    (["abc"], 2, "invalid int value"),
    (["1", "--format", "pdf"], 2, "invalid choice"),
    (["1", "--out", "/nonexistent-dir/x.csv"], 1, "cannot write"),
])
def test_report_refuses_bad_input(report_dir: tuple[Path, int], args: list[str], code: int, message: str) -> None:
    data_dir, _ = report_dir
    result = bridgecast(data_dir, "report", *args)
    assert result.returncode == code and message in result.stderr
