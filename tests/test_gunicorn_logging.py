"""gunicorn's error log never records a query string (JWTs and codes travel in them)."""

from __future__ import annotations

import logging

from gunicorn.config import Config

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


def test_the_server_config_uses_it(monkeypatch, tmp_path):
    # An operator's metrics directory: the config keeps it rather than making one (and changing our environ).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    namespace: dict = {}
    with open("gunicorn.conf.py") as handle:
        exec(handle.read(), namespace)  # our own config file
    assert namespace["logger_class"] == "pd_app.gunicorn_logging.QuerylessLogger"
    assert "%(U)s" in namespace["access_log_format"] and "%(r)s" not in namespace["access_log_format"]
