"""All the sandbox's mutable state behind one lock: companies, goals, tokens, limits, calls, knobs."""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from werkzeug.datastructures import MultiDict

from . import goals, queries, seed
from .knobs import KNOB_DEFAULTS, check_knob
from .limits import TOKENS_PER_SEAT, Quota, RateLimiter, Verdict
from .settings import SandboxSettings
from .tokens import AccessToken, Issued, TokenStore

CALL_LOG_MAX = 20_000  # a load test must not grow the log without bound; the oldest calls fall off


class GoalNotFound(LookupError):
    """No such goal in the caller's company (or it was deleted): answered 404."""


@dataclass
class StoredGoal:
    company_id: int
    data: dict[str, Any]
    deleted: bool = False


def fingerprint(token: str) -> str:
    """What the call log keeps of a bearer token: enough to compare, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class SandboxState:
    """Thread-safe: every public method takes the one lock; sleeps (knobs) happen in the views, outside it."""

    def __init__(self, settings: SandboxSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock  # tests may swap it to jump past code or token lifetimes
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to the seed: goals, tokens, budgets, recorded calls and knobs."""
        with self._lock:
            # Directory data: replaced whole here and never mutated, so views may read it without the lock.
            self.companies = {c.id: c for c in seed.COMPANIES}
            self.users = {u.id: u for u in seed.USERS}
            self.teams = {t.id: t for t in seed.TEAMS}
            self._goals: dict[str, StoredGoal] = {}
            self._goal_counter = 0
            for company_id, data in seed.seed_goals(self.today()):
                self._store_goal(company_id, data)
            self.tokens = TokenStore(self.settings.access_token_ttl, ",".join(self.settings.scopes))
            self.limiter = RateLimiter()
            self._calls: deque[dict[str, Any]] = deque(maxlen=CALL_LOG_MAX)
            self._knobs = dict(KNOB_DEFAULTS)

    def today(self) -> date:
        return date.fromtimestamp(self.clock())

    # --- recorded calls -------------------------------------------------------------------------------
    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._calls.append(entry)

    @property
    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._calls))

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def count(
        self,
        path_prefix: str = "",
        method: str | None = None,
        grant_type: str | None = None,
        status: int | None = None,
    ) -> int:
        with self._lock:
            return sum(
                1
                for c in self._calls
                if c["path"].startswith(path_prefix)
                and (method is None or c["method"] == method.upper())
                and (grant_type is None or c["grant_type"] == grant_type)
                and (status is None or c["status"] == status)
            )

    # --- knobs -------------------------------------------------------------------------------------------
    @property
    def knobs(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._knobs)

    def set_knobs(self, **changes: Any) -> dict[str, Any]:
        """Merge into the knobs (validated first, all or nothing); returns the knobs now in force."""
        for name, value in changes.items():
            check_knob(name, value)
        with self._lock:
            self._knobs.update(copy.deepcopy(changes))
            return copy.deepcopy(self._knobs)

    def take_forced_status(self) -> dict[str, Any] | None:
        """Consume one of the forced API answers, if any are left."""
        with self._lock:
            forced = self._knobs["force_api_status"]
            if not forced:
                return None
            left = forced.get("count", 1) - 1
            self._knobs["force_api_status"] = {**forced, "count": left} if left > 0 else None
            return dict(forced)

    # --- OAuth -------------------------------------------------------------------------------------------
    def issue_code(self, user_id: int, redirect_uri: str) -> str:
        with self._lock:
            user = self.users[user_id]
            return self.tokens.issue_code(user.company_id, user.id, redirect_uri, self.clock())

    def exchange_code(self, code: str, redirect_uri: str) -> dict[str, Any]:
        """Raises tokens.GrantError for a bad, spent or expired code."""
        with self._lock:
            issued = self.tokens.exchange_code(code, redirect_uri, self.clock(), self._granted())
            return self._token_response(issued)

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        with self._lock:
            rotate = bool(self._knobs["rotate_refresh_tokens"])
            return self._token_response(self.tokens.refresh(refresh_token, self.clock(), rotate))

    def install(self, company_id: int, user_id: int) -> dict[str, Any]:
        """Skip the browser: the token response a finished install would give (for tests and demos)."""
        with self._lock:
            if self.users[user_id].company_id != company_id:
                raise ValueError(f"user {user_id} is not in company {company_id}")
            return self._token_response(
                self.tokens.install(company_id, user_id, self.clock(), self._granted())
            )

    def granted_scopes(self) -> list[str]:
        """What an installation made now is granted: settings.scopes, or the `granted_scopes` knob's."""
        with self._lock:
            return self._granted().split(",")

    def _granted(self) -> str:
        wanted = self._knobs["granted_scopes"]
        if wanted is None:
            return ",".join(self.settings.scopes)
        return ",".join(dict.fromkeys(["base", *wanted]))  # Pipedrive always grants base

    def revoke(self, token: str) -> None:
        with self._lock:
            self.tokens.revoke(token)

    def expire_access_tokens(self, company_id: int, user_id: int) -> int:
        """Make that user's access tokens expire now; returns how many were live."""
        with self._lock:
            return self.tokens.expire_access_tokens(company_id, user_id, self.clock())

    def _token_response(self, issued: Issued) -> dict[str, Any]:
        return {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl,
            "refresh_token": issued.refresh_token,
            "scope": issued.grant.scope,
            "api_domain": self._knobs["api_domain_override"] or self.settings.base_url,
        }

    # --- API gate ----------------------------------------------------------------------------------------
    def authenticate(self, token: str) -> AccessToken | None:
        with self._lock:
            return self.tokens.authenticate(token, self.clock())

    def admit(self, token_fp: str, company_id: int, cost: int) -> Verdict:
        with self._lock:
            return self.limiter.admit(token_fp, company_id, cost, self._quota(company_id), self.clock())

    def rate_headers(self, token_fp: str, company_id: int | None) -> dict[str, str]:
        with self._lock:
            return self.limiter.headers(token_fp, company_id, self._quota(company_id), self.clock())

    def _quota(self, company_id: int | None) -> Quota:
        seats = sum(1 for u in self.users.values() if u.company_id == company_id) or 1
        budget = self._knobs["daily_budget"]
        return Quota(TOKENS_PER_SEAT * seats if budget is None else budget, seats, self._knobs["burst_limit"])

    # --- API data ----------------------------------------------------------------------------------------
    def me(self, user_id: int) -> dict[str, Any]:
        with self._lock:
            user = self.users[user_id]
            return seed.profile(user, self.companies[user.company_id])

    def find_goals(self, company_id: int, user_id: int, args: MultiDict[str, str]) -> list[dict[str, Any]]:
        query = queries.parse_find(args)
        with self._lock:
            return [
                copy.deepcopy(g.data)
                for g in self._goals.values()
                if g.company_id == company_id and not g.deleted and queries.matches(g.data, query, user_id)
            ]

    def add_goal(self, company_id: int, owner_id: int, body: Any) -> dict[str, Any]:
        with self._lock:
            fields = goals.new_goal_fields(body, self._assignee_check(company_id))
            stored = self._store_goal(company_id, {"owner_id": owner_id, **fields, "is_active": True})
            return copy.deepcopy(stored.data)

    def update_goal(self, company_id: int, goal_id: str, body: Any) -> dict[str, Any]:
        with self._lock:
            stored = self._goal(company_id, goal_id)
            stored.data.update(goals.updated_goal_fields(stored.data, body, self._assignee_check(company_id)))
            return copy.deepcopy(stored.data)

    def delete_goal(self, company_id: int, goal_id: str) -> None:
        with self._lock:
            self._goal(company_id, goal_id).deleted = True

    def goal_results(self, company_id: int, goal_id: str, args: MultiDict[str, str]) -> dict[str, Any]:
        with self._lock:
            data = self._goal(company_id, goal_id).data
            period = queries.parse_period(args)
            if period is None:
                raise goals.GoalError("period.start and period.end are required")
            queries.check_results_period(data, period)
            return {"goal": copy.deepcopy(data), "progress": queries.progress(data, period, self.today())}

    def _goal(self, company_id: int, goal_id: str) -> StoredGoal:
        stored = self._goals.get(goal_id)
        if stored is None or stored.deleted or stored.company_id != company_id:
            raise GoalNotFound(goal_id)
        return stored

    def _store_goal(self, company_id: int, data: Mapping[str, Any]) -> StoredGoal:
        self._goal_counter += 1
        full = {
            "id": seed.goal_id(self._goal_counter),
            **data,
            "report_ids": [seed.report_id(self._goal_counter)],
        }
        # Keep the key order of Pipedrive's examples (id, owner_id, title, ...), whatever order data has.
        order = (
            "id",
            "owner_id",
            "title",
            "type",
            "assignee",
            "interval",
            "duration",
            "expected_outcome",
            "is_active",
            "report_ids",
        )
        stored = StoredGoal(company_id, {key: full[key] for key in order})
        self._goals[stored.data["id"]] = stored
        return stored

    def _assignee_check(self, company_id: int) -> goals.AssigneeCheck:
        def exists(assignee_id: int, assignee_type: str) -> bool:
            if assignee_type == "company":
                return assignee_id == company_id
            pool = self.users if assignee_type == "person" else self.teams
            entry = pool.get(assignee_id)
            return entry is not None and entry.company_id == company_id

        return exists

    # --- control -----------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """What /_sandbox/state shows: counts and budgets, never a token."""
        with self._lock:
            now = self.clock()
            companies = []
            for company in self.companies.values():
                stored = [g for g in self._goals.values() if g.company_id == company.id]
                quota = self._quota(company.id)
                used = self.limiter.used_today(company.id, now)
                companies.append(
                    {
                        "id": company.id,
                        "name": company.name,
                        "domain": company.domain,
                        "users": [asdict(u) for u in self.users.values() if u.company_id == company.id],
                        "teams": [asdict(t) for t in self.teams.values() if t.company_id == company.id],
                        "goals": {
                            "active": sum(1 for g in stored if not g.deleted and g.data["is_active"]),
                            "inactive": sum(1 for g in stored if not g.deleted and not g.data["is_active"]),
                            "deleted": sum(1 for g in stored if g.deleted),
                        },
                        "budget": {
                            "limit": quota.budget,
                            "used": used,
                            "remaining": max(0, quota.budget - used),
                        },
                    }
                )
            return {
                "companies": companies,
                **self.tokens.summary(now),
                "calls_recorded": len(self._calls),
                "knobs": copy.deepcopy(self._knobs),
            }
