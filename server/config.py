"""Settings: ``config/default.toml`` < a file named by ``--config`` or
``BRIDGECAST_CONFIG`` < ``BRIDGECAST_*`` environment variables.

Every key has a type given by the dataclasses below; a value of the wrong type
or an unknown key is an error at start-up, not a surprise later.  A key's
environment variable is its path joined by ``_`` in capitals:
``[server] port`` is ``BRIDGECAST_SERVER_PORT``, ``database_url`` is
``BRIDGECAST_DATABASE_URL``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import secrets
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.live.quality import Thresholds

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "default.toml"
ENV_PREFIX = "BRIDGECAST_"
SECRET_FILE = "jwt-secret"
MIN_SECRET_LENGTH = 32


class ConfigError(ValueError):
    """A setting is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    # Reverse proxies (comma-separated CIDR) whose X-Forwarded-For is believed; empty: none.
    trusted_proxies: str = ""

    @property
    def trusted_proxy_list(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return parse_networks(self.trusted_proxies)


@dataclass(frozen=True)
class AuthSettings:
    jwt_secret: str = field(default="", repr=False)
    token_ttl_seconds: int = 43200
    # Sign-in throttling (server/auth/throttle.py): failures slow the next attempt down, never lock out.
    # Failures per account and source (a browser that signed in before, else an address) before waits begin.
    login_free_attempts: int = 5
    # Waits double from 1 s up to this.
    login_max_delay_seconds: int = 300
    # Failures in the window from sources unknown to an account before every unknown source waits.
    login_attempts_per_account: int = 20
    # Failures in the window from one address, across accounts, before its unknown attempts wait.
    login_attempts_per_ip: int = 30
    login_window_seconds: int = 300
    # Password checks queued beyond one per core; more at once are answered 429 at once.
    password_checks_waiting: int = 32


@dataclass(frozen=True)
class I18nSettings:
    default_locale: str = "vi"
    timezone: str = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True)
class IceSettings:
    # Comma-separated IP addresses: the server's ICE agents gather candidates
    # only on those of them that belong to this machine, and accept, answer and
    # send to no remote address outside the list.  Empty: no restriction.
    addresses: str = ""
    stun_urls: str = ""
    turn_urls: str = ""
    turn_secret: str = field(default="", repr=False)
    turn_ttl_seconds: int = 86400
    # A peer connection whose ICE has not connected this long after its offer is closed.
    connect_timeout_seconds: float = 20.0
    # Remote candidates in loopback, private, link-local, shared and metadata ranges are
    # refused unless inside one of these networks (comma-separated CIDR, e.g. "10.0.0.0/8").
    allowed_networks: str = ""

    @property
    def address_list(self) -> tuple[str, ...]:
        """``addresses`` parsed and normalised (``ipaddress`` form); empty: unrestricted."""
        return parse_addresses(self.addresses)

    @property
    def allowed_network_list(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return parse_networks(self.allowed_networks)


@dataclass(frozen=True)
class LiveSettings:
    reconnect_grace_seconds: int = 20


# Measured (docs/benchmarks.md): a forwarded viewer costs about 0.8 % of a core.
ENDPOINTS_PER_CORE = 100


@dataclass(frozen=True)
class LimitSettings:
    # Peer connections (WHIP, WHEP and the pages' own) one user holds at once: a hall's
    # page holds two (its camera and the program), a member's one, per open tab.
    endpoints_per_user: int = 6
    # Peer connections one session holds at once; 0: ENDPOINTS_PER_CORE per CPU core.
    endpoints_per_session: int = 0
    # Live websockets one user holds at once (one per open page).
    sockets_per_user: int = 6

    @property
    def session_endpoints(self) -> int:
        return self.endpoints_per_session or ENDPOINTS_PER_CORE * (os.cpu_count() or 1)


@dataclass(frozen=True)
class AttendanceSettings:
    # The credit rule (printed on every report).
    attended_percent: int = 80
    late_after_minutes: int = 5
    early_before_minutes: int = 5
    # This server process's name in the presence log (the hub; a relay names itself).
    node_name: str = "hub"
    # How often the node writes its heartbeat: after a crash, open intervals close there.
    heartbeat_seconds: float = 5.0
    # How long a join waits for the database before it is kept in the local spool instead.
    write_timeout_seconds: float = 2.0
    # Presence events waiting for the database (an outage) beyond this many go to the spool only.
    queue_limit: int = 100000
    # Check-in codes on the hall screen rotate this often; the previous one stays valid one more window.
    checkin_window_seconds: int = 45

    def __post_init__(self) -> None:
        if not 1 <= self.attended_percent <= 100:
            raise ConfigError("attendance.attended_percent must be between 1 and 100")
        if not 0 < self.heartbeat_seconds <= 5:
            raise ConfigError("attendance.heartbeat_seconds must be more than 0 and at most 5")
        if not 30 <= self.checkin_window_seconds <= 60:
            raise ConfigError("attendance.checkin_window_seconds must be between 30 and 60")
        if self.write_timeout_seconds <= 0 or self.queue_limit < 1:
            raise ConfigError("attendance.write_timeout_seconds and queue_limit must be positive")


@dataclass(frozen=True)
class RecordingSettings:
    # Media files of finished recordings are deleted after this many days (0: kept
    # forever); their rows, attendance and replay credit stay.
    retention_days: int = 0
    # The MP4 copy (H.264 + AAC) and poster of each finished recording, made in the background.
    mp4: bool = True
    # A failed MP4 job is tried this many times, waiting retry_seconds times the attempt between.
    mp4_attempts: int = 3
    mp4_retry_seconds: float = 30.0
    # The MP4 job's priority (nice, 0-19): below the live path, always.
    mp4_nice: int = 19

    def __post_init__(self) -> None:
        if self.retention_days < 0:
            raise ConfigError("recordings.retention_days must be 0 (keep forever) or more")
        if self.mp4_attempts < 1 or self.mp4_retry_seconds < 0:
            raise ConfigError("recordings.mp4_attempts must be at least 1 and mp4_retry_seconds not negative")
        if not 0 <= self.mp4_nice <= 19:
            raise ConfigError("recordings.mp4_nice must be between 0 and 19")


@dataclass(frozen=True)
class MetricsSettings:
    # Empty: /metrics answers the loopback only. Set: a bearer token a scraper sends from anywhere.
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class LoggingSettings:
    # "text" (default) or "json": one JSON object per line, with session, endpoint and user ids.
    format: str = "text"
    level: str = "INFO"

    def __post_init__(self) -> None:
        if self.format not in ("text", "json"):
            raise ConfigError('logging.format must be "text" or "json"')
        if self.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("logging.level must be DEBUG, INFO, WARNING or ERROR")


@dataclass(frozen=True)
class CascadeSettings:
    # Empty: one node, the event bus and the node registry in this process. Set (redis://host:port/db):
    # the hub and its relays share them through Redis (server/cascade/redis.py).
    redis_url: str = field(default="", repr=False)
    # A relay beats this often; the hub stops directing viewers to one silent for ttl_seconds.
    heartbeat_seconds: float = 2.0
    ttl_seconds: float = 6.0

    def __post_init__(self) -> None:
        if not 0.1 <= self.heartbeat_seconds <= 60:
            raise ConfigError("cascade.heartbeat_seconds must be between 0.1 and 60")
        if not self.heartbeat_seconds * 2 <= self.ttl_seconds <= 300:
            raise ConfigError("cascade.ttl_seconds must be at least two heartbeats and at most 300")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("cascade.redis_url must start with redis://, rediss:// or unix://")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    database_url: str = ""
    recordings_dir: Path = Path("recordings")
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    i18n: I18nSettings = field(default_factory=I18nSettings)
    ice: IceSettings = field(default_factory=IceSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    attendance: AttendanceSettings = field(default_factory=AttendanceSettings)
    recordings: RecordingSettings = field(default_factory=RecordingSettings)
    # Where a point turns amber and red on the roll-call board (server.live.quality).
    quality: Thresholds = field(default_factory=Thresholds)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    cascade: CascadeSettings = field(default_factory=CascadeSettings)

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'bridgecast.db').resolve()}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.i18n.timezone)


def parse_addresses(value: str) -> tuple[str, ...]:
    """Comma-separated IP addresses, normalised, duplicates dropped; ValueError on anything else."""
    found: list[str] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        address = str(ipaddress.ip_address(part))
        if address not in found:
            found.append(address)
    return tuple(found)


def parse_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated networks in CIDR form (a bare address is its /32 or /128); ValueError on anything else."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())


# Settings that were replaced: a deployment that still sets one must not start
# as if it were unset (a test that meant to stay on loopback would not).
_REPLACED = {
    ("ice", "loopback_only"): 'ice.addresses (BRIDGECAST_ICE_ADDRESSES): "127.0.0.1" for loopback only',
}


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from the layers, highest last.

    ``overrides`` is a nested mapping applied after the environment (tests and
    the command line use it).
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = _read_toml(DEFAULT_CONFIG)
    named = config_file or environ.get(f"{ENV_PREFIX}CONFIG")
    if named:
        _merge(merged, _read_toml(Path(named)))
    _merge(merged, _from_environment(environ))
    if overrides:
        _merge(merged, dict(overrides))
    for path, replacement in _REPLACED.items():
        variable = ENV_PREFIX + "_".join(path).upper()
        section = merged.get(path[0])
        if variable in environ or (isinstance(section, dict) and path[-1] in section):
            raise ConfigError(f"{'.'.join(path)} ({variable}) was replaced by {replacement}")
    settings = _build(Settings, merged, "")
    _validate(settings)
    return settings


def ensure_jwt_secret(settings: Settings) -> str:
    """The signing key: configured, or generated once into the data folder.

    There is no default secret.  The generated file is created with mode 0600
    and never overwritten, so every restart keeps tokens valid.
    """
    if settings.auth.jwt_secret:
        return settings.auth.jwt_secret
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            # Like ssh with a private key: a signing key others can read signs their tokens too.
            raise ConfigError(f"{path} is readable by others (mode {mode:o}): run chmod 600 {path}") from None
        secret = path.read_text(encoding="ascii").strip()
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(f"{path} holds a key shorter than {MIN_SECRET_LENGTH} characters: "
                              "delete it to generate a new one (everyone is signed out)")
        return secret
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return secret


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _env_names(cls: type, prefix: str) -> dict[str, tuple[str, ...]]:
    """Map every leaf setting's variable name to its path."""
    names: dict[str, tuple[str, ...]] = {}
    for name, kind in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(kind):
            for var, path in _env_names(kind, f"{prefix}{name.upper()}_").items():
                names[var] = (name, *path)
        else:
            names[f"{prefix}{name.upper()}"] = (name,)
    return names


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, path in _env_names(Settings, ENV_PREFIX).items():
        if name in environ:
            node = result
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = environ[name]
    return result


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"[{where.rstrip('.')}] must be a table")
    hints = typing.get_type_hints(cls)
    unknown = set(data) - set(hints)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(where + k for k in sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, kind in hints.items():
        if name not in data:
            continue
        raw = data[name]
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, raw, f"{where}{name}.")
        else:
            values[name] = _coerce(kind, raw, where + name)
    try:
        return cls(**values)
    except ValueError as exc:  # a section's own check (e.g. quality thresholds out of order)
        raise ConfigError(f"[{where.rstrip('.')}] {exc}") from None


def _coerce(kind: Any, raw: Any, name: str) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(raw, str) and raw.strip().lower() in {"0", "false", "no", "off", ""}:
            return False
    elif kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and re.fullmatch(r"-?\d{1,18}", raw.strip()):
            return int(raw)
    elif kind is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw.strip())
            except ValueError:
                pass
    elif kind is str:
        if isinstance(raw, str):
            return raw
    elif kind is Path:
        if isinstance(raw, (str, Path)) and str(raw):
            return Path(raw)
    raise ConfigError(f"{name}: expected {getattr(kind, '__name__', kind)}, got {raw!r}")


def _validate(settings: Settings) -> None:
    if not 0 < settings.server.port < 65536:
        raise ConfigError(f"server.port out of range: {settings.server.port}")
    if settings.auth.jwt_secret and len(settings.auth.jwt_secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"auth.jwt_secret must be at least {MIN_SECRET_LENGTH} characters")
    for name in ("token_ttl_seconds", "login_window_seconds", "login_attempts_per_ip", "login_attempts_per_account",
                 "login_free_attempts", "login_max_delay_seconds", "password_checks_waiting"):
        if getattr(settings.auth, name) <= 0:
            raise ConfigError(f"auth.{name} must be positive")
    if not 0 <= settings.live.reconnect_grace_seconds <= 600:
        raise ConfigError("live.reconnect_grace_seconds must be between 0 and 600")
    if settings.i18n.default_locale not in ("vi", "en"):
        raise ConfigError("i18n.default_locale must be 'vi' or 'en'")
    try:
        ZoneInfo(settings.i18n.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"i18n.timezone unknown: {settings.i18n.timezone}") from None
    try:
        settings.ice.address_list
    except ValueError as exc:
        raise ConfigError(f"ice.addresses: {exc} (comma-separated IP addresses, or empty)") from None
    try:
        settings.server.trusted_proxy_list
    except ValueError as exc:
        raise ConfigError(f"server.trusted_proxies: {exc} (comma-separated networks)") from None
    try:
        settings.ice.allowed_network_list
    except ValueError as exc:
        raise ConfigError(f"ice.allowed_networks: {exc} (comma-separated networks, e.g. 10.0.0.0/8)") from None
    if not 1 <= settings.ice.connect_timeout_seconds <= 120:
        raise ConfigError("ice.connect_timeout_seconds must be between 1 and 120")
    for name in ("endpoints_per_user", "endpoints_per_session", "sockets_per_user"):
        if getattr(settings.limits, name) < 0:
            raise ConfigError(f"limits.{name} must be 0 (see the default) or more")
    if settings.limits.endpoints_per_user == 0 or settings.limits.sockets_per_user == 0:
        raise ConfigError("limits.endpoints_per_user and limits.sockets_per_user must be at least 1")
    url = settings.database_url
    if url and not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError("database_url must use sqlite+aiosqlite:// or postgresql+asyncpg://")
