"""The one HTTP client to Pipedrive: token endpoint and API, pooled keep-alive, timeouts, rate-limit headers.

Every outbound request of the app goes through `PipedriveClient`, built once per app. It never chooses a
destination from a request: the OAuth URL comes from configuration and every `api_domain` is checked against
the allow-list (`PIPEDRIVE_API_DOMAINS`) right before a token is attached.
"""

from __future__ import annotations

import json as _json
import logging
import sys
import threading
import urllib.request
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

import urllib3
import urllib3.exceptions

from ..config import Settings
from .allowlist import DomainAllowList
from .breaker import Breakers

if TYPE_CHECKING:
    from .oauth import OAuthClient

log = logging.getLogger(__name__)

THROTTLE_DEFAULT_WAIT_S = 2  # a 429 with neither header: Pipedrive's burst window is 2 s
THROTTLE_MAX_WAIT_S = 24 * 3600
RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-daily-requests-left",
    "x-daily-ratelimit-token-limit",
    "x-daily-ratelimit-token-remaining",
)
# No access token lives a year (and far beyond that, the expiry date itself would overflow).
MAX_EXPIRES_IN_S = 366 * 86400
USER_AGENT = "pd_app/0.1"
_FIXED_HEADERS = {"User-Agent": USER_AGENT}
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


class CircuitOpen(UpstreamUnreachable):
    """The host's circuit breaker refused the call (breaker.py): nothing was sent. `retry_after` is the
    cool-off left, in whole seconds."""

    def __init__(self, host: str, retry_after: int) -> None:
        super().__init__(f"circuit breaker open for {host}", sent=False)
        self.retry_after = retry_after


class UpstreamFailed(Exception):
    """Pipedrive answered a Goals call with an error. Subclasses say which; errors.py maps each to the
    contract's envelope. The message, when given, is Pipedrive's own (cut to 500 characters)."""

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(message or "")
        self.message = message
        self.retry_after = retry_after


class PipedriveRejected(UpstreamFailed):
    """400: Pipedrive refused the request's content."""


class PipedriveUnauthorized(UpstreamFailed):
    """401 even after a refresh: the grant is no longer accepted."""


class AccountInactive(UpstreamFailed):
    """402: the company's Pipedrive subscription is not active."""


class PipedriveForbidden(UpstreamFailed):
    """403: the installation may lack a scope."""


class GoalNotFound(UpstreamFailed):
    """404: no such goal in this company."""


class PipedriveThrottled(UpstreamFailed):
    """429: Pipedrive's rate limit or daily budget for the company was reached."""


class PipedriveUnavailable(UpstreamFailed):
    """503 (maintenance), or no answer to a read: nothing happened, try again later."""


class PipedriveCircuitOpen(PipedriveUnavailable):
    """The company's Pipedrive host failed again and again: its breaker holds calls back; nothing was sent."""


class OutcomeUnknown(UpstreamFailed):
    """A write got no answer (504) or a 5xx (502): it may or may not have been made."""

    def __init__(self, message: str | None = None, *, status: int = 504) -> None:
        super().__init__(message)
        self.status = status


class PipedriveError(UpstreamFailed):
    """Any other failure of Pipedrive's (a 5xx on a read, a body that is not JSON): 502."""


def raise_for_status(resp: UpstreamResponse, method: str) -> None:
    """Turn a non-2xx answer to a Goals call into its domain exception."""
    status = resp.status
    if status < 300:
        return
    message = _upstream_message(resp)
    if status == 400:
        raise PipedriveRejected(message or "Pipedrive refused the request.")
    if status == 401:
        raise PipedriveUnauthorized()
    if status == 402:
        raise AccountInactive()
    if status == 403:
        raise PipedriveForbidden(message)
    if status == 404:
        raise GoalNotFound()
    if status == 429:
        raise PipedriveThrottled(retry_after=resp.throttle_wait)
    if status == 503:
        raise PipedriveUnavailable(retry_after=resp.retry_after)
    if status >= 500 and method != "GET":
        raise OutcomeUnknown(
            f"Pipedrive failed ({status}); the change may or may not have been made.", status=502
        )
    raise PipedriveError(f"Pipedrive answered {status}.")


def _upstream_message(resp: UpstreamResponse) -> str | None:
    body = resp.body if isinstance(resp.body, dict) else {}
    message = body.get("error") or body.get("message")
    return str(message)[:500] if message else None


class UpstreamResponse:
    """Pipedrive's answer: status, the body's bytes as sent, and what the proxy reads from its headers.
    The body is parsed only when something asks for `body`; a proxied success is passed on as bytes."""

    def __init__(self, status: int, raw: bytes, headers: Any = None) -> None:
        self.status = status
        self.raw = raw
        self.headers = headers if headers is not None else {}

    @cached_property
    def body(self) -> Any:
        """The parsed JSON body, or None when it is not JSON (Pipedrive sometimes answers HTML)."""
        try:
            return _json.loads(self.raw)
        except (ValueError, RecursionError):
            return None

    @cached_property
    def rate_limit(self) -> dict[str, int]:
        return parse_rate_limit(self.headers)

    @cached_property
    def throttle_wait(self) -> int:
        """After a 429: seconds until Pipedrive takes calls again, the later of `Retry-After` and
        `x-ratelimit-reset` (both optional), else its 2 s burst window; at most a day."""
        waits = [w for w in (self.retry_after, self.rate_limit.get("ratelimit-reset")) if w]
        return min(max(waits, default=THROTTLE_DEFAULT_WAIT_S), THROTTLE_MAX_WAIT_S)

    @cached_property
    def retry_after(self) -> int | None:
        return _retry_after(self.headers)


def _proxy_manager(url: str, pool_args: dict[str, Any]) -> urllib3.PoolManager:
    parts = urlsplit(url)
    headers = None
    if parts.username is not None:
        credentials = unquote(parts.username) + ":" + unquote(parts.password or "")
        headers = urllib3.make_headers(proxy_basic_auth=credentials)
    return urllib3.ProxyManager(url, proxy_headers=headers, **pool_args)


def parse_rate_limit(headers: Any) -> dict[str, int]:
    figures = {}
    for name in RATE_LIMIT_HEADERS:
        value = headers.get(name)
        text = value.strip().lstrip("-") if value is not None else ""
        if text.isascii() and text.isdigit() and len(text) <= 12:
            figures[name.removeprefix("x-")] = int(value)
    return figures


def _retry_after(headers: Any) -> int | None:
    value = (headers.get("retry-after") or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 9 else None


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps: urllib3 keeps its cause in `reason`, requests urllib3's in `args`."""
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


def maybe_sent(exc: BaseException) -> bool:
    """False only when the request surely never left: the connection itself could not be made."""
    requests = sys.modules.get("requests")  # the token endpoint's errors come from requests (oauth.py)
    if requests is not None and isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    return not any(isinstance(cause, _NEVER_SENT) for cause in _causes(exc))


def valid_expires_in(value: object) -> bool:
    """A token response's `expires_in`: absent, or whole seconds (an integer or digits) up to a year."""
    if value is None:
        return True
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_EXPIRES_IN_S


class PipedriveClient:
    """API calls go through one urllib3 pool manager (keep-alive, a pool per company host); the token endpoint
    goes through Authlib, which also builds the authorize URL: one OAuth client for the whole flow."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.allow_list = DomainAllowList(settings.api_domains)
        # Allow-list answers for the api_domains seen so far: the patterns never change while the app runs.
        self._allowed: dict[str, bool] = {}
        # Proxy settings (HTTPS_PROXY, ...) are read once, here, never per call.
        proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
        self.proxies = proxies
        # Room for 1000 company hosts and up to 256 kept-alive connections each (64 threads, or a gevent
        # worker's many connections: beyond that, a connection is used once and closed). No retries and no
        # redirects: both are decisions of the proxy, never of the transport.
        pool_args: dict[str, Any] = {"num_pools": 1000, "maxsize": 256, "retries": False, "block": False}
        self.pool: urllib3.PoolManager = urllib3.PoolManager(**pool_args)
        # An egress proxy per scheme, as HTTP_PROXY / HTTPS_PROXY say, with its credentials if it has some.
        self._proxy_managers: dict[str, urllib3.PoolManager] = {
            scheme: _proxy_manager(url, pool_args) for scheme, url in proxies.items()
        }
        # api_domain -> its connection pool, so a call skips the manager's URL parsing and pool-key work
        # (about a fifth of urllib3's CPU per call, measured). Only the manager creates pools; this map is
        # bounded below the manager's own limit, so it never holds a pool the manager has closed.
        self._host_pools: dict[str, tuple[urllib3.HTTPConnectionPool, str, str]] = {}
        self._host_pools_guard = threading.Lock()
        self._oauth: OAuthClient | None = None
        # API calls only: the token endpoint has its own guard (tokens/refresh.py).
        self.breakers = Breakers(settings.breaker_failures, settings.breaker_cool_off_s)

    @property
    def oauth(self) -> OAuthClient:
        """The token endpoint's client, built on first use: a worker that only proxies never loads Authlib
        and `requests` (about 15 MB a process)."""
        if self._oauth is None:
            with self._host_pools_guard:
                if self._oauth is None:
                    from .oauth import OAuthClient

                    self._oauth = OAuthClient(self)
        return self._oauth

    def close(self) -> None:
        self._host_pools.clear()
        self.pool.clear()
        for manager in self._proxy_managers.values():
            manager.clear()
        if self._oauth is not None:
            self._oauth.close()

    # -- token endpoint (pipedrive/oauth.py) ----------------------------------------------------
    def authorize_url(self, state: str) -> str:
        return self.oauth.authorize_url(state)

    def exchange_code(self, code: str) -> dict:
        return self.oauth.exchange_code(code)

    def refresh(self, refresh_token: str) -> dict:
        return self.oauth.refresh(refresh_token)

    def revoke(self, token: str, hint: str = "refresh_token") -> None:
        self.oauth.revoke(token, hint)

    # -- API ------------------------------------------------------------------------------------
    def _host_pool(self, api_domain: str) -> tuple[urllib3.HTTPConnectionPool, str, str]:
        """The api_domain's connection pool, what goes before an API path on it (the domain's own path, as
        the sandbox lives under /sandbox, or through a proxy the whole absolute URL), and its host."""
        found = self._host_pools.get(api_domain)
        if found is None:
            with self._host_pools_guard:
                found = self._host_pools.get(api_domain)
                if found is None:
                    if len(self._host_pools) >= self.pool.pools._maxsize // 2:
                        self._host_pools.clear()  # the manager keeps (and later closes) the pools
                    base = api_domain.rstrip("/")
                    scheme = urlsplit(base).scheme
                    manager = self._proxy_managers.get(scheme, self.pool)
                    # A forwarding proxy (http) takes the absolute URL; a tunnel (https) the path.
                    forwarded = manager is not self.pool and scheme == "http"
                    prefix = base if forwarded else urlsplit(base).path
                    found = (manager.connection_from_url(api_domain), prefix, urlsplit(base).netloc)
                    self._host_pools[api_domain] = found
        return found

    def check_domain(self, api_domain: str) -> None:
        allowed = self._allowed.get(api_domain)
        if allowed is None:
            allowed = self.allow_list.allows(api_domain)
            if len(self._allowed) < 10_000:
                self._allowed[api_domain] = allowed
        if not allowed:
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
        """One API call, never retried here. Non-2xx answers are returned; no answer raises
        `UpstreamUnreachable`, and so does a refusal of the host's circuit breaker (`CircuitOpen`)."""
        self.check_domain(api_domain)
        pool, prefix, host = self._host_pool(api_domain)
        url = prefix + path
        if params:
            url += "?" + urlencode(params)
        headers = {"Authorization": "Bearer " + access_token, "Accept": "application/json", **_FIXED_HEADERS}
        body = None
        if json is not None:
            body = _json.dumps(json, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        verdict = self.breakers.admit(host)
        if not verdict.go:
            raise CircuitOpen(host, verdict.retry_after)
        failed = True  # until an answer below 500 says otherwise, whatever ends the call
        try:
            resp = pool.urlopen(
                method,
                url,
                body=body,
                headers=headers,
                timeout=self.settings.upstream_timeout,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=True,
            )
            failed = resp.status >= 500
        except urllib3.exceptions.HTTPError as exc:
            raise UpstreamUnreachable(type(exc).__name__, sent=maybe_sent(exc)) from None
        finally:
            self.breakers.record(host, failed=failed, probe=verdict.probe)
        return UpstreamResponse(resp.status, resp.data, resp.headers)
