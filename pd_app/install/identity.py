"""Who installed the app, from Pipedrive's `/users/me` (never from the request)."""

from __future__ import annotations

from dataclasses import dataclass, replace

# Longest text /users/me may put in each column (models.Installation); longer values are cut, not refused.
IDENTITY_TEXT_LIMITS = {
    "company_domain": 255,
    "company_name": 255,
    "user_name": 255,
    "user_email": 320,
    "locale": 32,
    "default_currency": 32,
    "timezone_name": 64,
}


@dataclass(frozen=True)
class Identity:
    """Who granted the tokens, as `/users/me` says (never as the request says)."""

    company_id: int
    user_id: int
    company_domain: str | None
    company_name: str | None
    user_name: str | None
    user_email: str | None
    is_admin: bool
    locale: str | None = None
    default_currency: str | None = None
    timezone_name: str | None = None

    @classmethod
    def from_users_me(cls, data: dict) -> Identity:
        access = data.get("access") or []
        is_admin = bool(data.get("is_admin")) or any(isinstance(a, dict) and a.get("admin") for a in access)
        return cls(
            company_id=int(data["company_id"]),
            user_id=int(data["id"]),
            company_domain=data.get("company_domain"),
            company_name=data.get("company_name"),
            user_name=data.get("name"),
            user_email=data.get("email"),
            is_admin=is_admin,
            locale=data.get("locale"),
            default_currency=data.get("default_currency"),
            timezone_name=data.get("timezone_name"),
        )


def identity_from_users_me(data: object) -> Identity:
    """Who installed, from /users/me's `data`, cut to fit the columns; ValueError when it names nobody."""
    if not isinstance(data, dict):
        raise ValueError("/users/me data is not an object")
    identity = Identity.from_users_me(data)
    if not (0 < identity.company_id < 2**63 and 0 < identity.user_id < 2**63):
        raise ValueError("/users/me ids out of range")
    texts = {}
    for name, limit in IDENTITY_TEXT_LIMITS.items():
        value = getattr(identity, name)
        texts[name] = value[:limit] if isinstance(value, str) else None
    return replace(identity, **texts)
