"""Authorization codes, installations (grants) and tokens of the sandbox OAuth server.

Not locked itself: SandboxState calls it under its one lock.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass

CODE_TTL_S = 300  # Pipedrive: a code lives 5 minutes and works once
REFRESH_IDLE_S = 60 * 24 * 3600  # refresh tokens lapse after 60 days unused
PRUNE_AT = 10_000


class GrantError(Exception):
    """An /oauth/token request that must be answered with `invalid_grant`."""


@dataclass
class AuthCode:
    company_id: int
    user_id: int
    redirect_uri: str
    expires_at: float
    used: bool = False


@dataclass
class Grant:
    """One user's installation of the app: a refresh token and the access tokens minted from it."""

    id: int
    company_id: int
    user_id: int
    scope: str
    refresh_token: str
    refresh_used_at: float
    alive: bool = True


@dataclass
class AccessToken:
    grant_id: int
    company_id: int
    user_id: int
    scope: str
    expires_at: float
    revoked: bool = False


@dataclass(frozen=True)
class Issued:
    access_token: str
    refresh_token: str
    grant: Grant


class TokenStore:
    def __init__(self, access_ttl: int, scope: str) -> None:
        self.access_ttl = access_ttl
        self.scope = scope
        self.codes: dict[str, AuthCode] = {}
        self.grants: dict[int, Grant] = {}
        self.by_refresh: dict[str, int] = {}  # live refresh token -> grant id
        self.access: dict[str, AccessToken] = {}
        self._grant_ids = itertools.count(1)

    def issue_code(self, company_id: int, user_id: int, redirect_uri: str, now: float) -> str:
        code = secrets.token_hex(20)
        self.codes[code] = AuthCode(company_id, user_id, redirect_uri, now + CODE_TTL_S)
        return code

    def exchange_code(self, code: str, redirect_uri: str, now: float, scope: str | None = None) -> Issued:
        entry = self.codes.get(code)
        if entry is None or entry.used or entry.expires_at <= now:
            raise GrantError("Invalid grant: authorization code is invalid")
        # A presented code is spent even when the rest of the request is wrong, as RFC 6749 4.1.2 asks.
        entry.used = True
        if redirect_uri != entry.redirect_uri:
            raise GrantError("Invalid grant: redirect_uri does not match the one used to authorize")
        return self.install(entry.company_id, entry.user_id, now, scope)

    def install(self, company_id: int, user_id: int, now: float, scope: str | None = None) -> Issued:
        grant = Grant(
            next(self._grant_ids),
            company_id,
            user_id,
            scope or self.scope,
            self._new_refresh(company_id, user_id),
            now,
        )
        self.grants[grant.id] = grant
        self.by_refresh[grant.refresh_token] = grant.id
        return Issued(self._new_access(grant, now), grant.refresh_token, grant)

    def refresh(self, refresh_token: str, now: float, rotate: bool) -> Issued:
        grant = self.grants.get(self.by_refresh.get(refresh_token, 0))
        if grant is None or not grant.alive:
            raise GrantError("Invalid grant: refresh token is invalid")
        if grant.refresh_used_at + REFRESH_IDLE_S <= now:
            self._kill(grant)
            raise GrantError("Invalid grant: refresh token is invalid")
        grant.refresh_used_at = now
        if rotate:
            # Rotation kills the old refresh token at once; access tokens already out keep working.
            del self.by_refresh[grant.refresh_token]
            grant.refresh_token = self._new_refresh(grant.company_id, grant.user_id)
            self.by_refresh[grant.refresh_token] = grant.id
        return Issued(self._new_access(grant, now), grant.refresh_token, grant)

    def revoke(self, token: str) -> None:
        """Revoke either kind of token; a refresh token takes the whole installation with it."""
        grant_id = self.by_refresh.get(token)
        if grant_id is not None:
            self._kill(self.grants[grant_id])
        elif token in self.access:
            self.access[token].revoked = True

    def authenticate(self, token: str, now: float) -> AccessToken | None:
        entry = self.access.get(token)
        if entry is None or entry.revoked or entry.expires_at <= now:
            return None
        return entry

    def expire_access_tokens(self, company_id: int, user_id: int, now: float) -> int:
        count = 0
        for entry in self.access.values():
            if (entry.company_id, entry.user_id) == (company_id, user_id) and entry.expires_at > now:
                entry.expires_at = now
                count += 1
        return count

    def summary(self, now: float) -> dict[str, int]:
        return {
            "live_access_tokens": sum(
                1 for t in self.access.values() if not t.revoked and t.expires_at > now
            ),
            "live_refresh_tokens": len(self.by_refresh),
            "installations": sum(1 for g in self.grants.values() if g.alive),
            "pending_codes": sum(1 for c in self.codes.values() if not c.used and c.expires_at > now),
        }

    def _kill(self, grant: Grant) -> None:
        grant.alive = False
        self.by_refresh.pop(grant.refresh_token, None)
        for entry in self.access.values():
            if entry.grant_id == grant.id:
                entry.revoked = True

    def _new_access(self, grant: Grant, now: float) -> str:
        # Opaque and long (~260 chars) so the app's token storage is exercised like Pipedrive's v1u: tokens.
        token = "v1u:" + secrets.token_urlsafe(192)
        if len(self.access) >= PRUNE_AT:
            # Long load tests mint many tokens; dead ones are never looked at again.
            self.access = {k: v for k, v in self.access.items() if not v.revoked and v.expires_at > now}
        self.access[token] = AccessToken(
            grant.id, grant.company_id, grant.user_id, grant.scope, now + self.access_ttl
        )
        return token

    @staticmethod
    def _new_refresh(company_id: int, user_id: int) -> str:
        return f"{company_id}:{user_id}:{secrets.token_hex(20)}"
