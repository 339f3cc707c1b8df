"""gunicorn's error log never records a query string (JWTs and codes travel in them)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from pd_app.gunicorn_logging import QuerylessLogger


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_error_log_drops_query_strings():
    log = QuerylessLogger(Config())
    seen = ListHandler()
    log.error_log.addHandler(seen)
    log.error("Error handling request %s", "/ui/panel?token=eyJhbGciOiJIUzI1NiJ9.e30.sig&userId=1")
    log.exception("Error handling request /oauth/callback?code=secret-code&state=s")
    log.error_log.removeHandler(seen)
    text = "\n".join(seen.lines)
    assert "/ui/panel?…" in text and "/oauth/callback?…" in text
    assert "eyJhbGciOiJIUzI1NiJ9" not in text and "secret-code" not in text


def gunicorn_conf() -> dict:
    namespace: dict = {}
    with open("gunicorn.conf.py") as handle:
        exec(handle.read(), namespace)  # our own config file
    return namespace


def test_the_server_config_uses_it(monkeypatch, tmp_path):
    # An operator's metrics directory: the config keeps it rather than making one (and changing our environ).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    namespace = gunicorn_conf()
    assert namespace["logger_class"] == "pd_app.gunicorn_logging.QuerylessLogger"
    assert "%(U)s" in namespace["access_log_format"] and "%(r)s" not in namespace["access_log_format"]


class _Response:
    status = "200 OK"
    sent = 1234
    headers = [("Content-Type", "application/json")]


def _access_lines(logger_class, path, access_log_format: str) -> str:
    cfg = Config()
    cfg.set("accesslog", str(path))
    cfg.set("access_log_format", access_log_format)
    log = logger_class(cfg)
    environ = {
        "REMOTE_ADDR": "10.1.2.3",
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/goals/find",
        "QUERY_STRING": "title=secret",
        "RAW_URI": "/api/v1/goals/find?title=secret",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": "dashboard/1.0",
    }
    log.access(_Response(), [("User-Agent", "dashboard/1.0")], environ, timedelta(milliseconds=7))
    for handler in log.access_log.handlers:
        handler.flush()
        handler.close()
    log.access_log.handlers.clear()
    return path.read_text()


def test_the_access_log_line_is_the_one_gunicorn_would_write(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    fmt = gunicorn_conf()["access_log_format"]
    ours = _access_lines(QuerylessLogger, tmp_path / "ours.log", fmt)
    theirs = _access_lines(Logger, tmp_path / "theirs.log", fmt)
    assert ours == theirs == '10.1.2.3 "GET /api/v1/goals/find HTTP/1.1" 200 1234 7ms\n'
    assert "secret" not in ours
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "check.log"))
    cfg.set("access_log_format", fmt)
    check = QuerylessLogger(cfg)
    direct = check._direct
    for handler in check.access_log.handlers:
        handler.close()
    check.access_log.handlers.clear()
    assert direct, "the server's own format should take the one-write path"


def test_a_format_with_other_atoms_gets_gunicorns_own_path(tmp_path):
    fmt = "%(h)s %(r)s %(a)s %({user-agent}i)s"
    ours = _access_lines(QuerylessLogger, tmp_path / "ours.log", fmt)
    assert ours == _access_lines(Logger, tmp_path / "theirs.log", fmt)
    assert "dashboard/1.0" in ours


@pytest.mark.parametrize(
    ("database_url", "override", "expected"),
    [
        ("", None, "gthread"),
        ("sqlite:////srv/pd_app.sqlite3", None, "gthread"),
        ("postgresql://app@db/pd_app", None, "gevent"),
        ("postgres://app@db/pd_app", None, "gevent"),
        ("postgresql+psycopg://app@db/pd_app", None, "gevent"),
        ("postgresql+psycopg2://app@db/pd_app", None, "gthread"),  # psycopg2 would block a gevent worker
        ("postgresql://app@db/pd_app", "gthread", "gthread"),
    ],
)
def test_the_worker_model_follows_the_database(monkeypatch, tmp_path, database_url, override, expected):
    """gevent only where the database driver waits cooperatively (psycopg 3); SQLite's busy wait would stop a
    gevent worker (tests/test_stampede.py)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    if override:
        monkeypatch.setenv("GUNICORN_WORKER_CLASS", override)
    else:
        monkeypatch.delenv("GUNICORN_WORKER_CLASS", raising=False)
    config = gunicorn_conf()
    assert config["worker_class"] == expected
    assert config["workers"] == 2
