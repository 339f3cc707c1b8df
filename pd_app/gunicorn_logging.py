"""gunicorn's logger without query strings: the panel URL carries Pipedrive's JWT and the OAuth callback an
authorization code, and gunicorn's error log names the raw request URI when a request fails."""

from __future__ import annotations

import logging
import os
import re

from gunicorn.glogging import Logger

_QUERY = re.compile(r"\?[^\s\"']*")


def scrub(value: object) -> object:
    return _QUERY.sub("?…", value) if isinstance(value, str) else value


class _DropQueries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(scrub(a) for a in record.args)
        return True


# The atoms gunicorn.conf.py's access_log_format uses. gunicorn builds every atom for every request, all
# request and response headers and the whole WSGI environ included, to use seven of them: for a proxy whose
# own work per call is a fraction of a millisecond that was a visible share of its CPU.
_LEAN_ATOMS = frozenset("hmUHsBM")
_ATOMIC_WRITE = 4096  # PIPE_BUF on Linux: a write this short to a pipe is never split
_ATOM = re.compile(r"%\((.*?)\)s")


class QuerylessLogger(Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        self.error_log.addFilter(_DropQueries())
        used = set(_ATOM.findall(cfg.access_log_format or ""))
        self._lean = bool(used) and used <= _LEAN_ATOMS
        # With its own plain stream or file handler (accesslog = "-" or a path, no logging config), the
        # line goes out in one os.write: with 64 threads per worker, the logging module's handler lock and
        # record objects were a tenth of a proxied request's CPU (py-spy). One write of a line shorter than
        # PIPE_BUF is not interleaved with another thread's.
        handlers = self.access_log.handlers
        self._direct = (
            self._lean
            and not (cfg.logconfig or cfg.logconfig_dict or cfg.logconfig_json or cfg.syslog)
            and len(handlers) == 1
            and type(handlers[0]) in (logging.StreamHandler, logging.FileHandler)
            and getattr(handlers[0], "_gunicorn", False)
        )

    def access(self, resp, req, environ, request_time) -> None:
        if not getattr(self, "_direct", False):
            return super().access(resp, req, environ, request_time)
        atoms = self.atoms_wrapper_class(self.atoms(resp, req, environ, request_time))
        line = (self.cfg.access_log_format % atoms + "\n").encode("utf-8", "backslashreplace")
        if len(line) > _ATOMIC_WRITE:  # could interleave with another writer: take the handler's lock
            return super().access(resp, req, environ, request_time)
        try:
            stream = self.access_log.handlers[0].stream  # a FileHandler's changes when gunicorn reopens it
            stream.flush()
            fd = stream.fileno()
            while line:
                line = line[os.write(fd, line) :]
        except (OSError, ValueError, IndexError):
            self.error("could not write the access log line")

    def atoms(self, resp, req, environ, request_time) -> dict:
        """Only the atoms the format names when it names only simple ones; gunicorn's full set otherwise."""
        if not getattr(self, "_lean", False):
            return super().atoms(resp, req, environ, request_time)
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "H": environ.get("SERVER_PROTOCOL"),
            "s": status,
            "B": getattr(resp, "sent", None),
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
        }
