"""Registered webhooks: adding one (its signing secret made here, stored encrypted, shown once), listing them
with their health and recent delivery log, removing one with its pending deliveries. The API and the CLI
both call these; `company_id=None` is the operator's view of every company."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from .. import db
from ..bodies import InvalidFields
from ..logs import audit
from ..models import Webhook, WebhookAttempt, WebhookDelivery
from ..tokens.cipher import TokenDecryptError, cipher
from . import safety
from .events import EVENT_TYPES

SECRET_PREFIX = "whsec_"
RECENT_ATTEMPTS = 5  # shown per webhook by `list` and the API
MAX_PER_COMPANY = 20


class InvalidWebhook(InvalidFields):
    """The webhook's URL or events are not acceptable."""


class WebhookNotFound(Exception):
    """No webhook with this id (for this company)."""


class _Owner(NamedTuple):
    """What a secret's ciphertext is bound to, in the token cipher's terms: the company, and the webhook's
    id in the field name (user 0 is no Pipedrive user): a ciphertext copied to another row does not
    decrypt there."""

    company_id: int
    user_id: int


def _binding(hook: Webhook) -> tuple[_Owner, str]:
    return _Owner(hook.company_id, 0), f"webhook_secret:{hook.id}"


def secret_of(hook: Webhook) -> str:
    owner, field = _binding(hook)
    return cipher().decrypt(owner, field, hook.secret_enc)


def validate(url: object, events: object, *, production: bool) -> tuple[str, list[str]]:
    """The URL (form, and in production where it resolves) and the events, or InvalidWebhook with each
    problem."""
    problems: list[dict[str, str]] = []
    try:
        parts = safety.parse(url, production=production)
        if production:  # where it points; in development and tests any host will do, unresolved
            safety.resolve(parts, production=production)
    except safety.UnsafeUrl as exc:
        problems.append({"field": "url", "message": f"url {exc.message}.", "code": exc.code})
    chosen: list[str] = []
    if not isinstance(events, list) or not events:
        problems.append(
            {
                "field": "events",
                "message": f"events must be a non-empty list of: {', '.join(EVENT_TYPES)}.",
                "code": "invalid_type" if not isinstance(events, list) else "required",
            }
        )
    else:
        for i, name in enumerate(events):
            if name not in EVENT_TYPES:
                problems.append(
                    {
                        "field": f"events[{i}]",
                        "message": f"{name!r} is not an event; choose from {', '.join(EVENT_TYPES)}.",
                        "code": "invalid_choice",
                    }
                )
        # The contract's order, each once.
        chosen = [name for name in EVENT_TYPES if name in events]
    if problems:
        raise InvalidWebhook(problems)
    assert isinstance(url, str)
    return url, chosen


def add(
    session: Session, company_id: int, url: object, events: object, *, created_by: str, production: bool
) -> tuple[Webhook, str]:
    """Register a webhook; returns it and its signing secret (the only time the secret is available in
    clear outside a delivery)."""
    url, chosen = validate(url, events, production=production)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    # The count and the insert in one transaction that holds the write lock from its start (SQLite's BEGIN
    # IMMEDIATE): on the request's session, a read begun before another request's commit could never write
    # on SQLite ("database is locked", 503) when two adds met (tests/test_fuzz.py found it).
    db.end_read(session)
    with db.locking_session() as locked:
        if locked.get_bind().dialect.name == "postgresql":
            # PostgreSQL's FOR UPDATE cannot lock rows not yet inserted: one add per company at a time, or
            # two at once both count 19 and the company ends with 21.
            locked.execute(text("SELECT pg_advisory_xact_lock(:space, :company)"), _lock_key(company_id))
        count = locked.scalar(select(func.count()).where(Webhook.company_id == company_id)) or 0
        if count >= MAX_PER_COMPANY:
            message = f"A company may have at most {MAX_PER_COMPANY} webhooks; remove one first."
            raise InvalidWebhook([{"field": "url", "message": message, "code": "too_many"}])
        hook = Webhook(
            company_id=company_id, url=url, events=chosen, secret_enc="-", created_by=created_by[:64]
        )
        locked.add(hook)
        locked.flush()  # the id the secret is bound to
        owner, field = _binding(hook)
        hook.secret_enc = cipher().encrypt(owner, field, secret)
        locked.commit()
    audit("webhook_added", webhook_id=hook.id, company_id=company_id, events=chosen, by=created_by)
    return hook, secret


ADVISORY_LOCK_SPACE = 0x57484B  # "WHK": this module's advisory locks, keyed by company


def _lock_key(company_id: int) -> dict[str, int]:
    return {"space": ADVISORY_LOCK_SPACE, "company": company_id % 2**31}


MAX_ID = 2**31 - 1  # an integer column: a larger id names no webhook (and would not fit the query)


def _owned(session: Session, webhook_id: int, company_id: int | None) -> Webhook:
    if not 0 < webhook_id <= MAX_ID:
        raise WebhookNotFound(webhook_id)
    hook = session.get(Webhook, webhook_id)
    if hook is None or (company_id is not None and hook.company_id != company_id):
        raise WebhookNotFound(webhook_id)
    return hook


def remove(session: Session, webhook_id: int, company_id: int | None) -> None:
    """Remove the webhook, its pending deliveries and its log (WebhookNotFound for another company's)."""
    db.begin_write(session)
    with db.transaction(session):
        hook = _owned(session, webhook_id, company_id)
        # Explicit rather than left to ON DELETE CASCADE, so it holds on any database.
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
        session.execute(delete(WebhookAttempt).where(WebhookAttempt.webhook_id == hook.id))
        session.delete(hook)
    audit("webhook_removed", webhook_id=webhook_id, company_id=hook.company_id)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def describe(
    hook: Webhook, attempts: Sequence[WebhookAttempt], pending: int, *, secret: str | None = None
) -> dict[str, Any]:
    """A webhook as the API and the CLI show it: never its secret, except `secret` right after `add`."""
    data: dict[str, Any] = {
        "id": hook.id,
        "company_id": hook.company_id,
        "url": hook.url,
        "events": list(hook.events or ()),
        "created_at": _iso(hook.created_at),
        "failing": hook.failing_since is not None,
        "failing_since": _iso(hook.failing_since),
        "pending_deliveries": pending,
        "last_attempts": [
            {
                "at": _iso(a.at),
                "event_id": a.event_id,
                "status": a.status,
                "duration_ms": a.duration_ms,
                "error": a.error,
            }
            for a in attempts
        ],
    }
    if secret is not None:
        data["secret"] = secret
    return data


def listing(session: Session, company_id: int | None) -> list[dict[str, Any]]:
    """Every webhook (of the company), oldest first, with its health and its last few attempts."""
    query = select(Webhook).order_by(Webhook.id)
    if company_id is not None:
        query = query.where(Webhook.company_id == company_id)
    hooks = session.scalars(query).all()
    ids = [h.id for h in hooks]
    pending = dict(
        session.execute(
            select(WebhookDelivery.webhook_id, func.count())
            .where(WebhookDelivery.webhook_id.in_(ids), WebhookDelivery.delivered_at.is_(None))
            .group_by(WebhookDelivery.webhook_id)
        ).all()
    )
    return [describe(h, recent_attempts(session, h.id), pending.get(h.id, 0)) for h in hooks]


def recent_attempts(session: Session, webhook_id: int, limit: int = RECENT_ATTEMPTS) -> list[WebhookAttempt]:
    return list(
        session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.webhook_id == webhook_id)
            .order_by(WebhookAttempt.id.desc())
            .limit(limit)
        )
    )


def reencrypt_secrets(session: Session) -> tuple[int, int]:
    """Re-encrypt every stored signing secret under the first key (with `tokens reencrypt`)."""
    done = failed = 0
    with db.transaction(session):
        hooks: Iterable[Webhook] = session.scalars(select(Webhook).order_by(Webhook.id)).all()
        for hook in hooks:
            owner, field = _binding(hook)
            try:
                cipher().decrypt(owner, field, hook.secret_enc)  # proves it belongs to this row
            except TokenDecryptError:
                failed += 1
                continue
            hook.secret_enc = cipher().rotate(hook.secret_enc)
            done += 1
    return done, failed
