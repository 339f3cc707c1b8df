"""What happens to an installation after the install: uninstall notices, app sharing, vendor-side revoke,
keep-alive refreshes and re-encryption under a new key. The CLI and the callback routes call these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from . import db
from .logs import audit
from .models import Installation, InstallationStatus, SharingNotice, utcnow
from .pipedrive import client
from .pipedrive.api import TokenEndpointUnavailable
from .tokens.cipher import TokenDecryptError, cipher
from .tokens.refresh import TokenServiceUnavailable, refresh
from .tokens.store import NotInstalled, ReauthRequired
from .webhooks import events

PERSONAL_FIELDS = ("user_name", "user_email", "locale", "timezone_name", "default_currency")


def _personal_data(inst: Installation) -> bool:
    return any(getattr(inst, name) is not None for name in PERSONAL_FIELDS)


def _erase(company_id: int, user_id: int, by: str) -> bool:
    """Mark the installation uninstalled and erase its tokens and the user's personal data in one locked
    transaction."""
    with db.locking_session() as locked:
        inst = locked.scalar(
            select(Installation)
            .where(Installation.company_id == company_id, Installation.user_id == user_id)
            .with_for_update()
        )
        if inst is None or (
            inst.status == InstallationStatus.UNINSTALLED
            and inst.refresh_token_enc is None
            and not _personal_data(inst)
        ):
            return False
        inst.status = InstallationStatus.UNINSTALLED
        inst.access_token_enc = None
        inst.refresh_token_enc = None
        inst.access_token_expires_at = None
        # The person goes with the tokens: the row keeps only ids (the company's keys, snapshots and audit
        # trail refer to it); a reinstall fills these in again from /users/me.
        for name in PERSONAL_FIELDS:
            setattr(inst, name, None)
        events.emit(locked, company_id, events.UNINSTALLED, {"company_id": company_id, "user_id": user_id})
        locked.commit()
    audit("uninstalled", company_id=company_id, user_id=user_id, by=by)
    return True


def uninstall(session: Session, company_id: int, user_id: int) -> bool:
    """Pipedrive told us this user uninstalled: erase the tokens at once. True when something changed."""
    db.end_read(session)
    changed = _erase(company_id, user_id, by="pipedrive")
    if not changed:
        audit("uninstall_ignored", company_id=company_id, user_id=user_id)
    return changed


def record_sharing(session: Session, company_id: int, user_id: int, is_shared: bool) -> None:
    db.begin_write(session)
    with db.transaction(session):
        session.add(SharingNotice(company_id=company_id, user_id=user_id, is_shared=is_shared))
    audit("app_sharing", company_id=company_id, user_id=user_id, is_shared=is_shared)


@dataclass
class RevokeOutcome:
    revoked: list[tuple[int, int]] = field(default_factory=list)
    failed: list[tuple[int, int, str]] = field(default_factory=list)


def revoke(session: Session, company_id: int, user_id: int | None = None) -> RevokeOutcome:
    """Disconnect from our side: revoke the refresh token at Pipedrive (which uninstalls the app for that
    user), then erase the tokens. A failed revoke keeps the tokens so it can be tried again."""
    query = select(Installation).where(
        Installation.company_id == company_id, Installation.refresh_token_enc.is_not(None)
    )
    if user_id is not None:
        query = query.where(Installation.user_id == user_id)
    outcome = RevokeOutcome()
    for inst in session.scalars(query.order_by(Installation.user_id)).all():
        try:
            client().revoke(cipher().decrypt(inst, "refresh_token", inst.refresh_token_enc), "refresh_token")
        except (TokenEndpointUnavailable, TokenDecryptError) as exc:
            outcome.failed.append((inst.company_id, inst.user_id, str(exc)))
            audit("revoke_failed", company_id=inst.company_id, user_id=inst.user_id, error=str(exc))
            continue
        db.end_read(session)
        _erase(inst.company_id, inst.user_id, by="operator")
        outcome.revoked.append((inst.company_id, inst.user_id))
        audit("revoked", company_id=inst.company_id, user_id=inst.user_id)
    return outcome


@dataclass
class KeepAliveOutcome:
    refreshed: int = 0
    reauth: list[tuple[int, int]] = field(default_factory=list)
    failed: list[tuple[int, int, str]] = field(default_factory=list)


def refresh_due(session: Session, older_than: timedelta) -> KeepAliveOutcome:
    """Refresh every active installation whose refresh token has gone unused for `older_than`.

    Safe on every instance at once: each refresh is single-flight, and a row another process refreshed
    after we listed it is skipped (its version moved on).
    """
    cutoff = utcnow() - older_than
    due = session.scalars(
        select(Installation)
        .where(
            Installation.status == InstallationStatus.ACTIVE,
            Installation.refresh_token_enc.is_not(None),
            or_(Installation.refresh_token_used_at.is_(None), Installation.refresh_token_used_at < cutoff),
        )
        .order_by(Installation.id)
    ).all()
    outcome = KeepAliveOutcome()
    for inst in due:
        seen = inst.version
        try:
            refresh(session, inst, seen_version=seen, force=True)
        except ReauthRequired:
            outcome.reauth.append((inst.company_id, inst.user_id))
            continue
        except (TokenServiceUnavailable, NotInstalled, TokenDecryptError) as exc:
            outcome.failed.append((inst.company_id, inst.user_id, type(exc).__name__))
            continue
        # A moved version means the grant was refreshed just now, by this process or by another instance.
        outcome.refreshed += 1
    return outcome


def reencrypt_all() -> tuple[int, int]:
    """Re-encrypt every stored token under the first key. Each row is rewritten under its own lock, so a
    refresh running meanwhile is never overwritten. Returns (rows rewritten, rows that failed)."""
    # Listing needs no lock (it was taking SQLite's write lock for a read); each row is locked below.
    session = db.get_session()
    ids = session.scalars(
        select(Installation.id).where(
            or_(Installation.access_token_enc.is_not(None), Installation.refresh_token_enc.is_not(None))
        )
    ).all()
    db.end_read(session)
    done = failed = 0
    c = cipher()
    for inst_id in ids:
        with db.locking_session() as locked:
            inst = locked.scalar(select(Installation).where(Installation.id == inst_id).with_for_update())
            if inst is None:
                continue
            try:
                for name in ("access_token_enc", "refresh_token_enc"):
                    value = getattr(inst, name)
                    if value:
                        # Prove it decrypts for this row before rewriting it.
                        c.decrypt(inst, name.removesuffix("_enc"), value)
                        setattr(inst, name, c.rotate(value))
            except TokenDecryptError as exc:
                failed += 1
                audit("reencrypt_failed", company_id=inst.company_id, user_id=inst.user_id, error=str(exc))
                locked.rollback()
                continue
            locked.commit()
            done += 1
    audit("tokens_reencrypted", rows=done, failed=failed)
    return done, failed
