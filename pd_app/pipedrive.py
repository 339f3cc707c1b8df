"""The one HTTP client to Pipedrive: token endpoint and API, pooled keep-alive, timeouts, rate-limit headers.

Every outbound request of the app goes through `PipedriveClient`, built once per app. It never chooses a
destination from a request: the OAuth URL comes from configuration and every `api_domain` is checked against
the allow-list (`PIPEDRIVE_API_DOMAINS`) right before a token is attached.
"""

from __future__ import annotations

import http.cookiejar
import logging
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask, current_app
from requests.adapters import HTTPAdapter

from .config import Settings

log = logging.getLogger(__name__)

RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-daily-requests-left",
    "x-daily-ratelimit-token-limit",
    "x-daily-ratelimit-token-remaining",
)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# No access token lives a year (and far beyond that, the expiry date itself would overflow).
MAX_EXPIRES_IN_S = 366 * 86400
# urllib3's errors for a connection that was never made: nothing of the request can have left.
_NEVER_SENT = (
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.NameResolutionError,
    urllib3.exceptions.ConnectTimeoutError,
)


class DomainNotAllowed(Exception):
    """An `api_domain` outside PIPEDRIVE_API_DOMAINS: no token may be sent there."""


class TokenEndpointError(Exception):
    """Pipedrive's token endpoint answered with an OAuth error (e.g. `invalid_grant`)."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.description = description


class TokenEndpointUnavailable(Exception):
    """The token endpoint timed out, was unreachable or answered 5xx/garbage: transient, keep the tokens."""


class TokenResponseMalformed(TokenEndpointUnavailable):
    """The token endpoint answered, but not with a token response this app can read."""


class UpstreamUnreachable(Exception):
    """An API call got no answer (timeout, connection refused). `sent` tells whether the request may have
    reached Pipedrive, which matters for writes."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass
class UpstreamResponse:
    status: int
    body: Any  # parsed JSON, or None when the body was not JSON (Pipedrive sometimes answers HTML)
    rate_limit: dict[str, int] = field(default_factory=dict)
    retry_after: int | None = None


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


def _parse_rate_limit(headers: requests.structures.CaseInsensitiveDict) -> dict[str, int]:
    figures = {}
    for name in RATE_LIMIT_HEADERS:
        value = headers.get(name)
        if value is not None and value.strip().lstrip("-").isdigit():
            figures[name.removeprefix("x-")] = int(value)
    return figures


def _retry_after(headers: requests.structures.CaseInsensitiveDict) -> int | None:
    value = (headers.get("retry-after") or "").strip()
    return int(value) if value.isdigit() else None


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps: requests keeps urllib3's error in `args`, urllib3 its cause in
    `reason`."""
    found: list[BaseException] = []
    pending = [exc]
    while pending:
        current = pending.pop()
        if any(current is seen for seen in found):
            continue
        found.append(current)
        linked = [*current.args, getattr(current, "reason", None), current.__cause__, current.__context__]
        pending.extend(e for e in linked if isinstance(e, BaseException))
    return found


def _maybe_sent(exc: requests.RequestException) -> bool:
    """False only when the request surely never left: the connection itself could not be made."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    return not any(isinstance(cause, _NEVER_SENT) for cause in _causes(exc))


def valid_expires_in(value: object) -> bool:
    """A token response's `expires_in`: absent, or whole seconds (an integer or digits) up to a year."""
    if value is None:
        return True
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_EXPIRES_IN_S


def _check_token_response(resp: requests.Response) -> requests.Response:
    """Authlib compliance hook: tell transient token-endpoint failures from OAuth errors, and refuse an
    answer Authlib itself would choke on (it reads `expires_in` as a number)."""
    if resp.status_code >= 500 or 300 <= resp.status_code < 400:
        raise TokenEndpointUnavailable(f"token endpoint answered {resp.status_code}")
    try:
        body = resp.json()
    except ValueError:
        raise TokenEndpointUnavailable(f"token endpoint answered {resp.status_code} without JSON") from None
    if not isinstance(body, dict) or not valid_expires_in(body.get("expires_in")):
        raise TokenResponseMalformed(f"token endpoint answered {resp.status_code} with a malformed body")
    return resp


class PipedriveClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.allow_list = DomainAllowList(settings.api_domains)
        # One adapter per app, shared by every call. It keeps a pool per host, and every company has its own
        # api_domain host: room for 1000 hosts, 64 kept-alive connections each (a gunicorn worker's threads).
        # API calls go through `self.http` and pass their token explicitly, so Authlib never refreshes
        # behind the token store's back.
        self._proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
        self._adapter = HTTPAdapter(pool_connections=1000, pool_maxsize=64, max_retries=0)
        self.http = self._session()

    def _session(self) -> OAuth2Session:
        session = OAuth2Session(
            self.settings.client_id,
            self.settings.client_secret,
            token_endpoint_auth_method="client_secret_basic",
        )
        session.mount("https://", self._adapter)
        session.mount("http://", self._adapter)
        session.headers["User-Agent"] = "pd_app/0.1"
        # No cookies, ever: the session is shared by every company, so a cookie one api_domain set would
        # ride along on the next call for that host, whoever's token it carries.
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        session.register_compliance_hook("access_token_response", _check_token_response)
        session.register_compliance_hook("refresh_token_response", _check_token_response)
        # Proxy settings (HTTPS_PROXY, ...) are read once, here, instead of requests scanning the whole
        # environment (and .netrc) on every call: about 1 ms of CPU per proxied request, measured.
        session.trust_env = False
        session.proxies.update(self._proxies)
        return session

    def close(self) -> None:
        self.http.close()

    # -- token endpoint -------------------------------------------------------------------------
    def _token_call(self, method: str, *args, **kwargs) -> dict:  # noqa: ANN002, ANN003
        # A session of its own for each token call (on the shared pool): Authlib keeps the token it
        # fetched on the session (`session.token = ...; return session.token`), so threads sharing one
        # session could each get the other's answer: one installation stored with another's tokens.
        fn = getattr(self._session(), method)
        try:
            return dict(fn(*args, timeout=self.settings.token_timeout, allow_redirects=False, **kwargs))
        except OAuthError as exc:
            raise TokenEndpointError(exc.error or "oauth_error", exc.description) from None
        except requests.RequestException as exc:
            raise TokenEndpointUnavailable(type(exc).__name__) from None

    def exchange_code(self, code: str) -> dict:
        return self._token_call(
            "fetch_token",
            self.settings.oauth_url + "/oauth/token",
            grant_type="authorization_code",
            code=code,
            redirect_uri=self.settings.redirect_uri,
        )

    def refresh(self, refresh_token: str) -> dict:
        return self._token_call(
            "refresh_token", self.settings.oauth_url + "/oauth/token", refresh_token=refresh_token
        )

    def revoke(self, token: str, hint: str = "refresh_token") -> None:
        try:
            resp = self.http.post(
                self.settings.oauth_url + "/oauth/revoke",
                data={"token": token, "token_type_hint": hint},
                auth=(self.settings.client_id, self.settings.client_secret),
                timeout=self.settings.token_timeout,
                withhold_token=True,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise TokenEndpointUnavailable(type(exc).__name__) from None
        if resp.status_code >= 300:  # a redirect is not a revocation
            raise TokenEndpointUnavailable(f"revoke answered {resp.status_code}")

    # -- API ------------------------------------------------------------------------------------
    def check_domain(self, api_domain: str) -> None:
        if not self.allow_list.allows(api_domain):
            raise DomainNotAllowed(api_domain)

    def call(
        self,
        method: str,
        api_domain: str,
        path: str,
        access_token: str,
        *,
        params: list[tuple[str, str]] | None = None,
        json: Any = None,
    ) -> UpstreamResponse:
        self.check_domain(api_domain)
        try:
            resp = self.http.request(
                method,
                api_domain.rstrip("/") + path,
                params=params,
                json=json,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                timeout=self.settings.upstream_timeout,
                withhold_token=True,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise UpstreamUnreachable(type(exc).__name__, sent=_maybe_sent(exc)) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        return UpstreamResponse(
            status=resp.status_code,
            body=body,
            rate_limit=_parse_rate_limit(resp.headers),
            retry_after=_retry_after(resp.headers),
        )


def init_app(app: Flask) -> None:
    app.extensions["pd_client"] = PipedriveClient(app.config["SETTINGS"])


def client() -> PipedriveClient:
    return current_app.extensions["pd_client"]
