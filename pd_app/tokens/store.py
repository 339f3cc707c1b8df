"""Stored grants: saving what the token endpoint answered (install and refresh), and what a row's status
means for its callers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Self

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import db
from ..models import Installation, InstallationStatus, utcnow
from ..pipedrive.api import valid_expires_in
from .cipher import cipher

if TYPE_CHECKING:
    from ..auth import InstallationRef
    from ..install.identity import Identity


class _Unusable(Exception):
    naming = ""  # the message naming the installation, from its company and user

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "")
        self.message = message  # None: errors.py's general text

    @classmethod
    def of(cls, company_id: int, user_id: int) -> Self:
        return cls(cls.naming.format(company_id=company_id, user_id=user_id))


class NotInstalled(_Unusable):
    """No usable installation: never installed, or uninstalled."""

    naming = (
        "The installation serving this credential (user {user_id} of company {company_id}) is uninstalled."
    )


class ReauthRequired(_Unusable):
    """Pipedrive refused the refresh token (`invalid_grant`): the user must install again."""

    naming = (
        "Pipedrive no longer accepts the authorization of the installation serving this credential "
        "(user {user_id} of company {company_id})."
    )


def ensure_installed(ref: InstallationRef | None) -> InstallationRef:
    """The installation serving a credential, unless there is none or it is uninstalled (NotInstalled,
    naming it)."""
    if ref is None:
        raise NotInstalled()
    if ref.status == InstallationStatus.UNINSTALLED or not ref.has_refresh_token:
        raise NotInstalled.of(ref.company_id, ref.user_id)
    return ref


def ensure_serving(ref: InstallationRef | None) -> InstallationRef:
    """The installation serving a credential, if it can call Pipedrive now; otherwise the error naming it."""
    ref = ensure_installed(ref)
    if ref.status == InstallationStatus.REAUTH_REQUIRED:
        raise ReauthRequired.of(ref.company_id, ref.user_id)
    return ref


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
            inst.locale = identity.locale
            inst.default_currency = identity.default_currency
            inst.timezone_name = identity.timezone_name
            inst.status = InstallationStatus.ACTIVE
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


def expires_in_s(inst: Installation, now: datetime | None = None) -> int | None:
    if inst.access_token_expires_at is None:
        return None
    return int((inst.access_token_expires_at - (now or utcnow())).total_seconds())
