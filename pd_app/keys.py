"""Partner keys as operators and admins manage them: what a valid request for one is (name, scope,
origins), creating one (bound by auth.create_key), listing a company's, revoking one. The CLI (`keys create`,
`keys revoke`) and the settings page's API (/api/v1/app/keys) both call these, so both check the same things,
apply the same defaults and write the same audit lines."""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import db
from .auth import create_key
from .bodies import InvalidFields
from .logs import audit
from .models import Installation, KeyScope, PartnerKey, utcnow
from .proxy.cors import normalize_origin

MAX_NAME = 200
MAX_ORIGINS = 20
# What a key's name may not hold: control and formatting characters (a terminal escape, a bidirectional
# override that reorders what `keys list` shows), line and paragraph separators, lone surrogates.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _class_of(categories: frozenset[str]) -> str:
    """A regular-expression class body listing every code point of these Unicode categories (surrogates
    left out: no regular expression engine of a JSON Schema validator takes them, and no JSON text produces
    one that is not refused here anyway)."""
    ranges: list[tuple[int, int]] = []
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF or unicodedata.category(chr(code)) not in categories:
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))

    # Escapes only for the basic plane: `\uXXXX` means the same to Python and to ECMA-262 (the dialect of
    # JSON Schema's `pattern`), but no escape of a code point above U+FFFF does (`\U0001XXXX` is Python's
    # alone, `\u{1XXXX}` ECMA's alone). Those are written as themselves, which both read alike (ECMA with
    # the `u` flag, as JSON Schema validators compile patterns).
    def char(code: int) -> str:
        return f"\\u{code:04X}" if code <= 0xFFFF else chr(code)

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


@functools.cache
def name_pattern() -> str:
    """The name rule above as the OpenAPI document states it: none of those characters, and at least one
    that is not a space (surrounding spaces are trimmed)."""
    hidden = _class_of(HIDDEN_CATEGORIES)
    blank = _class_of(HIDDEN_CATEGORIES | {"Zs"})
    return f"^[^{hidden}]*[^{blank}][^{hidden}]*$"


MAX_ID = 2**31 - 1  # an integer column: a larger id names no key (and would not fit the query)


class InvalidKey(InvalidFields):
    """A key request that cannot be accepted."""


class KeyNotFound(Exception):
    """No key with this id (for this company)."""


@dataclass(frozen=True)
class KeyRequest:
    name: str
    scope: KeyScope
    origins: tuple[str, ...]


def _problem(field: str, message: str, code: str) -> dict[str, str]:
    return {"field": field, "message": message, "code": code}


def validate(name: object, scope: object = None, origins: object = None) -> KeyRequest:
    """A key's name, scope and origins checked and normalized, or InvalidKey naming every problem. The
    scope defaults to `read` when origins are given (a browser key ships in a web page: it is public), else
    `full`."""
    problems: list[dict[str, str]] = []
    clean_name = name.strip() if isinstance(name, str) else ""
    if not isinstance(name, str):
        problems.append(_problem("name", "name is required: who the key is for.", "required"))
    elif not clean_name or len(name) > MAX_NAME:
        problems.append(_problem("name", f"name must be 1-{MAX_NAME} characters.", "invalid_length"))
    elif any(unicodedata.category(c) in HIDDEN_CATEGORIES for c in name):
        problems.append(
            _problem("name", "name must not contain control or formatting characters.", "invalid")
        )
    chosen: list[str] = []
    if origins is None:  # JSON's null, or not given
        origins = []
    if not isinstance(origins, list | tuple):
        problems.append(_problem("origins", "origins must be a list of web origins.", "invalid_type"))
    elif len(origins) > MAX_ORIGINS:
        problems.append(_problem("origins", f"A key may list at most {MAX_ORIGINS} origins.", "too_many"))
    else:
        for i, origin in enumerate(origins):
            try:
                if not isinstance(origin, str):
                    raise ValueError(f"{origin!r} is not an origin like https://dashboard.example.com")
                chosen.append(normalize_origin(origin))
            except ValueError as exc:
                problems.append(_problem(f"origins[{i}]", str(exc), "invalid_origin"))
    if scope is not None and scope not in tuple(KeyScope):
        problems.append(_problem("scope", f"scope must be one of: {', '.join(KeyScope)}.", "invalid_choice"))
    if problems:
        raise InvalidKey(problems)
    unique = tuple(dict.fromkeys(chosen))
    default = KeyScope.READ if unique else KeyScope.FULL
    return KeyRequest(clean_name, KeyScope(scope) if scope is not None else default, unique)


def create(
    session: Session, company_id: int, request: KeyRequest, *, by: str, user_id: int | None = None
) -> tuple[PartnerKey, str, Installation | None]:
    """Create the key (auth.create_key binds it; CannotBind when the company has no installation), audit it;
    returns the row, the key (its only appearance in clear) and the installation serving it."""
    row, key = create_key(
        session,
        company_id=company_id,
        name=request.name,
        user_id=user_id,
        scope=request.scope,
        origins=list(request.origins),
    )
    served_by = session.get(Installation, row.installation_id) if row.installation_id else None
    audit(
        "key_created",
        key_id=row.id,
        prefix=row.prefix,
        company_id=company_id,
        user_id=user_id,
        bound_user_id=served_by.user_id if served_by else None,
        scope=request.scope,
        origins=list(request.origins),
        by=by,
    )
    return row, key, served_by


def revoke(session: Session, key_id: int, *, by: str, company_id: int | None = None) -> PartnerKey:
    """Revoke a key now (KeyNotFound for another company's); revoking a revoked key changes nothing. The
    credential lookup reads the row on every request (auth.py keeps no memo of keys), so it stops at once."""
    if not 0 < key_id <= MAX_ID:
        raise KeyNotFound(key_id)
    db.begin_write(session)
    with db.transaction(session):
        row = session.get(PartnerKey, key_id)
        if row is None or (company_id is not None and row.company_id != company_id):
            raise KeyNotFound(key_id)
        newly_revoked = row.revoked_at is None
        if newly_revoked:
            row.revoked_at = utcnow()
    if newly_revoked:
        audit("key_revoked", key_id=row.id, prefix=row.prefix, company_id=row.company_id, by=by)
    return row


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def describe(key: PartnerKey, served_by: Installation | None) -> dict[str, Any]:
    """A key as the API shows it: never the key itself nor its hash."""
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "scope": key.scope,
        "origins": list(key.origins or ()),
        "user_bound": key.user_id is not None,
        "served_by": (
            {"user_id": served_by.user_id, "user_name": served_by.user_name, "status": served_by.status}
            if served_by is not None
            else None
        ),
        "created_at": _iso(key.created_at),
        "last_used_at": _iso(key.last_used_at),
        "revoked_at": _iso(key.revoked_at),
        "active": key.revoked_at is None,
    }


def listing(session: Session, company_id: int) -> list[dict[str, Any]]:
    """The company's keys, active ones first, newest first within each."""
    rows = session.execute(
        select(PartnerKey, Installation)
        .outerjoin(Installation, Installation.id == PartnerKey.installation_id)
        .where(PartnerKey.company_id == company_id)
        .order_by(PartnerKey.revoked_at.is_not(None), PartnerKey.id.desc())
    ).all()
    return [describe(key, inst) for key, inst in rows]
