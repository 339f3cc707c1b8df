"""The token store: encryption at rest, saving a grant, and refresh that never races.

Tokens are encrypted with MultiFernet (first key encrypts, all decrypt). Each plaintext is prefixed with the
installation's identity and the field name before encryption, so a ciphertext copied into another row or
column fails to decrypt there. There is no plaintext fallback.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import db
from .logs import audit
from .models import Installation, utcnow
from .pipedrive import (
    DomainNotAllowed,
    TokenEndpointError,
    TokenEndpointUnavailable,
    client,
    valid_expires_in,
)

if TYPE_CHECKING:
    from .auth import InstallationRef


class TokenDecryptError(Exception):
    """A stored token could not be decrypted (wrong key, or a ciphertext that belongs to another row)."""


class NotInstalled(Exception):
    """No usable installation: never installed, or uninstalled."""


class ReauthRequired(Exception):
    """Pipedrive refused the refresh token (`invalid_grant`): the user must install again."""


class TokenServiceUnavailable(Exception):
    """The token endpoint failed transiently; the stored tokens are kept."""


DECRYPTED_MEMO_SIZE = 10_000


class TokenCipher:
    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is required")
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        # (company, user, field, ciphertext) -> plaintext, for the hot path: an access token is read on every
        # proxied call and changes only when refreshed, which stores a new ciphertext (a new memo key).
        self._memo: dict[tuple[int, int, str, str], str] = {}

    @staticmethod
    def _binding(inst: Any, field: str) -> bytes:
        return f"pd_app/v1|{inst.company_id}|{inst.user_id}|{field}|".encode()

    def decrypt_memo(self, inst: Any, field: str, ciphertext: str | None) -> str:
        """`decrypt`, remembered per row identity and ciphertext (so the binding check still holds)."""
        memo_key = (inst.company_id, inst.user_id, field, ciphertext or "")
        plain = self._memo.get(memo_key)
        if plain is None:
            plain = self.decrypt(inst, field, ciphertext)
            if len(self._memo) >= DECRYPTED_MEMO_SIZE:
                self._memo.clear()
            self._memo[memo_key] = plain
        return plain

    def encrypt(self, inst: Installation, field: str, token: str) -> str:
        return self._fernet.encrypt(self._binding(inst, field) + token.encode()).decode()

    def decrypt(self, inst: Any, field: str, ciphertext: str | None) -> str:
        if not ciphertext:
            raise TokenDecryptError(f"no {field} stored")
        try:
            plain = self._fernet.decrypt(ciphertext.encode())
        except InvalidToken:
            raise TokenDecryptError(f"{field} does not decrypt with any configured key") from None
        binding = self._binding(inst, field)
        if not hmac.compare_digest(plain[: len(binding)], binding):
            raise TokenDecryptError(f"{field} belongs to another installation")
        return plain[len(binding) :].decode()

    def rotate(self, ciphertext: str) -> str:
        return self._fernet.rotate(ciphertext.encode()).decode()


def cipher() -> TokenCipher:
    return current_app.extensions["pd_cipher"]


TRANSIENT_BACKOFF_S = 10.0


@dataclass
class RefreshGate:
    """Per process: one thread at a time per installation heads for the database lock, and after a transient
    token-endpoint failure the others answer at once instead of each trying (and waiting) again.

    Threads wait here without holding a database connection, so a slow token endpoint cannot drain the pool
    and stall other companies' requests.
    """

    _locks: dict[int, threading.Lock] = field(default_factory=dict)
    _failed_until: dict[int, float] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.monotonic

    def lock(self, installation_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(installation_id, threading.Lock())

    def backing_off(self, installation_id: int) -> bool:
        return self._failed_until.get(installation_id, 0.0) > self.clock()

    def failed(self, installation_id: int) -> None:
        self._failed_until[installation_id] = self.clock() + TRANSIENT_BACKOFF_S

    def succeeded(self, installation_id: int) -> None:
        self._failed_until.pop(installation_id, None)


def init_app(app: Flask) -> None:
    app.extensions["pd_cipher"] = TokenCipher(app.config["SETTINGS"].token_encryption_keys)
    app.extensions["pd_refresh_gate"] = RefreshGate()


@dataclass(frozen=True)
class Identity:
    """Who granted the tokens, as `/users/me` says (never as the request says)."""

    company_id: int
    user_id: int
    company_domain: str | None
    company_name: str | None
    user_name: str | None
    user_email: str | None
    is_admin: bool

    @classmethod
    def from_users_me(cls, data: dict) -> Identity:
        access = data.get("access") or []
        is_admin = bool(data.get("is_admin")) or any(isinstance(a, dict) and a.get("admin") for a in access)
        return cls(
            company_id=int(data["company_id"]),
            user_id=int(data["id"]),
            company_domain=data.get("company_domain"),
            company_name=data.get("company_name"),
            user_name=data.get("name"),
            user_email=data.get("email"),
            is_admin=is_admin,
        )


def check_token_response(token: dict, *, new_grant: bool = False) -> None:
    """Raise ValueError unless a token response has what the store needs, in types and sizes it can store.
    A new grant (install) must carry a refresh token; a refresh may omit it (the old one stays)."""
    for name in ("access_token", "api_domain") + (("refresh_token",) if new_grant else ()):
        if not isinstance(token.get(name), str) or not token[name]:
            raise ValueError(f"token response without {name}")
    if token.get("refresh_token") is not None and not isinstance(token["refresh_token"], str):
        raise ValueError("refresh_token is not a string")
    if len(token["api_domain"]) > 255:
        raise ValueError("api_domain is too long")
    scope = token.get("scope")
    if scope is not None and (not isinstance(scope, str) or len(scope) > 1000):
        raise ValueError("scope is not a short string")
    if not valid_expires_in(token.get("expires_in")):
        raise ValueError("expires_in is not a number of seconds")


def _apply_token_response(inst: Installation, token: dict) -> None:
    """Write what the token endpoint returned; the caller has already checked `api_domain`."""
    c = cipher()
    now = utcnow()
    inst.api_domain = str(token["api_domain"]).rstrip("/")
    inst.access_token_enc = c.encrypt(inst, "access_token", str(token["access_token"]))
    if token.get("refresh_token"):
        inst.refresh_token_enc = c.encrypt(inst, "refresh_token", str(token["refresh_token"]))
    inst.access_token_expires_at = now + timedelta(seconds=int(token.get("expires_in") or 3599))
    if token.get("scope"):
        inst.scopes = ",".join(
            s.strip() for s in str(token["scope"]).replace(" ", ",").split(",") if s.strip()
        )
    inst.refresh_token_used_at = now


def save_grant(session: Session, identity: Identity, token: dict) -> Installation:
    """Create or update the installation of (company, user) with a fresh grant; returns the caller's copy.

    The write runs under the same lock as a refresh, so an install never interleaves with one.
    """
    db.end_read(session)
    for attempt in (1, 2):
        with db.locking_session() as locked:
            inst = locked.scalar(
                select(Installation)
                .where(
                    Installation.company_id == identity.company_id, Installation.user_id == identity.user_id
                )
                .with_for_update()
            )
            if inst is None:
                inst = Installation(company_id=identity.company_id, user_id=identity.user_id)
                locked.add(inst)
            inst.company_domain = identity.company_domain
            inst.company_name = identity.company_name
            inst.user_name = identity.user_name
            inst.user_email = identity.user_email
            inst.is_admin = identity.is_admin
            inst.status = "active"
            inst.installed_at = utcnow()
            _apply_token_response(inst, token)
            try:
                locked.commit()
            except IntegrityError:
                # Two callbacks for the same new user raced to insert; the second becomes an update.
                locked.rollback()
                if attempt == 2:
                    raise
                continue
            inst_id = inst.id
        saved = session.get(Installation, inst_id, populate_existing=True)
        assert saved is not None
        return saved
    raise AssertionError("unreachable")


def _due(expires: datetime | None, margin_s: int) -> bool:
    return expires is None or expires - utcnow() <= timedelta(seconds=margin_s)


def _needs_refresh(inst: Installation, margin_s: int) -> bool:
    return _due(inst.access_token_expires_at, margin_s)


def access_token(ref: InstallationRef) -> str:
    """The hot path's token: the installation's access token, from memory once decrypted, refreshed first
    (single-flight) when it is within the margin of expiry."""
    if ref.status == "uninstalled" or not ref.has_refresh_token:
        raise NotInstalled()
    if ref.status == "reauth_required":
        raise ReauthRequired()
    if _due(ref.access_token_expires_at, current_app.config["SETTINGS"].refresh_margin_s):
        return refresh_installation(ref.id, seen_version=ref.version)
    return cipher().decrypt_memo(ref, "access_token", ref.access_token_enc)


def refresh(session: Session, inst: Installation, *, seen_version: int, force: bool = False) -> str:
    """`refresh_installation` for a caller holding the ORM row: ends the caller's transaction first (on
    SQLite its old snapshot could not write after ours commits) and brings its copy up to date after."""
    db.end_read(session)
    try:
        token = refresh_installation(inst.id, seen_version=seen_version, force=force)
    except ReauthRequired:
        _sync(session, inst)
        raise
    _sync(session, inst)
    return token


def refresh_installation(installation_id: int, *, seen_version: int, force: bool = False) -> str:
    """Single-flight refresh: returns a usable access token, refreshing at most once across all processes.

    Under the row lock (PostgreSQL `FOR UPDATE`, SQLite `BEGIN IMMEDIATE`) the row is read again: if another
    process refreshed meanwhile (its version moved past `seen_version`, or the token is no longer due), its
    result is used and Pipedrive is not called. The new tokens are written with a version check.
    """
    settings = current_app.config["SETTINGS"]
    # A caller's session is brought up to date (`_sync`) only after the lock is gone. Doing it under the
    # lock needs a second pooled connection while we hold one, and when the threads queued on the lock
    # hold the rest of the pool, we wait for them while they wait for us (until the pool timeout, 30 s).
    gate: RefreshGate = current_app.extensions["pd_refresh_gate"]
    reauth = False
    with gate.lock(installation_id):
        if gate.backing_off(installation_id):
            raise TokenServiceUnavailable("the token endpoint failed moments ago; not asking again yet")
        with db.locking_session() as locked:
            row = locked.scalar(
                select(Installation).where(Installation.id == installation_id).with_for_update()
            )
            if row is None or row.status == "uninstalled" or not row.refresh_token_enc:
                raise NotInstalled()
            if row.status == "reauth_required":
                raise ReauthRequired()
            # Forced (after a 401): refresh unless someone did since the caller read the row. Not forced:
            # refresh only if the stored token is still due (a version bump alone, e.g. by re-encryption,
            # does not mean a fresh token).
            if force:
                fresh = row.version != seen_version
            else:
                fresh = not _needs_refresh(row, settings.refresh_margin_s)
            if fresh:
                token = cipher().decrypt(row, "access_token", row.access_token_enc)
            else:
                try:
                    token, reauth = _refresh_locked(locked, row, force)
                except TokenServiceUnavailable:
                    gate.failed(installation_id)
                    raise
                gate.succeeded(installation_id)
    if reauth:
        raise ReauthRequired()
    return token


def _refresh_locked(locked: Session, row: Installation, force: bool) -> tuple[str, bool]:
    """Call the token endpoint for the locked row and commit its outcome: (access token, reauth required)."""
    refresh_token = cipher().decrypt(row, "refresh_token", row.refresh_token_enc)
    try:
        response = client().refresh(refresh_token)
        check_token_response(response)
        client().check_domain(response["api_domain"])
    except TokenEndpointError as exc:
        if exc.error != "invalid_grant":
            audit("refresh_failed", company_id=row.company_id, user_id=row.user_id, error=exc.error)
            raise TokenServiceUnavailable(exc.error) from None
        row.status = "reauth_required"
        locked.commit()
        audit("reauth_required", company_id=row.company_id, user_id=row.user_id, error=exc.error)
        return "", True
    except TokenEndpointUnavailable as exc:
        audit("refresh_failed", company_id=row.company_id, user_id=row.user_id, error=str(exc))
        raise TokenServiceUnavailable(str(exc)) from None
    except DomainNotAllowed:
        audit("refresh_refused", company_id=row.company_id, user_id=row.user_id, reason="api_domain")
        raise TokenServiceUnavailable("token response with an api_domain outside the allow-list") from None
    except ValueError as exc:
        audit("refresh_refused", company_id=row.company_id, user_id=row.user_id, reason=str(exc))
        raise TokenServiceUnavailable(str(exc)) from None
    _apply_token_response(row, response)
    row.last_refreshed_at = utcnow()
    # The mapper's version_id_col makes this UPDATE carry `WHERE version = <read under the lock>`.
    locked.commit()
    audit("token_refreshed", company_id=row.company_id, user_id=row.user_id, forced=force)
    return str(response["access_token"]), False


def _sync(session: Session, inst: Installation) -> None:
    """Bring the caller's copy of the row up to date after the locked transaction committed."""
    if inst in session:
        session.refresh(inst)


def expires_in_s(inst: Installation, now: datetime | None = None) -> int | None:
    if inst.access_token_expires_at is None:
        return None
    return int((inst.access_token_expires_at - (now or utcnow())).total_seconds())
