"""Refresh that never races: one refresh per installation across every process (a row lock), one attempt
per process at a time (the gate), and the hot path's usable access token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import db
from ..logs import audit
from ..models import Installation, InstallationStatus, utcnow
from ..pipedrive import client
from ..pipedrive.api import (
    DomainNotAllowed,
    TokenEndpointError,
    TokenEndpointUnavailable,
)
from ..webhooks import events
from .cipher import cipher
from .store import (
    NotInstalled,
    ReauthRequired,
    _apply_token_response,
    check_token_response,
    ensure_serving,
)

if TYPE_CHECKING:
    from ..auth import InstallationRef


class TokenServiceUnavailable(Exception):
    """The token endpoint failed transiently; the stored tokens are kept."""


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


def _due(expires: datetime | None, margin_s: int) -> bool:
    return expires is None or expires - utcnow() <= timedelta(seconds=margin_s)


def access_token(ref: InstallationRef) -> tuple[str, bool]:
    """The hot path's token: the installation's access token, from memory once decrypted, refreshed first
    (single-flight) when it is within the margin of expiry. The flag says it was refreshed: the caller's
    copy of the row (api_domain, version) is then stale."""
    ensure_serving(ref)
    if _due(ref.access_token_expires_at, current_app.config["SETTINGS"].refresh_margin_s):
        return refresh_installation(ref.id, seen_version=ref.version), True
    return cipher().decrypt_memo(ref, "access_token", ref.access_token_enc), False


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
            if row is None:
                raise NotInstalled()
            named = (row.company_id, row.user_id)
            if row.status == InstallationStatus.UNINSTALLED or not row.refresh_token_enc:
                raise NotInstalled.of(*named)
            if row.status == InstallationStatus.REAUTH_REQUIRED:
                raise ReauthRequired.of(*named)
            # Forced (after a 401): refresh unless someone did since the caller read the row. Not forced:
            # refresh only if the stored token is still due (a version bump alone, e.g. by re-encryption,
            # does not mean a fresh token).
            if force:
                fresh = row.version != seen_version
            else:
                fresh = not _due(row.access_token_expires_at, settings.refresh_margin_s)
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
        raise ReauthRequired.of(*named)
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
        row.status = InstallationStatus.REAUTH_REQUIRED
        who = {"company_id": row.company_id, "user_id": row.user_id}
        events.emit(locked, row.company_id, events.REAUTH_REQUIRED, who)
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
