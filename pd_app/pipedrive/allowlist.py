"""The api_domain allow-list (PIPEDRIVE_API_DOMAINS): no token is sent to an address outside it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_PRINTABLE = re.compile(r"[\x21-\x7e]+")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


class DomainAllowList:
    """Patterns like `https://*.pipedrive.com`; `*` stands for exactly one DNS label."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._rules = [self._compile(p) for p in patterns]

    @staticmethod
    def _compile(pattern: str) -> tuple[str, re.Pattern[str], int | None, str]:
        parts = urlsplit(pattern.strip())
        host = (parts.hostname or "").lower()
        regex = r"\.".join(_LABEL if label == "*" else re.escape(label) for label in host.split("."))
        return parts.scheme, re.compile(rf"\A{regex}\Z"), parts.port, parts.path.rstrip("/")

    def allows(self, url: str) -> bool:
        # urlsplit quietly drops tabs and newlines and keeps other control characters and spaces: a value
        # holding any of them (or anything beyond printable ASCII) is refused before it is parsed.
        if not _PRINTABLE.fullmatch(url):
            return False
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        if parts.username or parts.password or parts.query or parts.fragment or not parts.hostname:
            return False
        host, path = parts.hostname.lower(), parts.path.rstrip("/")
        return any(
            parts.scheme == scheme and rx.match(host) and port == rport and path == rpath
            for scheme, rx, rport, rpath in self._rules
        )
