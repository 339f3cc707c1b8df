"""Safe outbound requests: where a webhook may point. In production a URL must be https:// and its host must
resolve only to public addresses (no loopback, private, link-local, reserved, multicast or unspecified ones,
IPv4 or IPv6, IPv4-mapped included), so that a partner cannot use webhooks to reach the operator's network.
Checked at registration and again at every delivery, which then connects to the very address it checked."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2000

# Looked up as a module attribute at each call, so tests can point a name at an address of their choosing.
getaddrinfo = socket.getaddrinfo


class UnsafeUrl(Exception):
    """The URL may not receive webhooks here; the message says why, for the partner or the operator."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code  # `unsafe_url`: refused by the production rules; `invalid`: not a usable URL


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL's parts and the address checked for it."""

    scheme: str
    hostname: str
    port: int
    address: str
    path: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse(url: object, *, production: bool) -> SplitResult:
    """The URL's parts, or UnsafeUrl naming what is wrong with its form (no DNS here)."""
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("must be a URL like https://example.com/hooks")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"must be at most {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(ord(ch) <= 32 or ord(ch) == 127 for ch in url):
        raise UnsafeUrl("must be ASCII without spaces or control characters (percent-encode the rest)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number or out of range)
    except ValueError:
        raise UnsafeUrl("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("must not contain credentials (user:password@)")
    if parts.fragment:
        raise UnsafeUrl("must not contain a #fragment")
    if production and parts.scheme != "https":
        raise UnsafeUrl("must use https:// in production", "unsafe_url")
    return parts


def forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """An address a production webhook may not reach."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None and forbidden(embedded):
            return True
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)  # fec0::/10, deprecated
        or not address.is_global
    )


def _addresses(hostname: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(hostname)]  # an IP literal is not looked up
    except ValueError:
        pass
    try:
        infos = getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise UnsafeUrl(f"the host {hostname!r} does not resolve", "unresolvable")
    return addresses


def resolve(parts: SplitResult, *, production: bool) -> Target:
    """Resolve the URL's host once and check every address it has (production); the Target connects to the
    first."""
    hostname = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = _addresses(hostname, port)
    if production:
        refused = [str(a) for a in addresses if forbidden(a)]
        if refused:
            raise UnsafeUrl(
                f"the host {hostname!r} resolves to {', '.join(dict.fromkeys(refused))}: a loopback, "
                "private, link-local or otherwise non-public address, refused in production",
                "unsafe_url",
            )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, hostname, port, str(addresses[0]), path)
