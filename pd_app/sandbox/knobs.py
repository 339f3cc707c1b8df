"""The sandbox's knobs: switches that make it misbehave the ways Pipedrive can. All off by default."""

from __future__ import annotations

from typing import Any

from .limits import DEFAULT_BURST_LIMIT

KNOB_DEFAULTS: dict[str, Any] = {
    "token_delay_s": 0.0,  # sleep before answering /oauth/token
    "rotate_refresh_tokens": False,  # a refresh returns a new refresh token and kills the old one
    "refresh_error": None,  # None | "invalid_grant" | 500 | "timeout"
    "hang_s": 30.0,  # how long refresh_error="timeout" sleeps
    "api_domain_override": None,  # returned as api_domain instead of settings.base_url
    "force_api_status": None,  # {"status": 401, "count": 1, "html": false, "retry_after": 30}
    "api_delay_s": 0.0,  # sleep before each API call
    "daily_budget": None,  # tokens per company per day instead of 30,000 x seats
    "burst_limit": DEFAULT_BURST_LIMIT,  # requests per access token per rolling 2 s
    # A list: what installations made from now on are granted instead of settings.scopes (`base` always),
    # so that Pipedrive's 403 "Scope and URL mismatch" for a missing scope can be produced.
    "granted_scopes": None,
}
FORCEABLE_STATUSES = (401, 402, 403, 404, 429, 500, 502, 503, 504)


def check_knob(name: str, value: Any) -> None:
    """Raise ValueError for an unknown knob or a value the sandbox cannot act on."""
    if name not in KNOB_DEFAULTS:
        raise ValueError(f"unknown knob {name!r}; known: {', '.join(KNOB_DEFAULTS)}")
    if name == "refresh_error" and value not in (None, "invalid_grant", 500, "timeout"):
        raise ValueError('refresh_error must be null, "invalid_grant", 500 or "timeout"')
    if name == "force_api_status" and value is not None:
        if not isinstance(value, dict) or value.get("status") not in FORCEABLE_STATUSES:
            raise ValueError(f"force_api_status.status must be one of {FORCEABLE_STATUSES}")
        if not isinstance(value.get("count", 1), int) or value.get("count", 1) < 1:
            raise ValueError("force_api_status.count must be a positive integer")
        if "retry_after" in value and not _non_negative(value["retry_after"], (int,)):
            raise ValueError("force_api_status.retry_after must be a non-negative integer (seconds)")
    if name in ("token_delay_s", "api_delay_s", "hang_s") and not _non_negative(value, (int, float)):
        raise ValueError(f"{name} must be a non-negative number of seconds")
    if name == "burst_limit" and not _non_negative(value, (int,)):
        raise ValueError("burst_limit must be a non-negative integer")
    if name == "daily_budget" and value is not None and not _non_negative(value, (int,)):
        raise ValueError("daily_budget must be null or a non-negative integer")
    if name == "rotate_refresh_tokens" and not isinstance(value, bool):
        raise ValueError("rotate_refresh_tokens must be true or false")
    if name == "api_domain_override" and value is not None and not isinstance(value, str):
        raise ValueError("api_domain_override must be null or a string")
    if name == "granted_scopes" and value is not None:
        if not isinstance(value, list) or not all(_scope_name(s) for s in value):
            raise ValueError('granted_scopes must be null or a list of scope names like "deals:read"')


def _scope_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isascii() and "," not in value


def _non_negative(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and not isinstance(value, bool) and value >= 0
