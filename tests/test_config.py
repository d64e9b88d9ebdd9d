import os
import stat
from pathlib import Path

import pytest

from server.config import ConfigError, ensure_jwt_secret, load_settings


def test_defaults_come_from_the_default_file() -> None:
    settings = load_settings(environ={})
    assert settings.server.port == 8080
    assert settings.server.host == "127.0.0.1"
    assert settings.i18n.default_locale == "vi"
    assert settings.ice.addresses == "" and settings.ice.address_list == ()  # production: no restriction
    assert settings.auth.jwt_secret == ""
    assert settings.recordings_dir == Path("recordings")


def test_layers_file_then_environment_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('database_url = "postgresql+asyncpg://u@h/db"\n[server]\nport = 9000\nhost = "0.0.0.0"\n')
    environ = {"BRIDGECAST_CONFIG": str(config), "BRIDGECAST_SERVER_PORT": "9100", "BRIDGECAST_ICE_ADDRESSES": "127.0.0.1"}
    settings = load_settings(environ=environ)
    assert settings.database_url == "postgresql+asyncpg://u@h/db"
    assert settings.server.host == "0.0.0.0"  # from the file
    assert settings.server.port == 9100  # the environment wins over the file
    assert settings.ice.address_list == ("127.0.0.1",)
    assert load_settings(environ=environ, overrides={"server": {"port": 9200}}).server.port == 9200


def test_explicit_config_argument_beats_the_environment_variable(tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text("[server]\nport = 1111\n")
    second.write_text("[server]\nport = 2222\n")
    assert load_settings(second, environ={"BRIDGECAST_CONFIG": str(first)}).server.port == 2222


def test_sqlite_in_the_data_folder_by_default(tmp_path: Path) -> None:
    settings = load_settings(environ={"BRIDGECAST_DATA_DIR": str(tmp_path)})
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/bridgecast.db"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"BRIDGECAST_SERVER_PORT": "http"}, "server.port"),
        ({"BRIDGECAST_SERVER_PORT": "70000"}, "out of range"),
        ({"BRIDGECAST_SERVER_PORT": "--5"}, "server.port"),
        ({"BRIDGECAST_ICE_ADDRESSES": "localhost"}, "ice.addresses"),
        ({"BRIDGECAST_ICE_ADDRESSES": "127.0.0.1,10.0.0.300"}, "ice.addresses"),
        # The replaced switch is refused, not silently ignored (media would leave loopback).
        ({"BRIDGECAST_ICE_LOOPBACK_ONLY": "1"}, "replaced by ice.addresses"),
        ({"BRIDGECAST_AUTH_JWT_SECRET": "short"}, "at least 32"),
        ({"BRIDGECAST_DATABASE_URL": "mysql://x"}, "database_url"),
        ({"BRIDGECAST_I18N_TIMEZONE": "Mars/Olympus"}, "timezone"),
        ({"BRIDGECAST_I18N_DEFAULT_LOCALE": "fr"}, "default_locale"),
        ({"BRIDGECAST_ICE_ALLOWED_NETWORKS": "10.0.0.0/33"}, "ice.allowed_networks"),
        ({"BRIDGECAST_ICE_ALLOWED_NETWORKS": "intranet"}, "ice.allowed_networks"),
        ({"BRIDGECAST_ICE_CONNECT_TIMEOUT_SECONDS": "0"}, "connect_timeout_seconds"),
        ({"BRIDGECAST_LIMITS_ENDPOINTS_PER_USER": "0"}, "limits.endpoints_per_user"),
        ({"BRIDGECAST_LIMITS_ENDPOINTS_PER_SESSION": "-1"}, "limits.endpoints_per_session"),
    ],
)
def test_bad_values_are_refused_at_start(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("", ()),
        ("127.0.0.1", ("127.0.0.1",)),
        (" 127.0.0.1 , 198.18.7.1,198.18.7.2, ", ("127.0.0.1", "198.18.7.1", "198.18.7.2")),
        ("::1, 0:0::1, 127.0.0.1", ("::1", "127.0.0.1")),  # normalised, duplicates dropped
    ],
)
def test_ice_addresses_are_a_list_of_ip_addresses(value: str, parsed: tuple[str, ...]) -> None:
    assert load_settings(environ={"BRIDGECAST_ICE_ADDRESSES": value}).ice.address_list == parsed


def test_the_replaced_loopback_switch_is_refused_in_a_file_too(tmp_path: Path) -> None:
    config = tmp_path / "old.toml"
    config.write_text("[ice]\nloopback_only = true\n")
    with pytest.raises(ConfigError, match='ice.addresses.*"127.0.0.1"'):
        load_settings(config, environ={})


def test_unknown_keys_in_a_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text("[server]\nprot = 80\n")
    with pytest.raises(ConfigError, match="server.prot"):
        load_settings(config, environ={})


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_no_default_secret_one_is_generated_privately_and_kept(tmp_path: Path) -> None:
    settings = load_settings(environ={"BRIDGECAST_DATA_DIR": str(tmp_path / "data")})
    secret = ensure_jwt_secret(settings)
    path = tmp_path / "data" / "jwt-secret"
    assert len(secret) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_jwt_secret(settings) == secret  # a restart keeps tokens valid
    other = load_settings(environ={"BRIDGECAST_DATA_DIR": str(tmp_path / "other")})
    assert ensure_jwt_secret(other) != secret


def test_a_signing_key_others_can_read_is_refused(tmp_path: Path) -> None:
    settings = load_settings(environ={"BRIDGECAST_DATA_DIR": str(tmp_path)})
    ensure_jwt_secret(settings)
    os.chmod(tmp_path / "jwt-secret", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ensure_jwt_secret(settings)


def test_the_embedded_database_is_private_whatever_the_umask(tmp_path: Path) -> None:
    from server.storage.db import upgrade

    old = os.umask(0o022)
    try:
        upgrade(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
        assert stat.S_IMODE(os.stat(tmp_path / "new.db").st_mode) == 0o600
        # One left readable by an earlier version is made private at the next start.
        os.chmod(tmp_path / "new.db", 0o644)
        upgrade(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
        assert stat.S_IMODE(os.stat(tmp_path / "new.db").st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_configured_secret_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    settings = load_settings(environ={"BRIDGECAST_DATA_DIR": str(tmp_path), "BRIDGECAST_AUTH_JWT_SECRET": "s" * 40})
    assert ensure_jwt_secret(settings) == "s" * 40
    assert not (tmp_path / "jwt-secret").exists()


def test_quality_thresholds_are_settings_and_refused_out_of_order() -> None:
    settings = load_settings(environ={"BRIDGECAST_QUALITY_LOSS_RED_PCT": "12", "BRIDGECAST_QUALITY_RED_AFTER": "3"})
    assert (settings.quality.loss_red_pct, settings.quality.red_after, settings.quality.rtt_amber_ms) == (12, 3, 250)
    with pytest.raises(ConfigError, match=r"\[quality\]"):
        load_settings(environ={"BRIDGECAST_QUALITY_LOSS_AMBER_PCT": "20"})  # amber above red
    with pytest.raises(ConfigError, match="logging.format"):
        load_settings(environ={"BRIDGECAST_LOGGING_FORMAT": "xml"})
