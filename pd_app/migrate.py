"""Alembic, driven from code: `flask --app app db upgrade`, the readiness check and the tests use it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["skip_logging"] = True  # the app has its own logging; alembic.ini's is for the alembic CLI
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    # ConfigParser interpolates %: escape it so URLs with encoded passwords survive.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def current_revisions(conn: Connection) -> set[str]:
    """The revisions the database is at, read on the caller's connection."""
    return set(MigrationContext.configure(conn).get_current_heads())


def current(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            revisions = current_revisions(conn)
    finally:
        engine.dispose()
    return ",".join(sorted(revisions)) or None
