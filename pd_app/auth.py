"""How a request's credential becomes (company, user): partner keys and Pipedrive custom UI JWTs.

The credential alone decides the company and the user; nothing in the path, query or body can change them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import jwt
from flask import current_app, g, request
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from .errors import ApiError
from .models import PartnerKey, utcnow

KEY_PREFIX = "pdk_"
JWT_LEEWAY_S = 30
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    kind: str  # "key" or "jwt"
    company_id: int
    user_id: int | None
    scope: str  # "read" or "full"
    key_id: int | None = None
    origins: tuple[str, ...] = ()  # web origins allowed to use this credential from a browser (CORS)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A new partner key and its visible prefix: `pdk_<8 chars>.<secret>`; only the hash is stored."""
    prefix = KEY_PREFIX + secrets.token_hex(4)
    return f"{prefix}.{secrets.token_urlsafe(32)}", prefix


def create_key(
    session: Session,
    *,
    company_id: int,
    name: str,
    user_id: int | None = None,
    scope: str = "full",
    origins: list[str] | None = None,
) -> tuple[PartnerKey, str]:
    key, prefix = new_key()
    row = PartnerKey(
        prefix=prefix,
        key_hash=hash_key(key),
        name=name,
        company_id=company_id,
        user_id=user_id,
        scope=scope,
        origins=list(origins or []),
    )
    session.add(row)
    session.commit()
    return row, key


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        message,
        "Send one credential: the header `x-api-token: <partner key>`, or "
        "`Authorization: Bearer <partner key or Pipedrive custom UI JWT>`.",
    )


def _from_key(session: Session, key: str) -> Principal:
    prefix, dot, _secret = key.partition(".")
    if not dot or not prefix.startswith(KEY_PREFIX) or len(prefix) > 32:
        raise _unauthorized("The partner key is not valid.")
    row = session.scalar(select(PartnerKey).where(PartnerKey.prefix == prefix))
    # Compare the hash even when no row matched, so an unknown prefix costs the same time as a bad secret.
    expected = row.key_hash if row is not None else hash_key("")
    if not hmac.compare_digest(expected, hash_key(key)) or row is None:
        raise _unauthorized("The partner key is not valid.")
    if row.revoked_at is not None:
        raise _unauthorized("The partner key has been revoked.")
    _touch(session, row)
    return Principal("key", row.company_id, row.user_id, row.scope, row.id, tuple(row.origins or ()))


def _touch(session: Session, row: PartnerKey) -> None:
    """Record last use, at most once a minute per key, so reads do not write on every call."""
    now = utcnow()
    last = row.last_used_at
    if last is None or now - last >= TOUCH_EVERY:
        # End the read first: on SQLite a write from a transaction whose snapshot another process has
        # since moved past fails at once with "database is locked" (the busy timeout never applies),
        # which is what many requests with one key at once did. A fresh write transaction waits instead.
        session.commit()
        # The condition is checked again in SQL: of the requests that all read a stale time, the first
        # writes and the rest match no row.
        session.execute(
            update(PartnerKey)
            .where(
                PartnerKey.id == row.id,
                or_(PartnerKey.last_used_at.is_(None), PartnerKey.last_used_at < now - TOUCH_EVERY),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        session.commit()


def verify_panel_jwt(token: str) -> tuple[int, int]:
    """Verify a Pipedrive custom UI JWT (HS256 only, signature first, then time claims); (company, user)."""
    secret = current_app.config["SETTINGS"].jwt_secret
    if not secret:
        raise jwt.InvalidTokenError("no JWT secret configured")
    claims = jwt.decode(
        token, secret, algorithms=["HS256"], leeway=JWT_LEEWAY_S, options={"require": ["exp"]}
    )
    company_id, user_id = claims.get("companyId"), claims.get("userId")
    if isinstance(company_id, bool) or isinstance(user_id, bool):
        raise jwt.InvalidTokenError("ids must be numbers")
    try:
        return int(company_id), int(user_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise jwt.InvalidTokenError("companyId and userId are required") from None


def _from_jwt(token: str) -> Principal:
    try:
        company_id, user_id = verify_panel_jwt(token)
    except jwt.InvalidTokenError:
        raise _unauthorized("The Pipedrive token is not valid or has expired.") from None
    return Principal("jwt", company_id, user_id, "full")


def authenticate(session: Session) -> Principal:
    """The caller of this request; exactly one credential is accepted."""
    api_token = request.headers.get("x-api-token")
    authorization = request.headers.get("Authorization")
    if api_token is not None and authorization is not None:
        raise _unauthorized("Send exactly one credential, not both `x-api-token` and `Authorization`.")
    if api_token is not None:
        principal = _from_key(session, api_token.strip())
    elif authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise _unauthorized("Use `Authorization: Bearer <credential>`.")
        principal = _from_key(session, value) if value.startswith(KEY_PREFIX) else _from_jwt(value)
    else:
        raise _unauthorized("No credential was sent.")
    g.principal = principal
    return principal


def require_scope(principal: Principal, scope: str) -> None:
    if scope == "full" and principal.scope != "full":
        raise ApiError(
            403,
            "forbidden",
            "This partner key may only read goals.",
            "Ask the app's operator for a key with scope `full`.",
        )
