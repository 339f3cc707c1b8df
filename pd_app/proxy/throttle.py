"""Throttled means throttled: once Pipedrive answers 429 for an installation, the proxy answers 429 itself,
sending nothing, until Pipedrive's reset.

The reset is stored on the installation (`throttled_until`), so every process on every host reads it with
the credential, in the hot path's one statement (auth.py): no extra read per request, one write per 429.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from .. import db, metrics
from ..models import Installation, utcnow
from ..pipedrive.api import UpstreamResponse

log = logging.getLogger(__name__)


class InstallationThrottled(Exception):
    """Pipedrive's 429 for this installation is still in force."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"throttled until {until.isoformat()}")
        self.until = until
        self.retry_after = seconds_left(until)
        self.message = (
            "Pipedrive asked this app to slow down for this installation; "
            f"calls resume in {self.retry_after} s."
        )


def seconds_left(until: datetime) -> int:
    return max(1, int((until - utcnow()).total_seconds() + 0.999))


def _recent() -> dict[int, tuple[datetime, float]]:
    """This process's latest throttles by installation, (until, when stored): a read that waited behind the
    one that met the 429 looks here before calling (its credential's row was read before it was stored)."""
    return current_app.extensions.setdefault("pd_throttles", {})


def stored_since(installation_id: int, since: float) -> datetime | None:
    """The installation's throttle if this process stored one after `since` (time.monotonic())."""
    found = _recent().get(installation_id)
    return found[0] if found is not None and found[1] >= since else None


def check(throttled_until: datetime | None) -> None:
    if throttled_until is not None and throttled_until > utcnow():
        metrics.refused("throttled")
        raise InstallationThrottled(throttled_until)


def record(installation_id: int, resp: UpstreamResponse) -> int:
    """Store the installation's reset after a 429 (only ever moved later); returns the wait in seconds."""
    wait = resp.throttle_wait
    until = utcnow() + timedelta(seconds=wait)
    _recent()[installation_id] = (until, time.monotonic())
    statement = (
        update(Installation)
        .where(
            Installation.id == installation_id,
            or_(Installation.throttled_until.is_(None), Installation.throttled_until < until),
        )
        .values(throttled_until=until)
        .execution_options(synchronize_session=False)
    )
    with Session(db.engine()) as session, session.begin():
        session.execute(statement)
    log.info("Pipedrive throttled installation %s for %s s", installation_id, wait)
    return wait
