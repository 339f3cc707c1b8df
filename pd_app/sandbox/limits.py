"""Pipedrive's two limits: a burst window per access token and a daily token budget per company.

Not locked itself: SandboxState calls it under its one lock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

BURST_WINDOW_S = 2.0
DEFAULT_BURST_LIMIT = 80  # OAuth apps on the cheapest plan
TOKENS_PER_SEAT = 30_000
REQUESTS_PER_SEAT = 10_000  # only reported in x-daily-requests-left, never enforced (the budget is)


def seconds_to_midnight_utc(now: float) -> int:
    moment = datetime.fromtimestamp(now, UTC)
    midnight = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, math.ceil((midnight - moment).total_seconds()))


@dataclass
class DailyUsage:
    day: str
    tokens: int = 0
    requests: int = 0


@dataclass(frozen=True)
class Quota:
    """The limits that apply to one company: its daily token budget, its seats and the burst size."""

    budget: int
    seats: int
    burst_limit: int = DEFAULT_BURST_LIMIT


@dataclass(frozen=True)
class Verdict:
    """The outcome of admitting one API call; `retry_after` is set when it must be answered 429."""

    headers: dict[str, str]
    retry_after: int | None = None


@dataclass
class RateLimiter:
    windows: dict[str, deque[float]] = field(default_factory=dict)  # token fingerprint -> recent calls
    usage: dict[int, DailyUsage] = field(default_factory=dict)  # company id -> today's usage

    def admit(self, fingerprint: str, company_id: int, cost: int, quota: Quota, now: float) -> Verdict:
        """Count one call against both limits, or refuse it without counting it."""
        window = self._window(fingerprint, now)
        usage = self._usage(company_id, now)
        if len(window) >= quota.burst_limit:
            retry_after = self._reset_in(window, now)
        elif quota.budget - usage.tokens < cost:
            retry_after = seconds_to_midnight_utc(now)
        else:
            window.append(now)
            usage.tokens += cost
            usage.requests += 1
            retry_after = None
        return Verdict(self.headers(fingerprint, company_id, quota, now), retry_after)

    def headers(self, fingerprint: str, company_id: int | None, quota: Quota, now: float) -> dict[str, str]:
        window = self._window(fingerprint, now)
        usage = self._usage(company_id, now) if company_id is not None else DailyUsage("")
        return {
            "x-ratelimit-limit": str(quota.burst_limit),
            "x-ratelimit-remaining": str(max(0, quota.burst_limit - len(window))),
            "x-ratelimit-reset": str(self._reset_in(window, now)),
            "x-daily-requests-left": str(max(0, REQUESTS_PER_SEAT * quota.seats - usage.requests)),
            "x-daily-ratelimit-token-limit": str(quota.budget),
            "x-daily-ratelimit-token-remaining": str(max(0, quota.budget - usage.tokens)),
        }

    def used_today(self, company_id: int, now: float) -> int:
        return self._usage(company_id, now).tokens

    def _window(self, fingerprint: str, now: float) -> deque[float]:
        if len(self.windows) > 1000:
            # Expired tokens leave idle windows behind; drop them before they pile up.
            self.windows = {k: w for k, w in self.windows.items() if w and w[-1] > now - BURST_WINDOW_S}
        window = self.windows.setdefault(fingerprint, deque())
        while window and window[0] <= now - BURST_WINDOW_S:
            window.popleft()
        return window

    def _usage(self, company_id: int, now: float) -> DailyUsage:
        day = datetime.fromtimestamp(now, UTC).date().isoformat()
        usage = self.usage.get(company_id)
        if usage is None or usage.day != day:  # the budget resets at midnight UTC
            usage = self.usage[company_id] = DailyUsage(day)
        return usage

    @staticmethod
    def _reset_in(window: deque[float], now: float) -> int:
        if not window:
            return 0
        return max(1, math.ceil(window[0] + BURST_WINDOW_S - now))
