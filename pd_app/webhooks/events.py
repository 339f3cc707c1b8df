"""Recording events: one `WebhookDelivery` per webhook of the company that subscribed to the event type,
in the caller's transaction (so an event exists exactly when the change that caused it was committed).
Delivery is webhooks/delivery.py's."""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Webhook, WebhookDelivery, utcnow

GOAL_PROGRESS = "goal.progress"
GOAL_REACHED = "goal.reached"
REAUTH_REQUIRED = "installation.reauth_required"
UNINSTALLED = "installation.uninstalled"
EVENT_TYPES = (GOAL_PROGRESS, GOAL_REACHED, REAUTH_REQUIRED, UNINSTALLED)
EMITTED = "pd_webhooks_emitted"  # session.info flag: delivery.after_commit queues a delivery run


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def emit(session: Session, company_id: int, event_type: str, data: dict[str, Any]) -> int:
    """Record the event for every webhook of the company subscribed to it; returns how many deliveries.
    The caller commits. The body is built once, here: the signature covers these exact bytes."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    hooks = session.scalars(select(Webhook).where(Webhook.company_id == company_id)).all()
    subscribed = [hook for hook in hooks if event_type in (hook.events or ())]
    if not subscribed:
        return 0
    now = utcnow()
    event_id = new_event_id()
    body = json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": now.isoformat().replace("+00:00", "Z"),
            "company_id": company_id,
            "data": data,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    session.info[EMITTED] = True
    for hook in subscribed:
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                event_id=event_id,
                event_type=event_type,
                body=body,
                created_at=now,
                next_attempt_at=now,
            )
        )
    return len(subscribed)
