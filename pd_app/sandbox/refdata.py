"""The reference data of each seeded company, in Pipedrive's shapes: v2 pipelines and stages (as the v2
typings of Pipedrive's `pipedrive` npm package describe them) and v1 activity types and currencies (every
field openapi-v1.yaml lists). The seed goals' ids mean something here: pipeline 1 is Acme's "Sales
pipeline", stage 3 its "Proposal made", activity types 1 and 2 are Call and Meeting, currency 1 is EUR.

Ids are per company, as in Pipedrive (every company has its own pipeline 1). Directory data: never mutated.
Also the v2 lists' sorting and cursor pagination, with the errors Pipedrive answers for a bad query.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class QueryError(ValueError):
    """A v2 list query Pipedrive refuses (400)."""


@dataclass(frozen=True)
class Pipeline:
    id: int
    name: str
    order_nr: int
    probability: bool = True
    added: str = "2023-01-10T09:00:00Z"
    updated: str = "2024-06-03T14:21:07Z"


@dataclass(frozen=True)
class Stage:
    id: int
    pipeline_id: int
    name: str
    order_nr: int
    probability: int
    rotten_days: int | None = None
    added: str = "2023-01-10T09:00:00Z"
    updated: str = "2023-01-10T09:00:00Z"


PIPELINES: dict[int, tuple[Pipeline, ...]] = {
    1001: (
        Pipeline(1, "Sales pipeline", 1),
        Pipeline(2, "Partnerships", 2, added="2023-04-18T11:30:00Z"),
        Pipeline(3, "Renewals", 3, probability=False, added="2024-02-01T08:15:00Z"),
    ),
    1002: (
        Pipeline(1, "Globex pipeline", 1, added="2022-11-30T16:25:00Z"),
        Pipeline(2, "Distributors", 2, added="2023-08-22T10:00:00Z"),
    ),
}
STAGES: dict[int, tuple[Stage, ...]] = {
    1001: (
        Stage(1, 1, "Qualified", 1, 10),
        Stage(2, 1, "Contact made", 2, 20),
        Stage(3, 1, "Proposal made", 3, 50, rotten_days=14),
        Stage(4, 1, "Negotiations started", 4, 80, rotten_days=7),
        Stage(5, 2, "Lead in", 1, 10),
        Stage(6, 2, "Discovery call", 2, 40),
        Stage(7, 2, "Agreement sent", 3, 75),
        Stage(8, 3, "Up for renewal", 1, 60),
        Stage(9, 3, "Renewal offer sent", 2, 80, rotten_days=30),
    ),
    1002: (
        Stage(1, 1, "Lead", 1, 10),
        Stage(2, 1, "Quote sent", 2, 50),
        Stage(3, 1, "Order placed", 3, 90),
        Stage(4, 2, "Prospect", 1, 20),
        Stage(5, 2, "Contract", 2, 70),
    ),
}
# Pipedrive's default activity types (id, name, key and icon, colour); every company starts with them.
_DEFAULT_TYPES = (
    (1, "Call", "call", "3B7AD9"),
    (2, "Meeting", "meeting", "2E9E5A"),
    (3, "Task", "task", "F5A623"),
    (4, "Deadline", "deadline", "D94141"),
    (5, "Email", "email", "8E44AD"),
    (6, "Lunch", "lunch", "16A085"),
)
# A company's own types come after the defaults.
_CUSTOM_TYPES: dict[int, tuple[tuple[int, str, str, str], ...]] = {
    1002: ((7, "Site visit", "car", "7F8C8D"),),
}
CURRENCIES = (
    (1, "EUR", "Euro", 2, "€"),
    (2, "USD", "US Dollar", 2, "$"),
    (3, "GBP", "British Pound", 2, "£"),
    (4, "SEK", "Swedish Krona", 2, "kr"),
    (5, "JPY", "Japanese Yen", 0, "¥"),
    (6, "CHF", "Swiss Franc", 2, "CHF"),
)


def pipelines(company_id: int) -> list[dict[str, Any]]:
    return [
        {
            "id": p.id,
            "name": p.name,
            "order_nr": p.order_nr,
            "is_deleted": False,
            "is_deal_probability_enabled": p.probability,
            "add_time": p.added,
            "update_time": p.updated,
        }
        for p in PIPELINES.get(company_id, ())
    ]


def stages(company_id: int, pipeline_id: int | None) -> list[dict[str, Any]]:
    return [
        {
            "id": s.id,
            "order_nr": s.order_nr,
            "name": s.name,
            "is_deleted": False,
            "deal_probability": s.probability,
            "pipeline_id": s.pipeline_id,
            "is_deal_rot_enabled": s.rotten_days is not None,
            "days_to_rotten": s.rotten_days,
            "add_time": s.added,
            "update_time": s.updated,
        }
        for s in STAGES.get(company_id, ())
        if pipeline_id is None or s.pipeline_id == pipeline_id
    ]


def activity_types(company_id: int) -> list[dict[str, Any]]:
    custom = _CUSTOM_TYPES.get(company_id, ())
    return [
        {
            "id": type_id,
            "order_nr": order,
            "name": name,
            "key_string": icon if type_id <= len(_DEFAULT_TYPES) else name.lower().replace(" ", "_"),
            "icon_key": icon,
            "active_flag": True,
            "color": color,
            "is_custom_flag": type_id > len(_DEFAULT_TYPES),
            "add_time": "2023-01-10 09:00:00",
            "update_time": "2023-01-10 09:00:00",
        }
        for order, (type_id, name, icon, color) in enumerate((*_DEFAULT_TYPES, *custom), start=1)
    ]


def currencies(term: str | None) -> list[dict[str, Any]]:
    wanted = (term or "").strip().lower()
    return [
        {
            "id": currency_id,
            "code": code,
            "name": name,
            "decimal_points": decimals,
            "symbol": symbol,
            "active_flag": True,
            "is_custom_flag": False,
        }
        for currency_id, code, name, decimals, symbol in CURRENCIES
        if wanted in code.lower() or wanted in name.lower()
    ]


# -- v2 lists: sort_by, sort_direction, limit, cursor ------------------------------------------------------
DEFAULT_LIMIT = 100
MAX_LIMIT = 500


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise QueryError("Invalid cursor") from None
    kind, _, number = text.partition(":")
    if kind != "offset" or not number.isdigit():
        raise QueryError("Invalid cursor")
    return int(number)


def _int_arg(args: Mapping[str, str], name: str) -> int | None:
    value = args.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise QueryError(f"{name} must be an integer")
    return int(value)


def pipeline_filter(args: Mapping[str, str]) -> int | None:
    return _int_arg(args, "pipeline_id")


def page(
    items: Sequence[dict[str, Any]], args: Mapping[str, str], sort_fields: Sequence[str]
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a v2 list and the next page's cursor (None on the last page)."""
    sort_by = args.get("sort_by", "id")
    if sort_by not in sort_fields:
        raise QueryError(f"sort_by must be one of: {', '.join(sort_fields)}")
    direction = args.get("sort_direction", "asc")
    if direction not in ("asc", "desc"):
        raise QueryError("sort_direction must be one of: asc, desc")
    limit = _int_arg(args, "limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
    cursor = args.get("cursor")
    offset = _offset(cursor) if cursor else 0
    key: Callable[[dict[str, Any]], Any] = lambda item: (item[sort_by], item["id"])  # noqa: E731
    ordered = sorted(items, key=key, reverse=direction == "desc")
    chunk = ordered[offset : offset + limit]
    more = offset + limit < len(ordered)
    return chunk, _cursor(offset + limit) if more else None
