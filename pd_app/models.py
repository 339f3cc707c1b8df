"""Typed SQLAlchemy 2.0 models. Schema changes go through an Alembic migration in migrations/versions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class InstallationStatus(StrEnum):
    """Where an installation stands: `reauth_required` after Pipedrive refused its refresh token,
    `uninstalled` after an uninstall notice or an operator's revoke (its tokens are gone)."""

    ACTIVE = "active"
    REAUTH_REQUIRED = "reauth_required"
    UNINSTALLED = "uninstalled"


class KeyScope(StrEnum):
    """What a credential may do through the proxy: `read` goals, or also change them (`full`)."""

    READ = "read"
    FULL = "full"


def _one_of(column: str, values: type[StrEnum]) -> str:
    """A CHECK constraint's text from an enum: the database refuses what the code cannot name."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database. SQLite keeps no zone and hands back naive values;
    they were written as UTC, so they are read back as UTC here, once, instead of at each use."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Installation(Base):
    """One Pipedrive user's grant to the app. Tokens are stored only encrypted (see tokens.py)."""

    __tablename__ = "installations"
    __table_args__ = (
        UniqueConstraint("company_id", "user_id", name="uq_installations_company_user"),
        CheckConstraint(_one_of("status", InstallationStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    company_domain: Mapped[str | None] = mapped_column(String(255))
    company_name: Mapped[str | None] = mapped_column(String(255))
    user_name: Mapped[str | None] = mapped_column(String(255))
    user_email: Mapped[str | None] = mapped_column(String(320))
    is_admin: Mapped[bool] = mapped_column(default=False)
    # The user's settings as /users/me gave them at install (the panel formats numbers, money and dates
    # with them): e.g. "en_GB", "EUR", "Europe/London".
    locale: Mapped[str | None] = mapped_column(String(32))
    default_currency: Mapped[str | None] = mapped_column(String(32))
    timezone_name: Mapped[str | None] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(1000), default="")
    api_domain: Mapped[str] = mapped_column(String(255))
    access_token_enc: Mapped[str | None] = mapped_column(Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(Text)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(32), default=InstallationStatus.ACTIVE)
    # Bumped by SQLAlchemy on every ORM update, which also checks it (optimistic concurrency).
    version: Mapped[int] = mapped_column(Integer)
    rate_limit: Mapped[dict | None] = mapped_column(JSON)
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    last_refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refresh_token_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set from Pipedrive's 429 (Retry-After / x-ratelimit-reset): until then the proxy answers 429 itself.
    throttled_until: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __mapper_args__ = {"version_id_col": version}

    @property
    def scope_list(self) -> list[str]:
        return [s for s in self.scopes.split(",") if s]


class PartnerKey(Base):
    """A partner's credential for the proxy. Only a hash of the secret is stored; the prefix is for humans."""

    __tablename__ = "partner_keys"
    __table_args__ = (CheckConstraint(_one_of("scope", KeyScope), name="scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    company_id: Mapped[int] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    # The one installation whose token serves this key: set when the key is created, changed only by an
    # operator (`keys rebind`), never by itself.
    installation_id: Mapped[int | None] = mapped_column(ForeignKey("installations.id"))
    scope: Mapped[str] = mapped_column(String(8), default=KeyScope.FULL)
    origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OAuthState(Base):
    """A spent install `state`: the row's existence makes a replay fail in every worker and host."""

    __tablename__ = "oauth_states"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class SharingNotice(Base):
    """Pipedrive's app-sharing notice (POST /oauth/callback): an admin shared or unshared the app."""

    __tablename__ = "sharing_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    is_shared: Mapped[bool]
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CacheGeneration(Base):
    """Per company, bumped by every write through the proxy; cached reads of older generations are dead."""

    __tablename__ = "cache_generations"

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


class BudgetDay(Base):
    """A company's Pipedrive token spending on one UTC day (see proxy/budget.py).

    `reserved` is what processes have claimed (spent or about to be), checked against the cap when claimed;
    `spent` is what calls actually cost, settled by each process's flush."""

    __tablename__ = "budget_days"

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    spent: Mapped[int] = mapped_column(BigInteger, default=0)


class IdempotencyState(StrEnum):
    IN_PROGRESS = "in_progress"
    DONE = "done"


class IdempotencyRecord(Base):
    """An `Idempotency-Key` seen from one credential, and the first answer to it (kept 24 h)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (CheckConstraint(_one_of("state", IdempotencyState), name="state"),)

    credential: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=IdempotencyState.IN_PROGRESS)
    status: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[dict | None] = mapped_column(JSON)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    locked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GoalSnapshot(Base):
    """A goal's progress on one UTC day, as the worker read it from Pipedrive (jobs/snapshots.py); a later
    snapshot on the same day replaces the earlier one. The history endpoint reads only these."""

    __tablename__ = "goal_snapshots"

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    goal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    actual: Mapped[float] = mapped_column(Float)
    target: Mapped[float | None] = mapped_column(Float)
    progress: Mapped[float | None] = mapped_column(Float)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GoalReached(Base):
    """`goal.reached` was sent for this goal and period: once per period, whatever the number of workers."""

    __tablename__ = "goals_reached"

    company_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    goal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    reached_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Webhook(Base):
    """A partner's or operator's endpoint for the company's events. The signing secret is stored encrypted."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(BigInteger, index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret_enc: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))  # "cli", "key:<id>", "jwt:<company>:<user>"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Set when a delivery kept failing for 24 h; cleared by the next delivery that succeeds.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One event for one webhook: the exact body to sign and send, until a 2xx (at least once)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookAttempt(Base):
    """The delivery log: one row per attempt (the last 100 per webhook are kept)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(500))
    response_excerpt: Mapped[str | None] = mapped_column(String(1024))
