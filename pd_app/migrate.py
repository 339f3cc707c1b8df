"""Alembic, driven from code: `flask --app app db upgrade`, the readiness check and the tests use it.

Alembic (with Mako and Pygments behind it, about 10 MB per process) is imported on first use, not when a
web worker starts: serving requests never needs it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, create_engine

if TYPE_CHECKING:
    from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["skip_logging"] = True  # the app has its own logging; alembic.ini's is for the alembic CLI
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    # ConfigParser interpolates %: escape it so URLs with encoded passwords survive.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


@cache
def heads() -> frozenset[str]:
    """The migration heads of this release (read once: the scripts do not change while it runs)."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def current_revisions(conn: Connection) -> set[str]:
    """The revisions the database is at, read on the caller's connection."""
    from alembic.runtime.migration import MigrationContext

    return set(MigrationContext.configure(conn).get_current_heads())


def current(database_url: str) -> str | None:
    engine = create_engine(database_url, hide_parameters=True)
    try:
        with engine.connect() as conn:
            revisions = current_revisions(conn)
    finally:
        engine.dispose()
    return ",".join(sorted(revisions)) or None
