"""The migrations build exactly the schema the models describe, on both backends."""

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from server.storage.db import Database, alembic_config, upgrade
from server.storage.models import Base


def _diff(connection: object) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})  # type: ignore[arg-type]
    return compare_metadata(context, Base.metadata)


async def test_migrated_schema_matches_the_models(database: Database) -> None:
    async with database.engine.connect() as connection:
        differences = await connection.run_sync(_diff)
    assert differences == []


async def test_every_model_table_exists(database: Database) -> None:
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_downgrade_to_nothing_and_back(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    upgrade(url)


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'twice.db'}"
    upgrade(url)
    upgrade(url)
