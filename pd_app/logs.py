"""Structured log lines (one JSON object per line) and the audit trail. Never pass a token, code or secret."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from flask import Flask

audit_log = logging.getLogger("pd_app.audit")

# Field names that must never reach a log line, whatever a caller passes.
_FORBIDDEN = {"access_token", "refresh_token", "token", "code", "client_secret", "secret", "key", "password"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (test runners and servers swap it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def audit(event: str, **fields: object) -> None:
    """Record a lifecycle event (install, refresh, failure, uninstall, revoke, key change)."""
    clean = {k: v for k, v in fields.items() if k not in _FORBIDDEN}
    audit_log.info(event, extra={"fields": {"event": event, **clean}})


def init_app(app: Flask) -> None:
    root = logging.getLogger("pd_app")
    if not any(getattr(h, "_pd_app", False) for h in root.handlers):
        handler = StderrHandler()
        handler.setFormatter(JsonFormatter())
        handler._pd_app = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
