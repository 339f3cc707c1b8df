"""Delivering recorded events: signed POSTs, at least once, retried with backoff, logged per webhook.

- A due delivery (not delivered, `next_attempt_at` passed) is claimed with a conditional UPDATE on its
  `attempts` (a version number), which also schedules its next try: two workers never send one at once,
  and one that dies mid-send leaves it due again after the backoff (at least once).
- The POST carries the stored body bytes, `Pd-App-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
  "<t>.<body>")>`, a 5 s timeout, and follows no redirect. Any 2xx is delivered; anything else is retried
  after 1 min x 2^(attempt-1), capped at 1 h, jittered: so for 24 h and beyond.
- A delivery still failing 24 h after its event marks the webhook failing. A failing webhook's events are
  kept, not sent: only its oldest pending delivery is tried (hourly, the backoff's cap). When that one gets a
  2xx the webhook is healthy again and everything kept is sent at once, oldest first.
- Each attempt is logged (time, status, duration, error, the first 1 KB of the answer); the last 100 per
  webhook are kept. Delivered rows are deleted after 7 days (hourly, by the periodic task).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, has_app_context
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from .. import db
from ..models import Webhook, WebhookAttempt, WebhookDelivery, utcnow
from ..tokens.cipher import TokenDecryptError
from . import safety
from .events import EMITTED
from .registry import secret_of

log = logging.getLogger(__name__)

USER_AGENT = "pd_app-webhooks/1"
SIGNATURE_HEADER = "Pd-App-Signature"
RETRY_FOR = timedelta(hours=24)
BACKOFF_BASE_S = 60.0
BACKOFF_MAX_S = 3600.0
KEEP_ATTEMPTS = 100
EXCERPT_BYTES = 1024
BATCH = 100


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Pd-App-Signature` header's value for this body at this time."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th try: 1 min, 2, 4 ... capped at 1 h, each 80-100 % of that (so that
    deliveries that failed together do not all come back at the same second)."""
    delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1))
    return timedelta(seconds=delay * random.uniform(0.8, 1.0))


@dataclass
class Outcome:
    status: int | None
    duration_ms: int
    error: str | None = None
    excerpt: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(target: safety.Target, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    """POST to the address that was checked (no second DNS lookup), with the URL's host in `Host` and, for
    https, in SNI and the certificate check. No redirects, no retries here.

    `timeout` bounds the whole exchange, not each socket operation: a watchdog shuts the socket down when it
    runs out, so a receiver that trickles its answer a byte at a time cannot hold a worker."""
    import http.client
    import socket
    import ssl

    started = time.perf_counter()
    expired = threading.Event()
    raw: socket.socket | None = None
    watchdog: threading.Timer | None = None
    try:
        raw = socket.create_connection((target.address, target.port), timeout=timeout)

        def cut(sock: socket.socket = raw) -> None:
            expired.set()
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        watchdog = threading.Timer(max(0.0, timeout - (time.perf_counter() - started)), cut)
        watchdog.daemon = True
        watchdog.start()
        sock: socket.socket = raw
        if target.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(raw, server_hostname=target.hostname)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
        conn.sock = sock
        conn.putrequest("POST", target.path, skip_host=True, skip_accept_encoding=True)
        for name, value in {**headers, "Host": target.host_header, "Content-Length": str(len(body))}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        excerpt = response.read(EXCERPT_BYTES)
        if expired.is_set():  # cut off mid-answer: what was read may end anywhere, a 2xx included
            raise TimeoutError(f"no complete answer within {timeout:g} s")
        status = response.status
        error = None
        if 300 <= status < 400:
            error = f"redirect to {response.getheader('Location', '?')!r} not followed"
        elif not 200 <= status < 300:
            error = f"HTTP {status}"
        text = _clean(excerpt.decode("utf-8", "replace"), EXCERPT_BYTES)
        return Outcome(status, _ms(started), _clean(error, 500), text)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        timed_out = expired.is_set() or isinstance(exc, TimeoutError)
        kind = "timeout" if timed_out else "connection failed"
        return Outcome(None, _ms(started), _clean(f"{kind}: {exc}", 500))
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if raw is not None:
            raw.close()


def _clean(text: str | None, limit: int) -> str | None:
    """What may be stored of a receiver's words: no NUL (PostgreSQL text cannot hold it), at most `limit`."""
    if not text:
        return None
    return text.replace("\x00", "")[:limit]


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


@dataclass
class Summary:
    attempted: int = 0
    delivered: int = 0
    failed: int = 0


def _candidates(session: Session, now: datetime, limit: int) -> list[tuple[int, int]]:
    """(id, attempts) of due deliveries, oldest due first; of a failing webhook only its oldest pending."""
    older = aliased(WebhookDelivery)
    oldest_pending = (
        select(func.min(older.id))
        .where(older.webhook_id == WebhookDelivery.webhook_id, older.delivered_at.is_(None))
        .scalar_subquery()
    )
    rows = session.execute(
        select(WebhookDelivery.id, WebhookDelivery.attempts)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.next_attempt_at <= now,
            or_(Webhook.failing_since.is_(None), WebhookDelivery.id == oldest_pending),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]


def _claim(session: Session, delivery_id: int, seen_attempts: int, now: datetime) -> bool:
    with db.transaction(session):
        claimed = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.attempts == seen_attempts,
                WebhookDelivery.delivered_at.is_(None),
            )
            .values(attempts=seen_attempts + 1, next_attempt_at=now + backoff(seen_attempts + 1))
            .execution_options(synchronize_session=False)
        ).rowcount
    return claimed == 1


def deliver_due(limit: int = BATCH, *, now: datetime | None = None, timeout: float | None = None) -> Summary:
    """Send each due delivery once (at most `limit`); `now` stands for the clock (tests)."""
    session = db.get_session()
    now = now or utcnow()
    settings = current_app.config["SETTINGS"]
    timeout = settings.webhook_timeout_s if timeout is None else timeout
    summary = Summary()
    candidates = _candidates(session, now, limit)
    db.end_read(session)
    failed_hooks: set[int] = set()  # a receiver that failed once in this batch is not tried again in it
    began = utcnow()
    for delivery_id, attempts in candidates:
        # Each claim schedules its retry from the moment it is made (a long batch moves on), on `now`'s clock.
        if not _claim(session, delivery_id, attempts, now + (utcnow() - began)):
            continue  # another worker has it
        row = session.execute(
            select(WebhookDelivery, Webhook)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id == delivery_id)
            .execution_options(populate_existing=True)
        ).first()
        db.end_read(session)
        if row is None:
            continue  # the webhook was removed meanwhile
        delivery, hook = row
        if hook.id in failed_hooks:
            continue  # claimed (its next attempt is scheduled), not sent: the receiver is failing right now
        try:
            outcome = _send(hook, delivery, settings.production, timeout)
        except Exception as exc:  # one bad delivery must not stop the batch; it is logged and retried
            log.exception("webhook %s: delivery %s failed unexpectedly", hook.id, delivery.id)
            outcome = Outcome(None, 0, f"not sent: {type(exc).__name__}")
        summary.attempted += 1
        if outcome.delivered:
            summary.delivered += 1
        else:
            summary.failed += 1
            failed_hooks.add(hook.id)
        try:
            _record(session, hook, delivery, outcome, now)
        except SQLAlchemyError:  # it stays claimed and due again later; the others go on
            session.rollback()
            log.exception("webhook %s: could not record delivery %s", hook.id, delivery.id)
    return summary


def deliver_all(*, now: datetime | None = None) -> Summary:
    """Every due delivery, batch after batch, each at most once in this run (`webhooks deliver`)."""
    total = Summary()
    while True:
        batch = deliver_due(BATCH, now=now)
        total.attempted += batch.attempted
        total.delivered += batch.delivered
        total.failed += batch.failed
        # A failed one is not due again in this run (its backoff is a minute at least); a delivered webhook
        # that was failing releases what it kept, which the next batch sends.
        if batch.attempted == 0:
            return total


def _send(hook: Webhook, delivery: WebhookDelivery, production: bool, timeout: float) -> Outcome:
    try:
        target = safety.resolve(safety.parse(hook.url, production=production), production=production)
    except safety.UnsafeUrl as exc:
        return Outcome(None, 0, f"refused: url {exc.message}"[:500])
    try:
        secret = secret_of(hook)
    except TokenDecryptError as exc:
        log.error("webhook %s: the signing secret does not decrypt", hook.id)
        return Outcome(None, 0, f"not sent: {exc}"[:500])
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(secret, delivery.body, int(time.time())),
        "Pd-App-Event": delivery.event_type,
        "Pd-App-Event-Id": delivery.event_id,
    }
    return post(target, delivery.body, headers, timeout)


def _record(
    session: Session, hook: Webhook, delivery: WebhookDelivery, outcome: Outcome, now: datetime
) -> None:
    """Log the attempt and apply its outcome: delivered (and the webhook healthy again), or failing."""
    try:
        with db.transaction(session):
            session.add(
                WebhookAttempt(
                    webhook_id=hook.id,
                    event_id=delivery.event_id,
                    at=utcnow(),
                    status=outcome.status,
                    duration_ms=outcome.duration_ms,
                    error=outcome.error,
                    response_excerpt=outcome.excerpt,
                )
            )
            # Written before anything is read: on SQLite a transaction that read first cannot write once
            # another worker has committed. A webhook removed meanwhile fails this on its foreign key.
            session.flush()
            if session.get(Webhook, hook.id, populate_existing=True) is None:
                return
            if outcome.delivered:
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == delivery.id)
                    .values(delivered_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                if hook.failing_since is not None:
                    _recovered(session, hook, now)
            elif hook.failing_since is None and now - delivery.created_at >= RETRY_FOR:
                session.execute(
                    update(Webhook)
                    .where(Webhook.id == hook.id, Webhook.failing_since.is_(None))
                    .values(failing_since=now)
                    .execution_options(synchronize_session=False)
                )
                log.warning("webhook %s is failing: %s undelivered for 24 h", hook.id, delivery.event_id)
            _prune(session, hook.id)
    except IntegrityError:
        log.info("webhook %s was removed while a delivery was being recorded", hook.id)
    db.end_read(session)


def _recovered(session: Session, hook: Webhook, now: datetime) -> None:
    session.execute(
        update(Webhook)
        .where(Webhook.id == hook.id)
        .values(failing_since=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.delivered_at.is_(None))
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    log.info("webhook %s delivers again; its kept events are released", hook.id)


def _prune(session: Session, webhook_id: int) -> None:
    """Keep the last KEEP_ATTEMPTS log rows of the webhook."""
    cutoff = (
        select(WebhookAttempt.id)
        .where(WebhookAttempt.webhook_id == webhook_id)
        .order_by(WebhookAttempt.id.desc())
        .offset(KEEP_ATTEMPTS - 1)
        .limit(1)
        .scalar_subquery()
    )
    session.execute(
        delete(WebhookAttempt)
        .where(WebhookAttempt.webhook_id == webhook_id, WebhookAttempt.id < cutoff)
        .execution_options(synchronize_session=False)
    )


# -- the queue ---------------------------------------------------------------------------------------------


KEEP_DELIVERED = timedelta(days=7)


def prune_delivered(now: datetime | None = None) -> int:
    """Forget deliveries delivered more than 7 days ago (their attempts stay in the log)."""
    session = db.get_session()
    cutoff = (now or utcnow()) - KEEP_DELIVERED
    with db.transaction(session):
        return session.execute(
            delete(WebhookDelivery)
            .where(WebhookDelivery.delivered_at < cutoff)
            .execution_options(synchronize_session=False)
        ).rowcount


def run_periodic() -> None:
    """The every-minute task: what `deliver_now` does, and once an hour the delivered rows are pruned."""
    if utcnow().minute == 13:
        prune_delivered()
    run_deliveries()


def run_deliveries() -> None:
    """The worker's task: one batch now, and another at once if this one was full."""
    summary = deliver_due(BATCH)
    if summary.attempted:
        log.info("webhook deliveries: %s delivered, %s failed", summary.delivered, summary.failed)
    if summary.attempted >= BATCH:
        notify()


def notify() -> None:
    """Have a worker deliver now (what was just committed). Best effort: the every-minute task catches up."""
    if not has_app_context():
        return
    from ..jobs import jobs

    try:
        jobs().enqueue("deliver_now")
    except Exception:  # a queue that is down must not fail the change that caused the event
        log.warning("could not queue webhook deliveries; the periodic task will send them", exc_info=True)


def after_commit(session: Session) -> None:
    if session.info.pop(EMITTED, False):
        notify()


def after_rollback(session: Session, _previous_transaction: object) -> None:
    session.info.pop(EMITTED, None)


def register_tasks(jobs) -> None:
    from huey import crontab

    jobs.periodic("deliveries", crontab(), run_periodic)
    jobs.task("deliver_now", run_deliveries)
