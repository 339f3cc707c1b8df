"""gunicorn's logger without query strings: the panel URL carries Pipedrive's JWT and the OAuth callback an
authorization code, and gunicorn's error log names the raw request URI when a request fails."""

from __future__ import annotations

import logging
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


class QuerylessLogger(Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        self.error_log.addFilter(_DropQueries())
