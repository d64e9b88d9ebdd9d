"""The recordings' files are served from inside the archive only, whatever the URL or the stored path says
(issue 12, "Access").

Two ways a path could lead elsewhere, each tried with ``../``, percent-encoded
and double-encoded dots and slashes, absolute paths, backslashes, NUL bytes,
overlong forms and names the filesystem refuses:

* the URL itself (sent byte for byte over a socket, so no client library
  normalises it first): only ``/recordings/{id}/...`` routes reach a file,
  by id;
* the path stored in a recording's row (``file``, ``mp4_file``,
  ``poster_file``), as if the catalogue had been tampered with, and files
  planted in a recording's folder: symlinks out of the archive, a symlinked
  folder, a folder, a FIFO (which would block a reader for ever).

Never served (404, or 400 for a request the HTTP parser refuses), never a
500, and the bytes of the file outside never in the answer. Deleting a
recording with such paths removes nothing outside the archive.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from server.storage.models import Recording, RecordingPart
from tests.security.conftest import World

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = b"TOP-SECRET-OUTSIDE-THE-ARCHIVE"
WEBM_MAGIC = b"\x1a\x45\xdf\xa3"
FILE_ROUTES = {"file.webm": "file", "file.mkv": "file", "file.mp4": "mp4_file", "poster.jpg": "poster_file"}


async def raw_get(world: World, target: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """A GET with the request target exactly as given: no client normalises ``..`` or re-encodes anything."""
    server = world.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        lines = [b"GET " + target + b" HTTP/1.1", f"Host: {server.host}:{server.port}".encode(), b"Connection: close"]
        lines += [f"{name}: {value}".encode() for name, value in headers.items()]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A secret file (and a folder holding one) outside the archive, next to it."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.txt").write_bytes(SECRET)
    (folder / "inner").mkdir()
    (folder / "inner" / "part-1.webm").write_bytes(SECRET)
    return folder


# ``{r}``: the recording's id, ``{s}``: its session's id (the folder its files are in).
URL_ATTACKS = [
    b"/recordings/{r}/../../../../../../etc/passwd",
    b"/recordings/{r}/file.webm/../../../../../etc/passwd",
    b"/recordings/{r}/..%2f..%2f..%2f..%2fetc%2fpasswd",
    b"/recordings/{r}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/recordings/{r}/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"/recordings/{r}/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    b"/recordings/{r}/%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afetc%c0%afpasswd",
    b"/recordings/{r}\\..\\..\\..\\etc\\passwd",
    b"/recordings/{r}/..%5c..%5c..%5cetc%5cpasswd",
    b"/recordings/{r}/file.webm%00.txt",
    b"/recordings/{r}%00/file.webm",
    b"/recordings/{r}/file.webm\x00",
    b"/recordings//etc/passwd",
    b"//etc/passwd",
    b"/recordings/%2fetc%2fpasswd/file.webm",
    b"/recordings/..%2f{s}/file.webm",
    # The archive's own layout is no route: files are reached by recording id only.
    b"/recordings/{s}/part-1.webm",
    b"/recordings/{s}%2fpart-1.webm",
    b"/recordings/%2e%2e/recordings/{s}/part-1.webm",
    b"/recordings/-{r}/file.webm",
    b"/recordings/{r}.0/file.webm",
    "/recordings/\uff11/file.webm".encode(),  # a full-width digit matches \d, and is no id
    b"/recordings/99999999999999999999/file.webm",
    b"/static/../server/app.py",
    b"/static/%2e%2e/server/app.py",
    b"/static/..%2fserver%2fapp.py",
    b"/static/%252e%252e%252fserver%252fapp.py",
    b"/static/css/..%5c..%5c..%5cserver%5capp.py",
    b"/static//etc/passwd",
    b"/static/%2fetc%2fpasswd",
    b"/static/css/app.css%00.py",
    b"/static/../../../../etc/passwd",
]


async def test_the_control_a_member_watches_the_recording_by_its_id(world: World) -> None:
    status, body = await raw_get(world, f"/recordings/{world.named['R']}/file.webm".encode(),
                                 world.cookie(world.seed.member))
    assert status == 200 and WEBM_MAGIC in body


@pytest.mark.parametrize("attack", URL_ATTACKS, ids=[a.decode("latin-1") for a in URL_ATTACKS])
async def test_a_path_in_the_url_never_reaches_a_file(world: World, attack: bytes) -> None:
    target = attack.replace(b"{r}", str(world.named["R"]).encode()).replace(b"{s}", str(world.named["E"]).encode())
    status, body = await raw_get(world, target, world.cookie(world.seed.member))
    assert status in (400, 404), (target, status, body[:200])
    assert b"root:" not in body and b"create_app" not in body and WEBM_MAGIC not in body, target


async def _recording(world: World) -> tuple[int, int]:
    recording_id = await world.new_recording()
    return recording_id, await world.recording_session(recording_id)


def stored_paths(session: int, outside: Path, archive: Path) -> dict[str, str]:
    """Name -> the value written into the row (``plant`` below makes the files some of them name)."""
    s = str(session)
    relative_out = os.path.relpath(outside / "secret.txt", archive)
    return {
        "parent": "../secret.txt",
        "climbing out": relative_out,
        "climbing from the folder": f"{s}/../{relative_out}",
        "encoded dots": "%2e%2e/secret.txt",
        "encoded dots and slash": "%2e%2e%2f" + relative_out.replace("/", "%2f"),
        "encoded slash": f"{s}%2f..%2f..%2f" + relative_out.replace("/", "%2f"),
        "double-encoded": "%252e%252e%252f" + relative_out.replace("/", "%252f"),
        "absolute": str(outside / "secret.txt"),
        "absolute system file": "/etc/passwd",
        "backslash absolute": "\\etc\\passwd",
        "backslashes": relative_out.replace("/", "\\"),
        "mixed separators": f"{s}\\..\\" + relative_out,
        "NUL": f"{s}/part-1.webm\x00.txt",
        "encoded NUL": f"{s}/part-1.webm%00.txt",
        "empty": "",
        "the archive itself": ".",
        "a folder": s,
        "too long": "a" * 5000,
        "deep": "/".join(["a"] * 2000),
        "home": "~/secret.txt",
        "symlink out": f"{s}/link.webm",
        "symlink to a system file": f"{s}/passwd.webm",
        "through a symlinked folder": f"{s}/elsewhere/part-1.webm",
        "dangling symlink": f"{s}/dangling.webm",
        "FIFO": f"{s}/fifo.webm",
    }


def plant(folder: Path, outside: Path) -> None:
    """What someone with a foothold might leave in a recording's folder."""
    (folder / "link.webm").symlink_to(outside / "secret.txt")
    (folder / "passwd.webm").symlink_to("/etc/passwd")
    (folder / "elsewhere").symlink_to(outside / "inner", target_is_directory=True)
    (folder / "dangling.webm").symlink_to(outside / "nothing-here")
    os.mkfifo(folder / "fifo.webm")


STORED = list(stored_paths(1, Path("/x/outside"), Path("/x/archive")))


@pytest.mark.parametrize("route", FILE_ROUTES)
@pytest.mark.parametrize("name", STORED)
async def test_a_tampered_stored_path_is_never_served(world: World, outside: Path, name: str, route: str) -> None:
    recording_id, session_id = await _recording(world)
    column = FILE_ROUTES[route]
    plant(world.recordings_dir / str(session_id), outside)
    value = stored_paths(session_id, outside, world.recordings_dir)[name]
    async with world.database.session() as db:
        await db.execute(update(Recording).where(Recording.id == recording_id).values({column: value}))
    reply = await asyncio.wait_for(world.call("GET", f"/recordings/{recording_id}/{route}",
                                              headers=world.cookie(world.seed.member)), timeout=10)
    status = reply.status
    assert status == 404, (name, route, status, reply.text[:120])
    assert SECRET not in reply.body and b"root:" not in reply.body


@pytest.mark.parametrize("route", FILE_ROUTES)
async def test_a_planted_symlink_in_place_of_the_file_is_not_followed(world: World, outside: Path,
                                                                      route: str) -> None:
    recording_id, session_id = await _recording(world)
    member = world.cookie(world.seed.member)
    assert (await world.call("GET", f"/recordings/{recording_id}/{route}", headers=member)).status == 200
    async with world.database.session() as db:
        stored = (await db.get(Recording, recording_id)).__dict__[FILE_ROUTES[route]]  # type: ignore[union-attr]
    target = world.recordings_dir / stored
    target.unlink()
    target.symlink_to(outside / "secret.txt")
    reply = await world.call("GET", f"/recordings/{recording_id}/{route}", headers=member)
    assert reply.status == 404 and SECRET not in reply.body


async def test_a_symlinked_recording_folder_is_not_followed(world: World, outside: Path) -> None:
    recording_id, session_id = await _recording(world)
    folder = world.recordings_dir / str(session_id)
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
    folder.symlink_to(outside / "inner", target_is_directory=True)
    for route in ("file.webm", "file.mkv"):
        reply = await world.call("GET", f"/recordings/{recording_id}/{route}", headers=world.cookie(world.seed.member))
        assert reply.status == 404 and SECRET not in reply.body


DELETED_PATHS = ["climbing out", "absolute", "symlink out", "through a symlinked folder", "a folder", "FIFO",
                 "the archive itself", "too long", "NUL", "backslashes", "encoded dots and slash"]


@pytest.mark.parametrize("name", DELETED_PATHS)
async def test_deleting_a_recording_with_a_tampered_path_removes_nothing_outside(world: World, outside: Path,
                                                                                name: str) -> None:
    recording_id, session_id = await _recording(world)
    folder = world.recordings_dir / str(session_id)
    plant(folder, outside)
    value = stored_paths(session_id, outside, world.recordings_dir)[name]
    async with world.database.session() as db:
        await db.execute(update(Recording).where(Recording.id == recording_id).values(file=value, mp4_file=value))
        await db.execute(update(RecordingPart).where(RecordingPart.recording_id == recording_id).values(file=value))
    reply = await world.call("DELETE", f"/api/v1/recordings/{recording_id}", headers=world.bearer(world.seed.admin))
    status = reply.status
    assert status == 204, (name, status, reply.text[:120])
    assert (outside / "secret.txt").read_bytes() == SECRET
    assert (outside / "inner" / "part-1.webm").read_bytes() == SECRET
    assert Path("/etc/passwd").exists()
    assert world.recordings_dir.is_dir() and folder.is_dir()


async def test_the_api_gives_download_urls_by_id_never_the_stored_path(world: World, outside: Path) -> None:
    recording_id, session_id = await _recording(world)
    async with world.database.session() as db:
        await db.execute(update(Recording).where(Recording.id == recording_id).values(file="../../secret.webm"))
    reply = await world.call("GET", f"/api/v1/recordings/{recording_id}", headers=world.bearer(world.seed.member))
    body: dict[str, Any] = json.loads(reply.body)
    assert body["download_url"] == f"/recordings/{recording_id}/file.webm"
    assert "secret" not in reply.text and ".." not in reply.text
