"""The token endpoint, through Authlib: the authorize URL, code exchange, refresh and revoke, with HTTP Basic
client authentication. Imported on the first token call, not when a worker starts."""

from __future__ import annotations

import http.cookiejar
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from requests.adapters import HTTPAdapter

from ..config import Settings
from .api import (
    USER_AGENT,
    PipedriveClient,
    TokenEndpointError,
    TokenEndpointUnavailable,
    TokenResponseMalformed,
    valid_expires_in,
)


def check_token_response(resp: requests.Response) -> requests.Response:
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


class OAuthClient:
    def __init__(self, owner: PipedriveClient) -> None:
        self._owner = owner
        # The token endpoint's connections, shared by the short-lived sessions below.
        self._adapter = HTTPAdapter(pool_connections=10, pool_maxsize=64, max_retries=0)

    def session(self) -> OAuth2Session:
        """A new Authlib session for one token call or one authorize URL (it keeps the token it fetched, so
        threads must not share one: they could each get the other's answer)."""
        session = OAuth2Session(
            self.settings.client_id,
            self.settings.client_secret,
            token_endpoint_auth_method="client_secret_basic",
            redirect_uri=self.settings.redirect_uri,
        )
        session.mount("https://", self._adapter)
        session.mount("http://", self._adapter)
        session.headers["User-Agent"] = USER_AGENT
        # No cookies: the connections are shared by every company.
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        session.register_compliance_hook("access_token_response", check_token_response)
        session.register_compliance_hook("refresh_token_response", check_token_response)
        # Proxy settings were read once, at start.
        session.trust_env = False
        session.proxies.update(self._owner.proxies)
        return session

    @property
    def settings(self) -> Settings:
        return self._owner.settings  # the owner's, read at each call (tests swap them)

    def close(self) -> None:
        self._adapter.close()

    def authorize_url(self, state: str) -> str:
        url, _state = self.session().create_authorization_url(
            self.settings.oauth_url + "/oauth/authorize", state=state
        )
        return url

    def _token_call(self, method: str, *args: Any, **kwargs: Any) -> dict:
        fn = getattr(self.session(), method)
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
            resp = self.session().post(
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
