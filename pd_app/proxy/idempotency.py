"""Idempotency keys on the proxy's writes (POST, PUT, DELETE), after the IETF httpapi Idempotency-Key
draft and Stripe's behaviour.

A write carrying `Idempotency-Key` first claims (credential, key) with an `in_progress` row inserted in its
own short transaction: the primary key makes the claim exclusive across processes and hosts. Once the write
has an answer the row keeps it (`done`) for 24 hours, and the same request again gets that answer byte for
byte with `Idempotent-Replayed: true`, sending nothing upstream. The same key on another request (method,
path or body) is refused with 422; while the first is still running, 409. A lock older than `STALE_AFTER`
has no living holder and is taken over.

What is kept follows Stripe's rule: only the answer of a request that started executing. The views claim
after the credential, scope and body checks, so those refusals never touch the table. Of what comes after
the claim, a success and the failures in `OUTCOMES` say what became of the request itself (refused for its
content or target by Pipedrive, or an outcome unknown) and are kept; any other failure is a refusal that
executed nothing (limits, budget, throttle, Pipedrive unreachable or in maintenance, the installation's
standing) and releases the key, so the same request may be sent again with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, Response, current_app, request
from sqlalchemy import ColumnElement, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .. import db
from ..auth import CredentialKind, Principal
from ..models import IdempotencyRecord, IdempotencyState, utcnow
from ..pipedrive.api import GoalNotFound, OutcomeUnknown, PipedriveError, PipedriveRejected

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
KEY_PATTERN = r"^[\x20-\x7E]*$"  # printable ASCII; the length is checked on its own
KEEP_FOR = timedelta(hours=24)
# Well over a write's deadline (gunicorn kills a request after 60 s): a lock this old has no living holder.
STALE_AFTER = timedelta(minutes=2)
PURGE_EVERY_S = 600.0
# The stored answer's headers; the rest (CORS, timing, security headers) belongs to each response.
KEPT_HEADERS = ("Content-Type",)
# Failures that are the request's own outcome (see the module's docstring): kept and replayed.
OUTCOMES: tuple[type[Exception], ...] = (OutcomeUnknown, PipedriveRejected, GoalNotFound, PipedriveError)


class InvalidIdempotencyKey(Exception):
    """The `Idempotency-Key` header is empty, too long or not printable ASCII."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.detail = {"field": HEADER, "message": message, "code": code}


class IdempotencyKeyReused(Exception):
    """The key was used by this credential for a different request within the last 24 hours."""


class IdempotencyKeyInProgress(Exception):
    """The first request with this key has no answer yet."""


@dataclass(frozen=True)
class Claim:
    """This request holds the key; `locked_at` tells its lock from a later holder's."""

    credential: str
    key: str
    locked_at: datetime


@dataclass(frozen=True)
class Stored:
    """The first request's answer."""

    status: int
    headers: dict[str, str]
    body: bytes


def idempotent(principal: Principal, run: Callable[[], Response]) -> Response:
    """`run()` (a write's forwarding), under the request's `Idempotency-Key` if it has one."""
    key = request.headers.get(HEADER)
    if key is None:
        return run()
    check_key(key)
    store = idempotency_store()
    found = store.claim(credential_of(principal), key, request_fingerprint())
    if isinstance(found, Stored):
        return replay(found)
    try:
        response = run()
    except Exception as exc:
        if not isinstance(exc, OUTCOMES):
            store.release(found)
            raise
        response = current_app.make_response(current_app.handle_user_exception(exc))
    store.finish(found, response)
    return response


def check_key(key: str) -> None:
    if not key:
        raise InvalidIdempotencyKey(f"The {HEADER} header is empty.", "empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(
            f"The {HEADER} header has {len(key)} characters; at most {MAX_KEY_LENGTH} are allowed.",
            "too_long",
        )
    # Header values arrive decoded as Latin-1, so any byte outside printable ASCII shows up here.
    if not all(" " <= ch <= "~" for ch in key):
        raise InvalidIdempotencyKey(
            f"The {HEADER} header may only hold printable ASCII characters (0x20 to 0x7E).", "invalid_format"
        )


def credential_of(principal: Principal) -> str:
    """Whose keys these are: a partner key's id, or the panel's company and user."""
    if principal.kind == CredentialKind.KEY:
        return f"key:{principal.key_id}"
    return f"jwt:{principal.company_id}:{principal.user_id}"


def fingerprint(method: str, path: str, body: bytes) -> str:
    """sha256 of the method, the path and the body as canonical JSON (sorted keys, compact); a body that does
    not parse counts as its bytes."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except (ValueError, RecursionError):
        canonical = body
    return hashlib.sha256(f"{method}\n{path}\n".encode() + canonical).hexdigest()


def request_fingerprint() -> str:
    return fingerprint(request.method, request.path, request.get_data(cache=True))


def replay(stored: Stored) -> Response:
    response = Response(stored.body, stored.status, headers=stored.headers)
    response.headers[REPLAYED_HEADER] = "true"
    return response


_rec = IdempotencyRecord.__table__


class IdempotencyStore:
    """The keys in the database, shared by every process and host; one per app."""

    def __init__(self) -> None:
        self.keep_for = KEEP_FOR
        self.stale_after = STALE_AFTER
        self.purge_every_s = PURGE_EVERY_S
        self._purged_at = float("-inf")

    def claim(self, credential: str, key: str, fingerprint: str) -> Claim | Stored:
        """Hold the key for this request, or the stored answer to replay; raises when another request has
        it (422) or is still running with it (409)."""
        self._purge_now_and_then()
        for _ in range(3):  # a row deleted or expired between our insert and our read: insert again
            now = utcnow()
            if self._insert(credential, key, fingerprint, now):
                return Claim(credential, key, now)
            row = self._read(credential, key)
            if row is None:
                continue
            if row.created_at < now - self.keep_for:  # expired: as good as absent
                self._delete(*_row(credential, key), _rec.c.created_at == row.created_at)
                continue
            if row.fingerprint != fingerprint:
                raise IdempotencyKeyReused()
            if row.state == IdempotencyState.DONE:
                return Stored(row.status, dict(row.headers or {}), bytes(row.body or b""))
            if row.locked_at < now - self.stale_after and self._take_over(
                credential, key, row.locked_at, now
            ):
                log.warning("idempotency key taken over from a request that never finished")
                return Claim(credential, key, now)
            raise IdempotencyKeyInProgress()
        raise IdempotencyKeyInProgress()

    def finish(self, claim: Claim, response: Response) -> None:
        """Keep the answer. The caller gets it even when it cannot be kept (the write has happened); the key
        then answers 409 until its lock is stale and another request takes it over."""
        headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
        try:
            with db.transaction() as session:
                result = session.execute(
                    update(_rec)
                    .where(*_held(claim))
                    .values(
                        state=IdempotencyState.DONE,
                        status=response.status_code,
                        headers=headers,
                        body=response.get_data(),
                    )
                )
        except SQLAlchemyError:
            log.error("could not store the answer to an idempotent request", exc_info=True)
            return
        if result.rowcount != 1:  # type: ignore[attr-defined]
            log.warning("idempotency key was taken over before its answer was stored")

    def release(self, claim: Claim) -> None:
        """Forget the key: the request was refused before it executed."""
        try:
            self._delete(*_held(claim))
        except SQLAlchemyError:
            # The lock goes stale and is taken over; until then the key answers 409.
            log.error("could not release an idempotency key", exc_info=True)

    def purge(self) -> int:
        """Delete every expired key; returns how many."""
        with db.transaction() as session:
            result = session.execute(delete(_rec).where(_rec.c.created_at < utcnow() - self.keep_for))
        return result.rowcount  # type: ignore[attr-defined]

    def _purge_now_and_then(self) -> None:
        # Only on writes that carry a key, at most once per interval per process: reads never pay for it.
        now = time.monotonic()
        if now - self._purged_at < self.purge_every_s:
            return
        self._purged_at = now
        try:
            self.purge()
        except SQLAlchemyError:
            log.warning("could not purge expired idempotency keys", exc_info=True)

    def _insert(self, credential: str, key: str, fingerprint: str, now: datetime) -> bool:
        try:
            with db.transaction() as session:
                session.execute(
                    insert(_rec).values(
                        credential=credential,
                        key=key,
                        fingerprint=fingerprint,
                        state=IdempotencyState.IN_PROGRESS,
                        created_at=now,
                        locked_at=now,
                    )
                )
        except IntegrityError:  # the key is already there
            return False
        return True

    def _read(self, credential: str, key: str) -> Row | None:
        with db.read_connection() as conn:
            return conn.execute(select(_rec).where(*_row(credential, key))).first()

    def _take_over(self, credential: str, key: str, locked_at: datetime, now: datetime) -> bool:
        with db.transaction() as session:
            result = session.execute(
                update(_rec).where(*_held(Claim(credential, key, locked_at))).values(locked_at=now)
            )
        return result.rowcount == 1  # type: ignore[attr-defined]

    def _delete(self, *conditions: ColumnElement[bool]) -> None:
        with db.transaction() as session:
            session.execute(delete(_rec).where(*conditions))


def _row(credential: str, key: str) -> tuple[ColumnElement[bool], ...]:
    return (_rec.c.credential == credential, _rec.c.key == key)


def _held(claim: Claim) -> tuple[ColumnElement[bool], ...]:
    """The claim's row, as long as this holder still has it."""
    return (
        *_row(claim.credential, claim.key),
        _rec.c.state == IdempotencyState.IN_PROGRESS,
        _rec.c.locked_at == claim.locked_at,
    )


def init_app(app: Flask) -> None:
    app.extensions["pd_idempotency"] = IdempotencyStore()


def idempotency_store() -> IdempotencyStore:
    return current_app.extensions["pd_idempotency"]
