"""The demo data every sandbox starts with (and returns to on reset).

Dates are computed from the day of seeding so the demo goals always cover "now"; everything else,
goal ids included, is the same on every run.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any


@dataclass(frozen=True)
class Company:
    id: int
    name: str
    domain: str
    country: str
    industry: str


@dataclass(frozen=True)
class User:
    id: int
    company_id: int
    name: str
    email: str
    is_admin: bool
    phone: str | None = None
    created: str = "2023-02-14 09:12:44"
    # Each Pipedrive user picks their own language and region (numbers, dates) and default currency.
    locale: str = "en_GB"
    default_currency: str = "EUR"
    timezone: tuple[str, str] = ("Europe/London", "+00:00")


@dataclass(frozen=True)
class Team:
    id: int
    company_id: int
    name: str
    manager_id: int
    member_ids: tuple[int, ...] = field(default=())


COMPANIES = (
    Company(1001, "Acme Sales Ltd", "acme", "GB", "Software"),
    Company(1002, "Globex", "globex", "US", "Manufacturing"),
)
USERS = (
    User(2001, 1001, "Ada Admin", "ada@acme.example", True, "+44 20 7946 0001", "2022-09-01 08:30:00"),
    User(2002, 1001, "Sam Seller", "sam@acme.example", False, "+44 20 7946 0002", "2023-01-09 10:02:17"),
    User(
        2003,
        1001,
        "Rita Rep",
        "rita@acme.example",
        False,
        None,
        "2023-06-19 13:45:51",
        locale="de_DE",
        timezone=("Europe/Berlin", "+01:00"),
    ),
    User(2101, 1002, "Gil Globex", "gil@globex.example", True, "+1 555 0100", "2021-11-30 16:20:05"),
)
TEAMS = (Team(1, 1001, "Field Sales", manager_id=2001, member_ids=(2002, 2003)),)


def goal_id(counter: int) -> str:
    """The id of the n-th goal created since seeding: 32 hex chars, the same on every run."""
    return hashlib.sha256(f"pd-sandbox-goal-{counter}".encode()).hexdigest()[:32]


def report_id(counter: int) -> str:
    return hashlib.sha256(f"pd-sandbox-report-{counter}".encode()).hexdigest()[:32]


def permission_set_id(user: User, app: str) -> str:
    # Pipedrive's permission set ids are UUIDs; derive them so they are stable per user and app.
    return str(uuid.UUID(hashlib.md5(f"{user.id}:{app}".encode()).hexdigest()))


def _quarter(day: date) -> tuple[date, date]:
    first_month = 3 * ((day.month - 1) // 3) + 1
    if first_month == 10:
        return date(day.year, 10, 1), date(day.year, 12, 31)
    return date(day.year, first_month, 1), date(day.year, first_month + 3, 1) - timedelta(days=1)


def seed_goals(today: date) -> list[tuple[int, dict[str, Any]]]:
    """(company_id, goal) pairs without ids; the state numbers them in this order."""
    year_start, year_end = date(today.year, 1, 1), date(today.year, 12, 31)
    monday = today - timedelta(days=today.weekday())
    quarter_start, quarter_end = _quarter(today)
    last_year = today.year - 1

    def goal(
        owner: int,
        title: str,
        type_name: str,
        params: dict[str, Any],
        assignee: tuple[int, str],
        interval: str,
        start: date,
        end: date | None,
        outcome: dict[str, Any],
        active: bool = True,
    ) -> dict[str, Any]:
        return {
            "owner_id": owner,
            "title": title,
            "type": {"name": type_name, "params": params},
            "assignee": {"id": assignee[0], "type": assignee[1]},
            "interval": interval,
            "duration": {"start": start.isoformat(), "end": end.isoformat() if end else None},
            "expected_outcome": outcome,
            "is_active": active,
        }

    acme = [
        goal(
            2001,
            "Won revenue per month",
            "deals_won",
            {"pipeline_id": [1]},
            (2002, "person"),
            "monthly",
            year_start,
            year_end,
            {"target": 50000, "tracking_metric": "sum", "currency_id": 1},
        ),
        goal(
            2001,
            "New deals every week",
            "deals_started",
            {"pipeline_id": None},
            (2003, "person"),
            "weekly",
            monday - timedelta(weeks=6),
            None,
            {"target": 15, "tracking_metric": "quantity"},
        ),
        goal(
            2001,
            "Calls and meetings",
            "activities_completed",
            {"pipeline_id": None, "activity_type_id": [1, 2]},
            (2001, "person"),
            "weekly",
            monday - timedelta(weeks=2),
            monday + timedelta(weeks=10, days=6),
            {"target": 40, "tracking_metric": "quantity"},
        ),
        goal(
            2001,
            "Deals moved to Proposal",
            "deals_progressed",
            {"pipeline_id": [1], "stage_id": 3},
            (1, "team"),
            "quarterly",
            quarter_start,
            quarter_end,
            {"target": 30, "tracking_metric": "quantity"},
        ),
        goal(
            2001,
            "Revenue forecast this year",
            "revenue_forecast",
            {"pipeline_id": None},
            (1001, "company"),
            "yearly",
            year_start,
            year_end,
            {"target": 1200000, "tracking_metric": "sum", "currency_id": 1},
        ),
        goal(
            2001,
            "Deals won last year",
            "deals_won",
            {"pipeline_id": None},
            (2001, "person"),
            "monthly",
            date(last_year, 1, 1),
            date(last_year, 12, 31),
            {"target": 12, "tracking_metric": "quantity"},
            active=False,
        ),
    ]
    globex = [
        goal(
            2101,
            "Globex monthly wins",
            "deals_won",
            {"pipeline_id": None},
            (2101, "person"),
            "monthly",
            year_start,
            None,
            {"target": 20, "tracking_metric": "quantity"},
        ),
    ]
    return [(1001, g) for g in acme] + [(1002, g) for g in globex]


def base_user(user: User, caller_id: int) -> dict[str, Any]:
    """A user as GET /users lists it: every field of the OpenAPI file's BaseUser."""
    apps = ("sales", "global", "account_settings") if user.is_admin else ("sales", "global")
    return {
        "id": user.id,
        "name": user.name,
        "default_currency": user.default_currency,
        "locale": user.locale,
        "lang": 1,
        "email": user.email,
        "phone": user.phone,
        "activated": True,
        "last_login": "2025-01-06 08:59:12",
        "created": user.created,
        "modified": user.created,
        "has_created_company": user.is_admin,
        "access": [
            {"app": app, "admin": user.is_admin, "permission_set_id": permission_set_id(user, app)}
            for app in apps
        ],
        "active_flag": True,
        "timezone_name": user.timezone[0],
        "timezone_offset": user.timezone[1],
        "role_id": 1,
        "icon_url": None,
        "is_you": user.id == caller_id,
        "is_deleted": False,
    }


def profile(user: User, company: Company) -> dict[str, Any]:
    """The `data` of GET /users/me, with every field the OpenAPI file lists for getCurrentUser."""
    return {
        **base_user(user, user.id),
        # Not in the OpenAPI schema but sent by the live API, and read by apps to spot admins.
        "is_admin": 1 if user.is_admin else 0,
        "company_id": company.id,
        "company_name": company.name,
        "company_domain": company.domain,
        "company_country": company.country,
        "company_industry": company.industry,
        "language": {"language_code": user.locale[:2], "country_code": user.locale[3:]},
    }
