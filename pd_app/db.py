"""The engine and the request-scoped session, one per app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):  # noqa: ANN001
            # WAL lets readers work while one writer commits; foreign keys are off by default in SQLite.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            # Take BEGIN away from the driver so the "begin" hook below decides its mode.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # noqa: ANN001
            # `with_for_update()` locks nothing on SQLite; a transaction that must exclude other writers
            # from its first read asks for BEGIN IMMEDIATE through this execution option.
            mode = "IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    # At most 10 connections per process, kept open: every gunicorn worker (64 threads) holds one only while
    # it talks to the database, never while Pipedrive answers, and threads beyond 10 wait their turn. The
    # old 10 + 40 overflow let 4 workers open 200, past PostgreSQL's default max_connections (100): under
    # load, requests failed with "too many clients" (bench/RESULTS.md); overflow connections also churned.
    # workers x 10 x instances must stay under the server's max_connections.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=0)


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["SETTINGS"].database_url)
    app.extensions["pd_db"] = {
        "engine": engine,
        "sessionmaker": sessionmaker(engine, expire_on_commit=False),
    }
    app.teardown_appcontext(close_session)


def engine() -> Engine:
    return current_app.extensions["pd_db"]["engine"]


@contextmanager
def locking_session() -> Iterator[Session]:
    """A session of its own whose transaction keeps other writers of the rows it locks out until commit.

    PostgreSQL: use `with_for_update()` in it. SQLite: its BEGIN IMMEDIATE takes the database's write lock.
    Either lock dies with the connection, so a killed process leaves nothing locked.
    """
    with engine().connect() as connection:
        connection.execution_options(sqlite_immediate=True)
        with Session(bind=connection, expire_on_commit=False) as session:
            yield session


def get_session() -> Session:
    """The session of the current request or CLI command, opened on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["pd_db"]["sessionmaker"]()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
