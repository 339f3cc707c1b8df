"""Every log line the suite produces, searched for every secret the suite made.

At the start of a run `LogScan.install()` records, from then on, each value that is a secret by
construction: what `secrets.token_urlsafe` and `secrets.token_hex` (16 bytes or more) return (partner keys,
webhook secrets, the sandbox's access and refresh tokens and authorization codes, OAuth state nonces) and
every JWT `jwt.encode` signs (Pipedrive's panel tokens), plus the suite's fixed secrets. It also keeps every
log record that reaches Python's logging, formatted the way the app writes it (message, fields, traceback),
and the output files of the processes the suite starts (tests/procs.py registers them). At the end of the run
`hits()` lists each line that holds any of those secrets; conftest fails the run when there is one.

Event ids (`evt_` + 12 random bytes) and key prefixes (4 bytes) are meant to be logged: hence the 16-byte
floor.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from pd_app.logs import JsonFormatter

MIN_BYTES = 16
MIN_LENGTH = 16  # a shorter string would match by chance
_RUN = re.compile(rf"[A-Za-z0-9_\-]{{{MIN_LENGTH},}}")


class _Keep(logging.Handler):
    def __init__(self, scan: LogScan) -> None:
        super().__init__(logging.DEBUG)
        self.scan = scan
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.scan.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is not one the app would have written
            self.scan.unformatted += 1


@dataclass
class LogScan:
    secrets_made: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    unformatted: int = 0
    _undo: list[Callable[[], None]] = field(default_factory=list)

    def remember(self, value: object) -> None:
        if isinstance(value, str) and len(value) >= MIN_LENGTH:
            self.secrets_made.add(value)

    def add_file(self, path: Path) -> None:
        self.files.append(path)

    def install(self, fixed: Iterable[str] = ()) -> None:
        for value in fixed:
            self.remember(value)
        self._wrap(secrets, "token_urlsafe", lambda n=None: (n or 32) >= MIN_BYTES)
        self._wrap(secrets, "token_hex", lambda n=None: (n or 32) >= MIN_BYTES)
        self._wrap(jwt, "encode", lambda *a, **k: True)
        handler = _Keep(self)
        # The root logger sees what propagates (werkzeug, urllib3, the tests' own); pd_app's logger writes to
        # its own handler and propagates too, but may be configured not to: attach to both, count once.
        roots = [logging.getLogger(), logging.getLogger("pd_app")]
        for logger in roots:
            logger.addHandler(handler)
            self._undo.append(lambda logger=logger: logger.removeHandler(handler))
        handler.addFilter(_once_per_handler(handler))

    def _wrap(self, module: Any, name: str, wanted: Callable[..., bool]) -> None:
        original = getattr(module, name)
        scan = self

        def recording(*args: Any, **kwargs: Any) -> Any:
            value = original(*args, **kwargs)
            if wanted(*args, **kwargs):
                scan.remember(value)
            return value

        setattr(module, name, recording)
        self._undo.append(lambda: setattr(module, name, original))

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def all_lines(self) -> Iterable[tuple[str, str]]:
        for line in self.lines:
            yield "logging", line
        for path in self.files:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue  # removed with its temporary directory: scanned by nobody, reported below
            for line in text.splitlines():
                yield str(path.name), line

    def hits(self) -> list[str]:
        """Lines holding a secret. Secrets are runs of [A-Za-z0-9_-] (a JWT's parts too), so each run of 16 or
        more such characters in a line is slid over, 16 at a time, against the secrets' first 16 characters:
        one dictionary look-up per character of the long runs, instead of every secret against every line."""
        by_start: dict[str, list[str]] = {}
        for value in self.secrets_made:
            # Each long run of the value on its own: a JWT's payload and signature, the random part of
            # `v1u:<random>` or `<company>:<user>:<random>`.
            for part in _RUN.findall(value):
                by_start.setdefault(part[:MIN_LENGTH], []).append(part)
        found = []
        for source, line in self.all_lines():
            if _holds_any(line, by_start):
                found.append(f"{source}: {line[:300]}")
        return found


def _holds_any(line: str, by_start: dict[str, list[str]]) -> bool:
    for run in _RUN.findall(line):
        for i in range(len(run) - MIN_LENGTH + 1):
            for value in by_start.get(run[i : i + MIN_LENGTH], ()):
                if value in line:
                    return True
    return False


def _once_per_handler(handler: logging.Handler) -> Callable[[logging.LogRecord], bool]:
    """A record propagating from pd_app's logger to the root meets the same handler twice: kept once."""

    def first_time(record: logging.LogRecord) -> bool:
        seen: set[int] = record.__dict__.setdefault("_pd_scanned_by", set())
        if id(handler) in seen:
            return False
        seen.add(id(handler))
        return True

    return first_time


SCAN = LogScan()  # the run's one scan: conftest installs it, tests/procs.py adds the processes' output files
