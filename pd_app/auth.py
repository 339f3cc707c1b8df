"""How a request's credential becomes (company, user) and the installation that serves it: partner keys and
Pipedrive custom UI JWTs.

The credential alone decides the company and the user; nothing in the path, query or body can change them.
A partner key is bound to one installation when it is created and is served by that one only: when it cannot
serve, the caller is told so; it moves to another only by an operator's `keys rebind`.
On the proxy's hot path one SQL statement resolves credential -> installation -> encrypted token (and the
company's cache generation); nothing is written (a key's last use is noted in memory, see usage.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from flask import current_app, g, request
from sqlalchemy import Row, Select, and_, bindparam, case, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from . import db
from .models import CacheGeneration, Installation, InstallationStatus, KeyScope, PartnerKey
from .proxy.usage import usage

KEY_PREFIX = "pdk_"
JWT_LEEWAY_S = 30


class CredentialKind(StrEnum):
    KEY = "key"  # a partner key
    JWT = "jwt"  # a Pipedrive custom UI JWT (the panel)


@dataclass(frozen=True)
class Principal:
    kind: CredentialKind
    company_id: int
    user_id: int | None
    scope: KeyScope
    key_id: int | None = None
    origins: tuple[str, ...] = ()  # web origins allowed to use this credential from a browser (CORS)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A new partner key and its visible prefix: `pdk_<8 chars>.<secret>`; only the hash is stored."""
    prefix = KEY_PREFIX + secrets.token_hex(4)
    return f"{prefix}.{secrets.token_urlsafe(32)}", prefix


class CannotBind(Exception):
    """A key cannot be bound to an installation (none to bind to, or no such key); the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _installation_to_bind(session: Session, company_id: int, user_id: int | None) -> Installation:
    """The installation a new key of this company (and user) is bound to: that user's; for a company-wide
    key the company's active admin installation, else its most recent active one, else its most recent one.
    Never an uninstalled one."""
    of_company = select(Installation).where(Installation.company_id == company_id)
    if user_id is not None:
        inst = session.scalar(of_company.where(Installation.user_id == user_id))
        if inst is None:
            raise CannotBind(
                f"Company {company_id} has no installation of user {user_id}: "
                "that user must install the app first."
            )
        if inst.status == InstallationStatus.UNINSTALLED:
            raise CannotBind(
                f"User {user_id}'s installation of company {company_id} is uninstalled: "
                "that user must install the app again first."
            )
        return inst
    active = Installation.status == InstallationStatus.ACTIVE
    inst = session.scalar(
        of_company.where(Installation.status != InstallationStatus.UNINSTALLED)
        .order_by(
            case((and_(active, Installation.is_admin), 0), else_=1),
            case((active, 0), else_=1),
            Installation.installed_at.desc(),
            Installation.id.desc(),
        )
        .limit(1)
    )
    if inst is None:
        raise CannotBind(
            f"Company {company_id} has no installation: a Pipedrive user of the company must install the "
            "app first."
        )
    return inst


def create_key(
    session: Session,
    *,
    company_id: int,
    name: str,
    user_id: int | None = None,
    scope: KeyScope = KeyScope.FULL,
    origins: list[str] | None = None,
) -> tuple[PartnerKey, str]:
    """A new key, bound to one installation of the company (see `_installation_to_bind`) that only
    `rebind_key` changes; raises CannotBind when there is none."""
    key, prefix = new_key()
    db.begin_write(session)  # it reads (which installation) before it writes
    with db.transaction(session):
        inst = _installation_to_bind(session, company_id, user_id)
        row = PartnerKey(
            prefix=prefix,
            key_hash=hash_key(key),
            name=name,
            company_id=company_id,
            user_id=user_id,
            installation_id=inst.id,
            scope=scope,
            origins=list(origins or []),
        )
        session.add(row)
    return row, key


@dataclass(frozen=True)
class Rebound:
    key: PartnerKey
    before: Installation | None  # None: the key was bound to nothing (created before keys were bound)
    after: Installation


def rebind_key(session: Session, key_id: int, user_id: int) -> Rebound:
    """Bind a key to user `user_id`'s installation of the key's company (an operator's decision; a key
    never moves by itself). A user-bound key becomes bound to that user."""
    db.begin_write(session)
    with db.transaction(session):
        key = session.get(PartnerKey, key_id)
        if key is None:
            raise CannotBind(f"No key with id {key_id}.")
        if key.revoked_at is not None:
            raise CannotBind(f"Key {key_id} ({key.prefix}) is revoked.")
        before = session.get(Installation, key.installation_id) if key.installation_id else None
        after = _installation_to_bind(session, key.company_id, user_id)
        key.installation_id = after.id
        if key.user_id is not None:
            key.user_id = user_id
    return Rebound(key, before, after)


class NotAuthenticated(Exception):
    """The request carries no credential this app accepts; the message says what was wrong with it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ScopeTooNarrow(Exception):
    """A read-only credential asked to change something."""


@dataclass(frozen=True)
class InstallationRef:
    """What the hot path needs of the installation serving a caller, read in the same statement as the
    credential. The ORM row is loaded only on the slow paths (refresh, the installation endpoint)."""

    id: int
    company_id: int
    user_id: int
    status: str
    api_domain: str
    access_token_enc: str | None
    has_refresh_token: bool
    access_token_expires_at: Any
    version: int
    generation: int  # the company's goals-cache generation (database-backed cache)
    throttled_until: Any = None  # Pipedrive's 429 holds until then (proxy/throttle.py)


_inst = Installation.__table__
_key = PartnerKey.__table__
_gen = CacheGeneration.__table__
_INSTALLATION_COLUMNS = (
    _inst.c.id,
    _inst.c.company_id,
    _inst.c.user_id,
    _inst.c.status,
    _inst.c.api_domain,
    _inst.c.access_token_enc,
    _inst.c.refresh_token_enc.is_not(None).label("has_refresh_token"),
    _inst.c.access_token_expires_at,
    _inst.c.version,
    _gen.c.generation,
    _inst.c.throttled_until,
)


# Built once: SQLAlchemy caches a statement's compiled form by the statement object.
_BY_KEY: Select = (
    select(
        _key.c.id.label("key_id"),
        _key.c.key_hash,
        _key.c.company_id.label("key_company_id"),
        _key.c.user_id.label("key_user_id"),
        _key.c.scope,
        _key.c.origins,
        _key.c.revoked_at,
        *_INSTALLATION_COLUMNS,
    )
    .select_from(
        # The key's own installation, whatever its status: a key never falls back to another one.
        _key.outerjoin(_inst, _inst.c.id == _key.c.installation_id).outerjoin(
            _gen, _gen.c.company_id == _key.c.company_id
        )
    )
    .where(_key.c.prefix == bindparam("prefix"))
)
_BY_USER: Select = (
    select(*_INSTALLATION_COLUMNS)
    .select_from(_inst.outerjoin(_gen, _gen.c.company_id == _inst.c.company_id))
    .where(
        _inst.c.company_id == bindparam("company_id"),
        _inst.c.user_id == bindparam("user_id"),
        _inst.c.status != InstallationStatus.UNINSTALLED,
    )
)


_BY_ID: Select = (
    select(*_INSTALLATION_COLUMNS)
    .select_from(_inst.outerjoin(_gen, _gen.c.company_id == _inst.c.company_id))
    .where(_inst.c.id == bindparam("installation_id"))
)


def installation_ref(installation_id: int) -> InstallationRef | None:
    """The installation read again (after a refresh changed its token, version or api_domain)."""
    row = _fetch(_BY_ID, {"installation_id": installation_id})
    return _ref(row) if row is not None else None


def _ref(row: Row) -> InstallationRef | None:
    if row.id is None:
        return None
    return InstallationRef(
        row.id,
        row.company_id,
        row.user_id,
        row.status,
        row.api_domain,
        row.access_token_enc,
        bool(row.has_refresh_token),
        row.access_token_expires_at,
        row.version,
        row.generation or 0,
        row.throttled_until,
    )


def _fetch(statement: Select, params: dict[str, Any]) -> Row | None:
    # One retry when the pooled connection turned out dead (the database restarted): SQLAlchemy has then
    # discarded the pool's older connections, and a read is safe to send again.
    for attempt in (1, 2):
        try:
            with db.read_connection() as conn:
                return conn.execute(statement, params).first()
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


def _from_key(key: str) -> tuple[Principal, InstallationRef | None]:
    prefix, dot, _secret = key.partition(".")
    if not dot or not prefix.startswith(KEY_PREFIX) or len(prefix) > 32:
        raise NotAuthenticated("The partner key is not valid.")
    row = _fetch(_BY_KEY, {"prefix": prefix})
    # Compare the hash even when no row matched, so an unknown prefix costs the same time as a bad secret.
    expected = row.key_hash if row is not None else hash_key("")
    if not hmac.compare_digest(expected, hash_key(key)) or row is None:
        raise NotAuthenticated("The partner key is not valid.")
    if row.revoked_at is not None:
        raise NotAuthenticated("The partner key has been revoked.")
    usage().key_used(row.key_id)
    principal = Principal(
        CredentialKind.KEY,
        row.key_company_id,
        row.key_user_id,
        KeyScope(row.scope),
        row.key_id,
        tuple(row.origins or ()),
    )
    return principal, _ref(row)


def touch_keys(session: Session, last_used: dict[int, Any]) -> None:
    """Store keys' last use (from usage.py's flush). A time is written only over an older one."""
    for key_id, when in last_used.items():
        session.execute(
            update(PartnerKey)
            .where(
                PartnerKey.id == key_id,
                or_(PartnerKey.last_used_at.is_(None), PartnerKey.last_used_at < when),
            )
            .values(last_used_at=when)
            .execution_options(synchronize_session=False)
        )


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


def _from_jwt(token: str) -> tuple[Principal, InstallationRef | None]:
    try:
        company_id, user_id = verify_panel_jwt(token)
    except jwt.InvalidTokenError:
        raise NotAuthenticated("The Pipedrive token is not valid or has expired.") from None
    row = _fetch(_BY_USER, {"company_id": company_id, "user_id": user_id})
    principal = Principal(CredentialKind.JWT, company_id, user_id, KeyScope.FULL)
    return principal, (_ref(row) if row is not None else None)


def authenticate() -> tuple[Principal, InstallationRef | None]:
    """The caller of this request and the installation that serves it (None: none does); exactly one
    credential is accepted."""
    # Pipedrive's own style, `?api_token=`, puts the key where URLs are logged, cached and shared: refused
    # even beside a proper credential (the bytes test first: most requests have no such parameter).
    if b"api_token" in request.query_string and "api_token" in request.args:
        raise NotAuthenticated(
            "A key in the query string (`api_token`) is not accepted, since URLs end up in logs: "
            "send it in the `x-api-token` header instead."
        )
    api_token = request.headers.get("x-api-token")
    authorization = request.headers.get("Authorization")
    if api_token is not None and authorization is not None:
        raise NotAuthenticated("Send exactly one credential, not both `x-api-token` and `Authorization`.")
    if api_token is not None:
        principal, inst = _from_key(api_token.strip())
    elif authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise NotAuthenticated("Use `Authorization: Bearer <credential>`.")
        principal, inst = _from_key(value) if value.startswith(KEY_PREFIX) else _from_jwt(value)
    else:
        raise NotAuthenticated("No credential was sent.")
    g.principal = principal
    return principal, inst


def require_scope(principal: Principal, scope: KeyScope) -> None:
    if scope == KeyScope.FULL and principal.scope != KeyScope.FULL:
        raise ScopeTooNarrow()
