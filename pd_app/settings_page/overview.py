"""What the settings page shows an admin besides keys and webhooks: the company's installations, its
Pipedrive budget (today and the last 14 UTC days) and the app's cache and limit settings, read-only."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..models import BudgetDay, Installation, InstallationStatus, utcnow
from ..proxy.budget import ledger
from ..proxy.usage import usage

BUDGET_DAYS = 14

# (environment variable, Settings attribute, unit, what it means): the settings an admin may want to know,
# never a secret. REFERENCE_CACHE_TTL is listed when this version of the app has it.
LIMITS = (
    ("GOALS_CACHE_TTL", "goals_cache_ttl", "seconds", "How long a goals read may be served from the cache."),
    (
        "REFERENCE_CACHE_TTL",
        "reference_cache_ttl",
        "seconds",
        "How long pipelines, stages, activity types, users and currencies may be served from the cache.",
    ),
    ("KEY_RATE_LIMIT", "key_rate_limit", "requests", "Each partner key's own request limit."),
    (
        "COMPANY_DAILY_TOKEN_CAP",
        "company_daily_token_cap",
        "tokens",
        "Pipedrive API tokens the app may spend for the company per UTC day (0: no cap).",
    ),
    ("UPSTREAM_RETRIES", "upstream_retries", "retries", "Extra attempts for a read Pipedrive failed."),
    ("SNAPSHOT_EVERY", "snapshot_every", "seconds", "Time between two progress snapshots of one goal."),
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def installations(session: Session, company_id: int, install_url: str) -> list[dict[str, Any]]:
    """The company's installations, one per Pipedrive user, with what each needs (never a token)."""
    rows = session.scalars(
        select(Installation)
        .where(Installation.company_id == company_id)
        .order_by(Installation.user_name, Installation.user_id)
    ).all()
    return [
        {
            "user_id": inst.user_id,
            "user_name": inst.user_name,
            "is_admin": inst.is_admin,
            "status": inst.status,
            "installed_at": _iso(inst.installed_at),
            "last_refreshed_at": _iso(inst.last_refreshed_at),
            # Each user authorizes for themselves: the link is for that user to open.
            "reconnect_url": install_url if inst.status == InstallationStatus.REAUTH_REQUIRED else None,
        }
        for inst in rows
    ]


def budget(session: Session, company_id: int, today: date | None = None) -> dict[str, Any]:
    """Today's spending against the cap (this process's claims settled first) and the last 14 UTC days,
    oldest first; a day without a ledger row spent nothing."""
    usage().flush()
    today_figures = ledger().spent_today(company_id)
    today = today or utcnow().date()
    first = today - timedelta(days=BUDGET_DAYS - 1)
    spent = dict(
        session.execute(
            select(BudgetDay.day, BudgetDay.spent).where(
                BudgetDay.company_id == company_id, BudgetDay.day >= first, BudgetDay.day <= today
            )
        ).all()
    )
    spent[today] = today_figures["spent_today"]
    days = [first + timedelta(days=n) for n in range(BUDGET_DAYS)]
    return {**today_figures, "days": [{"date": d.isoformat(), "spent": int(spent.get(d, 0))} for d in days]}


def limits(settings: Settings) -> list[dict[str, Any]]:
    return [
        {"name": name, "value": getattr(settings, attribute), "unit": unit, "description": description}
        for name, attribute, unit, description in LIMITS
        if hasattr(settings, attribute)
    ]


def overview(session: Session, settings: Settings, company_id: int) -> dict[str, Any]:
    """The `data` of GET /api/v1/app/settings."""
    latest = session.scalar(
        select(Installation)
        .where(Installation.company_id == company_id)
        .order_by(Installation.installed_at.desc())
        .limit(1)
    )
    install_url = settings.public_url + "/oauth/install"
    return {
        "company": {
            "id": company_id,
            "name": latest.company_name if latest else None,
            "domain": latest.company_domain if latest else None,
        },
        "installations": installations(session, company_id, install_url),
        "budget": budget(session, company_id),
        "limits": limits(settings),
        "install_url": install_url,
    }
