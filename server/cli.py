"""The ``bridgecast`` command: serve, db upgrade, demo, user add, sessions, token, report, relay."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from server.config import ConfigError, Settings, ensure_jwt_secret, load_settings
from server.errors import AppError, ValidationFailed
from server.storage import db as storage
from server import logs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridgecast", description="Live lecture broadcast server.")
    parser.add_argument("--config", help="a TOML file layered over config/default.toml (or BRIDGECAST_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the web application")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    database = commands.add_parser("db", help="database maintenance")
    database.add_argument("action", choices=["upgrade"], help="upgrade: apply every migration")

    commands.add_parser("demo", help="load the demo data (idempotent) and print the logins")

    user = commands.add_parser("user", help="manage accounts")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="create an account")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["admin", "speaker", "operator", "member"])
    add.add_argument("--full-name", required=True)
    add.add_argument("--unit", help="the unit's slug")
    add.add_argument("--point", help="the bridge point's slug (operators)")
    add.add_argument("--email", default="")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    sessions = commands.add_parser("sessions", help="list sessions")
    sessions.add_argument("--json", action="store_true", help="print JSON")

    report = commands.add_parser("report", help="a session's attendance, every expected member, as CSV or XLSX")
    report.add_argument("session_id", type=int, metavar="SESSION_ID")
    report.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    report.add_argument("--out", help="the file to write (CSV goes to standard output without it)")
    report.add_argument("--lang", choices=["vi", "en"], help="the language of the headings (i18n.default_locale)")

    token = commands.add_parser("token", help="print a signed bearer token for a user")
    token.add_argument("username")
    token.add_argument("--session", type=int, help="limit the token to one session")
    token.add_argument("--ttl", type=int, help="lifetime in seconds (default: auth.token_ttl_seconds)")

    relay = commands.add_parser("relay", help="relay nodes of the cascade (docs/operations.md)")
    relay_commands = relay.add_subparsers(dest="relay_command", required=True)
    relay_add = relay_commands.add_parser("add", help="register a relay; its token is printed on the last line")
    relay_add.add_argument("name")
    relay_add.add_argument("--unit", required=True, help="the slug of the unit it serves (a province, a commune)")
    relay_add.add_argument("--url", required=True, help="the base URL viewers reach it at")
    relay_add.add_argument("--parent", help="the relay above it (default: the hub)")
    relay_list = relay_commands.add_parser("list", help="the registered relays, their state and last heartbeat")
    relay_list.add_argument("--json", action="store_true", help="print JSON")
    relay_serve = relay_commands.add_parser("serve", help="run a relay node until stopped (SIGTERM: cleanly)")
    relay_serve.add_argument("--hub", required=True, help="the hub's base URL")
    relay_serve.add_argument("--token", required=True, help="the relay's token (relay add printed it)")
    relay_serve.add_argument("--host")
    relay_serve.add_argument("--port", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config)
        logs.configure(settings.logging.format, settings.logging.level)
        logs.quiet_media_libraries()
        handler = COMMANDS[args.command]
        return handler(settings, args)
    except ConfigError as exc:
        print(f"bridgecast: configuration error: {exc}", file=sys.stderr)
        return 2
    except ValidationFailed as exc:
        for error in exc.errors:
            print(f"bridgecast: {error['message']}", file=sys.stderr)
        return 2
    except AppError as exc:
        print(f"bridgecast: {exc.message}", file=sys.stderr)
        return 1


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.app import create_app
    from server.media import memory

    host = args.host or settings.server.host
    port = args.port or settings.server.port
    print(f"Bridgecast serving on http://{host}:{port}", flush=True)
    app = create_app(settings)

    async def freeze(app: web.Application) -> None:
        # What the server made to start is never garbage: later collections skip it (server/media/memory.py).
        memory.freeze_startup()

    app.on_startup.append(freeze)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
    return 0


def _db(settings: Settings, args: argparse.Namespace) -> int:
    storage.upgrade(settings.effective_database_url)
    print("database is up to date")
    return 0


def _run(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    async def go() -> int:
        database = storage.Database(settings.effective_database_url)
        try:
            return await work(database)
        finally:
            await database.close()

    return asyncio.run(go())


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from server.storage.demo import LOGINS_FILE, load_demo

    async def work(database: storage.Database) -> int:
        async with database.session() as db:
            result = await load_demo(db, settings.data_dir, settings.zone)
        url = f"http://{settings.server.host}:{settings.server.port}"
        print(f"Demo data ready ({result.created_users} accounts added). Session id: {result.session_id}")
        print(f"  open {url}/  —  session page: {url}/sessions/{result.session_id}")
        print("  logins (also in " + str(settings.data_dir / LOGINS_FILE) + "):")
        for username, password in result.logins.items():
            print(f"    {username:<22} {password}")
        print("  provinces: hai-phong thai-nguyen tuyen-quang son-la ha-tinh dak-lak binh-dinh can-tho binh-duong")
        return 0

    return _run(settings, work)


def _user(settings: Settings, args: argparse.Namespace) -> int:
    from server.schemas import USER
    from server.storage.units import point_by_slug, unit_by_slug
    from server.storage.users import create_user

    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("bridgecast: the passwords differ", file=sys.stderr)
            return 2

    async def work(database: storage.Database) -> int:
        async with database.session() as db:
            unit = await unit_by_slug(db, args.unit) if args.unit else None
            point = await point_by_slug(db, args.point) if args.point else None
            if args.unit and unit is None:
                raise ValidationFailed.one("unit", "unknown_unit", f"no unit with slug {args.unit!r}")
            if args.point and point is None:
                raise ValidationFailed.one("point", "unknown_point", f"no bridge point with slug {args.point!r}")
            values = USER.parse({
                "username": args.username, "full_name": args.full_name, "email": args.email, "role": args.role,
                "unit_id": unit.id if unit else (point.unit_id if point else None),
                "bridge_point_id": point.id if point else None, "password": password,
            })
            user = await create_user(db, values)
        print(f"created {user.role.value} {user.username} (id {user.id})")
        return 0

    return _run(settings, work)


def _sessions(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from server.storage.models import Session

    async def work(database: storage.Database) -> int:
        async with database.session() as db:
            rows = list(await db.scalars(select(Session).order_by(Session.scheduled_start, Session.id)))
        listing = [{"id": s.id, "title": s.title, "status": s.status.value,
                    "scheduled_start": s.scheduled_start.isoformat(), "invited_point_ids": s.invited_point_ids}
                   for s in rows]
        if args.json:
            print(json.dumps(listing, ensure_ascii=False, indent=2))
        else:
            for item in listing:
                print(f"{item['id']:>5}  {item['status']:<10} {item['scheduled_start'][:16]}  {item['title']}")
        return 0

    return _run(settings, work)


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.tokens import issue_token
    from server.storage.sessions import get_session
    from server.storage.users import user_by_username

    ttl = args.ttl or settings.auth.token_ttl_seconds
    if not 0 < ttl <= 30 * 86400:
        print("bridgecast: --ttl must be between 1 second and 30 days", file=sys.stderr)
        return 2

    async def work(database: storage.Database) -> int:
        async with database.session() as db:
            user = await user_by_username(db, args.username)
            if user is None or not user.active:
                print(f"bridgecast: no active user {args.username!r}", file=sys.stderr)
                return 1
            if args.session is not None:
                await get_session(db, args.session)
        print(issue_token(ensure_jwt_secret(settings), user.id, user.token_version, ttl, session_id=args.session))
        return 0

    return _run(settings, work)


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from server.attendance import export
    from server.i18n import Catalogues
    from server.storage.attendance import rule_from_settings, session_report

    if args.format == "xlsx" and not args.out and sys.stdout.isatty():
        # Piped or redirected, the workbook goes to standard output like the CSV; never onto a terminal.
        print("bridgecast: --format xlsx needs --out FILE or a pipe (a workbook is not written to a terminal)",
              file=sys.stderr)
        return 2
    _ = Catalogues().translator(args.lang or settings.i18n.default_locale)
    rule = rule_from_settings(settings.attendance)

    async def work(database: storage.Database) -> int:
        async with database.session() as db:
            report = await session_report(db, args.session_id, rule)
        rows = (m.api() for m in report.members)
        heading = export.heading_lines(report, _, settings.zone)
        if args.format == "csv":
            body = export.csv_bytes(rows, _, heading=heading, rule=rule)
        else:
            body = export.xlsx_bytes(rows, _, title=_("Attendance"), heading=heading, rule=rule,
                                     points=[p.api() for p in report.points])
        if args.out:
            try:
                Path(args.out).write_bytes(body)
            except OSError as exc:
                print(f"bridgecast: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
                return 1
            print(f"wrote {len(report.members)} member(s) of session {report.session_id} to {args.out}",
                  file=sys.stderr)
        else:
            sys.stdout.buffer.write(body)
            sys.stdout.flush()
        return 0

    return _run(settings, work)


def _relay(settings: Settings, args: argparse.Namespace) -> int:
    return {"add": _relay_add, "list": _relay_list, "serve": _relay_serve}[args.relay_command](settings, args)


def _relay_add(settings: Settings, args: argparse.Namespace) -> int:
    from server.storage.relays import create_relay

    async def work(database: storage.Database) -> int:
        async with database.session() as db:
            relay, token = await create_relay(db, name=args.name, unit_slug=args.unit, url=args.url,
                                              parent_name=args.parent)
        print(f"registered relay {relay.name} for unit {relay.unit_slug} at {relay.url}, parent "
              f"{relay.parent or 'the hub'}; its token (shown once):")
        print(token)
        return 0

    return _run(settings, work)


def _relay_list(settings: Settings, args: argparse.Namespace) -> int:
    import time

    from server.storage.relays import list_relays

    async def work(database: storage.Database) -> int:
        async with database.session() as db:
            relays = await list_relays(db)
        beats = await _heartbeats(settings)
        now = time.time()
        listing = []
        for relay in relays:
            item = relay.api()
            beat = beats.get(relay.name)
            seen = beat.beat_at if beat is not None else (relay.last_seen_at.timestamp() if relay.last_seen_at
                                                         else None)
            if not relay.active:
                state = "disabled"
            elif seen is None:
                state = "never seen"
            elif beat is not None or now - seen <= settings.cascade.ttl_seconds:
                state = "alive"
            else:
                state = "silent"
            item.update(state=state, last_heartbeat=_iso(seen), sessions=list(beat.sessions) if beat else [],
                        viewers=beat.viewers if beat else 0)
            listing.append(item)
        if args.json:
            print(json.dumps(listing, ensure_ascii=False, indent=2))
        else:
            for item in listing:
                print(f"{item['name']:<20} {item['unit']:<16} {item['parent'] or 'hub':<16} {item['state']:<10} "
                      f"{item['last_heartbeat'] or '-'}")
        return 0

    return _run(settings, work)


def _iso(seconds: float | None) -> str | None:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds") if seconds else None


async def _heartbeats(settings: Settings) -> dict[str, Any]:
    """The relays' live heartbeats, from Redis when the nodes share it (else the hub's records say)."""
    if not settings.cascade.redis_url:
        return {}
    from server.cascade.redis import RedisNodeRegistry, connect

    client = connect(settings.cascade.redis_url)
    try:
        return dict(await RedisNodeRegistry(client).alive())
    finally:
        await client.aclose()


def _relay_serve(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.cascade.relay_app import create_relay_app
    from server.media.peer import IceConfig
    from server.storage.relays import check_url, looks_like_relay_token

    if not looks_like_relay_token(args.token):
        print("bridgecast: --token is not a relay token (relay add prints one)", file=sys.stderr)
        return 2
    hub = check_url(args.hub)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    print(f"Bridgecast relay serving on http://{host}:{port}, hub {hub}", flush=True)
    app = create_relay_app(hub, args.token, IceConfig.from_settings(settings.ice),
                           heartbeat_seconds=settings.cascade.heartbeat_seconds)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": _serve,
    "db": _db,
    "demo": _demo,
    "user": _user,
    "sessions": _sessions,
    "token": _token,
    "report": _report,
    "relay": _relay,
}

if __name__ == "__main__":
    sys.exit(main())
