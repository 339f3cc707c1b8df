"""Each company's Pipedrive budget: what pd_app spends of it per UTC day, and COMPANY_DAILY_TOKEN_CAP.

Pipedrive's daily token budget belongs to the company and every integration it installed shares it
(platform.md, "Errors, limits, budgets"). Every call pd_app makes for a company is charged here, at its cost
from the platform's table, before it is sent; over the cap the call is refused and nothing is sent.

The ledger lives in the database (`budget_days`), one row per company and day, so that every process on
every host counts against one total, without a write per call:
- a process *claims* tokens from the row in chunks (`reserved` grows by CHUNK, doubled at each further claim
  between two settles up to MAX_CHUNK, so a busy process writes rarely; only while it stays within the cap)
  and spends them from memory; near the cap it claims one call's cost at a time, so the cap is never passed
  (the contract allows one call per process over it; this ledger does not use that slack);
- its flush (usage.py's thread, every few seconds, and before the budget is shown) *settles*: `spent` grows
  by what was used and `reserved` gives back what was not. Until then another process may be refused while
  tokens it could have used sit unspent in this one's claim: at most one chunk per process, for one flush
  interval, and only in the last chunks before the cap (a chunk that does not fit is not taken).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from flask import Flask, current_app
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from .. import metrics
from ..models import BudgetDay, utcnow
from ..reference.costs import COSTS as REFERENCE_COSTS

log = logging.getLogger(__name__)

# Pipedrive API tokens per call (platform.md's tables; the reference reads' in reference/ops.py).
COSTS: dict[str, int] = {
    "find": 20,
    "results": 20,
    "add": 10,
    "update": 10,
    "delete": 6,
    "users_me": 2,
    **REFERENCE_COSTS,
}
CHUNK = 200  # tokens a process claims at first: ten reads
MAX_CHUNK = 3200


class BudgetExhausted(Exception):
    """The company's COMPANY_DAILY_TOKEN_CAP is spent for today (UTC): nothing may be sent until midnight."""

    def __init__(self, company_id: int, cap: int, resets_at: datetime) -> None:
        super().__init__(f"company {company_id} has spent its {cap} tokens for today")
        self.cap = cap
        self.resets_at = resets_at
        self.retry_after = max(1, int((resets_at - utcnow()).total_seconds()) + 1)


def next_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(), tzinfo=UTC)


@dataclass
class _Claim:
    claimed: int = 0  # tokens this process took from the row's `reserved` since its last settle
    used: int = 0  # of those, what calls cost
    claims: int = 0  # how many times it took some: each next chunk is twice the last


@dataclass(frozen=True)
class Charge:
    """One call's charge, kept so that it can be given back if the call was never sent."""

    company_id: int
    day: date
    cost: int


class Ledger:
    def __init__(self, engine: Engine, cap: int, chunk: int = CHUNK) -> None:
        self.engine = engine
        self.cap = cap
        self.chunk = chunk
        # A process killed without settling leaves its unspent claim reserved until midnight: a chunk is
        # never more than a twentieth of the cap, so one such death costs the company at most 5 % of its day.
        self.max_chunk = min(MAX_CHUNK, max(cap // 20, 1)) if cap else MAX_CHUNK
        self._claims: dict[tuple[int, date], _Claim] = {}
        self._lock = threading.Lock()
        self.on_use: Callable[[], None] = lambda: None  # starts the flush thread that settles (usage.py)

    # -- on the request path -----------------------------------------------------------------------------
    def charge(self, company_id: int, op: str) -> Charge:
        """Charge one call before it is sent; BudgetExhausted (nothing charged) when it does not fit."""
        cost = COSTS[op]
        now = utcnow()
        day = now.date()
        with self._lock:
            claim = self._claims.get((company_id, day))
            if claim is not None and claim.claimed - claim.used >= cost:
                claim.used += cost
                metrics.tokens_spent(op, cost)
                return Charge(company_id, day, cost)
        self.on_use()
        with self._lock:
            earlier = self._claims.get((company_id, day))
            chunk = min(self.max_chunk, self.chunk * 2 ** (earlier.claims if earlier else 0))
        claimed = self._claim(company_id, day, cost, chunk)  # a database write, once per chunk
        if not claimed:
            metrics.refused("budget_exhausted")
            raise BudgetExhausted(company_id, self.cap, next_midnight(now))
        with self._lock:
            claim = self._claims.setdefault((company_id, day), _Claim())
            claim.claimed += claimed
            claim.used += cost
            claim.claims += 1
        metrics.tokens_spent(op, cost)
        return Charge(company_id, day, cost)

    def record(self, company_id: int, op: str) -> None:
        """Charge a call that had to be made whatever the cap says (the install's `/users/me`: the company is
        known only from its answer), straight to the database: installs are rare."""
        cost = COSTS[op]
        day = utcnow().date()
        row = (BudgetDay.company_id == company_id) & (BudgetDay.day == day)
        values = {"reserved": BudgetDay.reserved + cost, "spent": BudgetDay.spent + cost}
        with Session(self.engine) as session:
            for _attempt in (1, 2):
                try:
                    with session.begin():
                        if session.execute(update(BudgetDay).where(row).values(**values)).rowcount:
                            break
                        session.execute(
                            insert(BudgetDay).values(
                                company_id=company_id, day=day, reserved=cost, spent=cost
                            )
                        )
                        break
                except IntegrityError:  # another process made the row first: add to it
                    continue
        metrics.tokens_spent(op, cost)

    def refund(self, charge: Charge) -> None:
        """Give back the charge of a call that never left this process (no connection was made)."""
        with self._lock:
            claim = self._claims.setdefault((charge.company_id, charge.day), _Claim())
            claim.used -= charge.cost

    # -- claims and settling -----------------------------------------------------------------------------
    def _claim(self, company_id: int, day: date, cost: int, chunk: int) -> int:
        """Take tokens from the company's row for the day: a chunk if it fits under the cap, else one call's
        cost if that fits, else nothing. Returns how many were taken."""
        if self.cap and cost > self.cap:
            return 0
        amounts = (max(chunk, cost), cost) if self.cap else (max(chunk, cost),)
        row = (BudgetDay.company_id == company_id) & (BudgetDay.day == day)
        with Session(self.engine) as session:
            for _attempt in range(3):  # each retry follows another process's insert or claim
                for amount in amounts:
                    claim = update(BudgetDay).where(row).values(reserved=BudgetDay.reserved + amount)
                    if self.cap:
                        claim = claim.where(BudgetDay.reserved + amount <= self.cap)
                    with session.begin():
                        if session.execute(claim.execution_options(synchronize_session=False)).rowcount:
                            return amount
                with session.begin():
                    reserved = session.scalar(select(BudgetDay.reserved).where(row))
                if reserved is not None:
                    if self.cap and reserved + cost > self.cap:
                        return 0  # not even one call fits: spent for today
                    continue  # the row appeared (another process made it) after our claim missed it
                amount = amounts[0] if not self.cap or amounts[0] <= self.cap else cost
                try:
                    with session.begin():
                        session.execute(
                            insert(BudgetDay).values(company_id=company_id, day=day, reserved=amount, spent=0)
                        )
                    return amount
                except IntegrityError:  # another process made the row first: claim from it
                    continue
        return 0

    def settle(self) -> None:
        """Write what this process used and give back what it claimed but did not use."""
        with self._lock:
            claims, self._claims = self._claims, {}
        if not claims:
            return
        try:
            with Session(self.engine) as session, session.begin():
                for (company_id, day), claim in sorted(claims.items()):
                    row = (BudgetDay.company_id == company_id) & (BudgetDay.day == day)
                    values = {
                        "spent": BudgetDay.spent + claim.used,
                        "reserved": BudgetDay.reserved - (claim.claimed - claim.used),
                    }
                    done = session.execute(
                        update(BudgetDay)
                        .where(row)
                        .values(**values)
                        .execution_options(synchronize_session=False)
                    ).rowcount
                    if not done:
                        log.warning("budget row of company %s for %s is gone; not settled", company_id, day)
        except SQLAlchemyError:
            log.warning("could not settle the budget ledger; keeping it for the next flush", exc_info=True)
            with self._lock:
                for key, claim in claims.items():
                    mine = self._claims.setdefault(key, _Claim())
                    mine.claimed += claim.claimed
                    mine.used += claim.used

    def spent_today(self, company_id: int) -> dict:
        """The `budget` object of /api/v1/app/installation: what is settled (the view flushes this process's
        bookkeeping first, the ledger's settle among it)."""
        now = utcnow()
        with Session(self.engine) as session:
            spent = session.scalar(
                select(BudgetDay.spent).where(BudgetDay.company_id == company_id, BudgetDay.day == now.date())
            )
        return {
            "spent_today": int(spent or 0),
            "cap": self.cap,
            "resets_at": next_midnight(now).isoformat().replace("+00:00", "Z"),
        }


def init_app(app: Flask) -> None:
    from .usage import usage_of

    book = Ledger(app.extensions["pd_db"]["engine"], app.config["SETTINGS"].company_daily_token_cap)
    recorder = usage_of(app)
    recorder.add_task(book.settle)
    book.on_use = recorder.ensure_thread
    app.extensions["pd_ledger"] = book


def ledger() -> Ledger:
    return current_app.extensions["pd_ledger"]
