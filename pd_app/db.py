"""The engine and the request-scoped session, one per app, and the one rule for transactions.

The rule, which every module follows:
- A request (or CLI command) owns one session, `get_session()`, closed when the request ends. Reading through
  it never commits: a read-only request ends with a rollback when the session closes.
- A write is a unit of work: `with transaction() as session:` commits when the block ends and rolls back if it
  raises. No module calls `session.commit()` on the request's session itself.
- A unit of work that reads before it writes calls `begin_write(session)` first: on SQLite it then holds the
  write lock from its first read (BEGIN IMMEDIATE), instead of being refused when another connection commits
  between its read and its write.
- Work that must keep other writers out (refresh, install, uninstall) uses `locking_session()`: its own
  connection with BEGIN IMMEDIATE on SQLite and `FOR UPDATE` rows on PostgreSQL, committed inside the block.
- The proxy's hot path reads with `read_connection()`: one statement in autocommit mode, no BEGIN, no
  ROLLBACK, the connection back in the pool before Pipedrive is called.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app, g
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    # hide_parameters: a statement's bound values (encrypted tokens, key hashes, emails) never reach an
    # exception message or a log line; the SQL text alone says what failed.
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):
            # WAL lets readers work while one writer commits; foreign keys are off by default in SQLite.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            # Take BEGIN away from the driver so the "begin" hook below decides its mode.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # `with_for_update()` locks nothing on SQLite; a transaction that must exclude other writers
            # from its first read asks for BEGIN IMMEDIATE through this execution option. A read-only
            # connection (`read_connection`) begins nothing: each statement is its own read.
            options = conn.get_execution_options()
            if options.get("pd_autocommit"):
                return
            mode = "IMMEDIATE" if options.get("sqlite_immediate") else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    # At most 10 connections per process, kept open: every gunicorn worker (64 threads) holds one only while
    # it talks to the database, never while Pipedrive answers, and threads beyond 10 wait their turn. The
    # old 10 + 40 overflow let 4 workers open 200, past PostgreSQL's default max_connections (100): under
    # load, requests failed with "too many clients" (bench/RESULTS.md); overflow connections also churned.
    # workers x 10 x instances must stay under the server's max_connections.
    # No pre-ping: it would be a second round trip on every checkout. A connection the server dropped fails
    # its statement once; SQLAlchemy then discards every pooled connection older than the failure, so the
    # next request gets a fresh one (and the proxy answers that one request 503 with Retry-After).
    return create_engine(url, pool_size=10, max_overflow=0, pool_recycle=1800, hide_parameters=True)


def _read_engine(engine: Engine) -> Engine:
    """The same pool, with statements that run outside any transaction (no BEGIN, nothing to roll back)."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(pd_autocommit=True)
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["SETTINGS"].database_url)
    app.extensions["pd_db"] = {
        "engine": engine,
        "read_engine": _read_engine(engine),
        "sessionmaker": sessionmaker(engine, expire_on_commit=False),
    }
    app.teardown_appcontext(close_session)


def engine() -> Engine:
    return current_app.extensions["pd_db"]["engine"]


def read_connection() -> Connection:
    """A pooled connection for one or two reads outside a transaction; use it in a `with` block."""
    return current_app.extensions["pd_db"]["read_engine"].connect()


def end_read(session: Session) -> None:
    """End the session's read before a locked write on another connection: on SQLite a transaction whose
    snapshot predates another connection's commit can never write. Loaded rows stay usable."""
    session.commit()


@contextmanager
def transaction(session: Session | None = None) -> Iterator[Session]:
    """A unit of work on the request's session (or the one given): commits when the block ends, rolls back
    when it raises."""
    session = session if session is not None else get_session()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    session.commit()


def begin_write(session: Session) -> None:
    """Begin the session's unit of work as a writer from its first statement. On SQLite a transaction that
    reads first and writes later is refused at once ("database is locked", no busy wait) when another
    connection committed in between, since its snapshot could then never write; BEGIN IMMEDIATE takes the
    write lock up front and waits its turn instead. A read the session left open is ended first (nothing of
    it is lost: reads write nothing). Elsewhere, a no-op."""
    if session.get_bind().dialect.name != "sqlite" or session.new or session.dirty or session.deleted:
        return
    if session.in_transaction():
        end_read(session)
    session.connection(execution_options={"sqlite_immediate": True})


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
