"""Forwarding one validated Goals request to Pipedrive for the caller's installation.

A success is passed on as the bytes Pipedrive sent (its envelope untouched, parsed once only to check that it
is a JSON object). Every failure is a domain exception (pipedrive.py, tokens.py) that errors.py maps to the
contract's envelope. The steady-state read costs one SQL statement (auth.py), no write, no commit.

The budget rules, in the order they apply (each refusal sends nothing): the installation's throttle after a
Pipedrive 429 (throttle.py); for reads, the cache, then one upstream call shared by identical concurrent
reads (flight.py); the company's daily cap, charged per call (budget.py).
"""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Any

from flask import g

from .. import metrics
from ..auth import InstallationRef, installation_ref
from ..pipedrive import client
from ..pipedrive.api import (
    CircuitOpen,
    DomainNotAllowed,
    OutcomeUnknown,
    PipedriveCircuitOpen,
    PipedriveError,
    PipedriveUnauthorized,
    PipedriveUnavailable,
    UpstreamResponse,
    UpstreamUnreachable,
    raise_for_status,
)
from ..tokens.refresh import access_token, refresh_installation
from ..tokens.store import ensure_installed, ensure_serving
from . import throttle
from .budget import ledger
from .cache import GoalsCache, StoreSkipped, goals_cache
from .flight import flights
from .usage import usage

log = logging.getLogger(__name__)

UPSTREAM_RETRY_AFTER_S = 5
RETRIED_STATUSES = frozenset({502, 503, 504})


def forward(
    inst: InstallationRef | None,
    op: str,
    method: str,
    path: str,
    *,
    params: list[tuple[str, str]] | None = None,
    json_body: Any = None,
    use_cache: bool = True,
    cache: GoalsCache | None = None,
) -> tuple[bytes, int]:
    """Send one request upstream; on a 401 refresh once and retry once. Returns (body, status).

    Reads (GET) may be answered from `cache` (the goals cache unless another is given; not when `use_cache`
    is false: the caller sent `Cache-Control: no-cache`); every write invalidates the company's cached goals
    reads. `g.pd_cache` tells the view how a read was answered: "hit", "miss", or "shared" (another
    request's upstream call).
    """
    # Nothing goes upstream, nor comes from the cache, for an installation that cannot serve (a key's bound
    # installation may be uninstalled or need reauthorization: the caller is told which one).
    inst = ensure_serving(inst)
    throttle.check(inst.throttled_until)
    started = time.monotonic()
    cache = cache or goals_cache()
    if method == "GET":
        g.pd_cache = "miss"
        # The cache's key also names the read for sharing one upstream call (within the process, and across
        # processes through Redis while it answers).
        cache_key = cache.key_for(inst, path, params or [])
        if cache.enabled and use_cache:
            hit = _cache_call(cache, cache.get, cache_key)
            if hit is not None:
                metrics.cache_hit(op)
                g.pd_cache = "hit"
                return hit, 200
        flight_key = cache_key
        if not use_cache:
            flight_key += ":no-cache"  # never joins a leader that may answer from the cache

        def lead() -> tuple[bytes, int]:
            # The one call for this read. It files its answer in the cache before the others waiting on it
            # are let go, so a read that arrives in between finds the answer instead of calling again.
            if cache.enabled and use_cache:
                hit = _cache_call(cache, cache.get, cache_key)  # filled while this one waited for its turn
                if hit is not None:
                    g.pd_cache = "hit"
                    return hit, 200
            throttle.check(throttle.stored_since(inst.id, started))  # a 429 met while this one waited
            body, status = _forward_upstream(inst, op, method, path, params, None)
            if cache.enabled and status == 200:
                _cache_call(cache, cache.put, cache_key, body)
            return body, status

        (body, status), shared = flights().run(flight_key, lead)
        if shared:
            g.pd_cache = "shared"
        return body, status
    # A write invalidates the company's cached reads before it goes out and again once it has an outcome of
    # any kind: a read racing the write, or a write that timed out but happened, must not stay cached.
    _cache_call(cache, cache.invalidate, inst.company_id)
    try:
        return _forward_upstream(inst, op, method, path, params, json_body)
    finally:
        _cache_call(cache, cache.invalidate, inst.company_id)


def _forward_upstream(
    inst: InstallationRef,
    op: str,
    method: str,
    path: str,
    params: list[tuple[str, str]] | None,
    json_body: Any,
) -> tuple[bytes, int]:
    deadline = time.monotonic() + client().settings.upstream_deadline_s
    token, refreshed = access_token(inst)
    if refreshed:
        inst = _read_again(inst)
    resp = _send_retrying(deadline, op, method, inst, path, token, params, json_body)
    if resp.status == 401:
        token = refresh_installation(inst.id, seen_version=inst.version, force=True)
        inst = _read_again(inst)
        resp = _send_retrying(deadline, op, method, inst, path, token, params, json_body)
        if resp.status == 401:
            raise PipedriveUnauthorized()
    usage().rate_limit_seen(inst.id, resp.headers)
    if resp.status == 429:  # held for every process until Pipedrive's reset (the wait raise_for_status names)
        throttle.record(inst.id, resp)
    raise_for_status(resp, method)
    if not _is_json_object(resp.raw):
        raise PipedriveError("Pipedrive answered with a body that is not JSON.")
    return resp.raw, resp.status


def _send_retrying(
    deadline: float,
    op: str,
    method: str,
    inst: InstallationRef,
    path: str,
    token: str,
    params: list[tuple[str, str]] | None,
    json_body: Any,
) -> UpstreamResponse:
    """`_send`; for a read that got 502/503/504 or no answer, up to UPSTREAM_RETRIES more attempts, each
    after Pipedrive's Retry-After if it sent one, else a jittered backoff, and only while that wait and a
    whole attempt still end before `deadline` (else the last answer stands, with its Retry-After). A write
    is sent once: it may have arrived. An open breaker is not waited for: failing fast is its point."""
    if method != "GET":
        return _send(op, method, inst, path, token, params, json_body)
    settings = client().settings
    attempt = 0
    while True:
        failure: PipedriveUnavailable | None = None
        try:
            resp = _send(op, method, inst, path, token, params, json_body)
        except PipedriveCircuitOpen:
            raise
        except PipedriveUnavailable as exc:  # no answer at all
            failure, wait = exc, None
        else:
            if resp.status not in RETRIED_STATUSES:
                return resp
            wait = resp.retry_after
        if wait is None:  # full jitter: uniform in [0, base x 2^attempt], capped
            ceiling = min(settings.upstream_backoff_max_s, settings.upstream_backoff_s * 2**attempt)
            wait = random.uniform(0, ceiling)
        if attempt >= settings.upstream_retries or (
            time.monotonic() + wait + settings.upstream_timeout > deadline
        ):
            if failure is not None:
                raise failure
            return resp
        attempt += 1
        metrics.upstream_retry(op)
        time.sleep(wait)


def _read_again(inst: InstallationRef) -> InstallationRef:
    """After a refresh: its api_domain and version may have moved."""
    return ensure_installed(installation_ref(inst.id))


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


def _cache_call(cache: GoalsCache, fn, *args):
    """The cache is an optimisation: when its store fails, answer from Pipedrive instead of failing."""
    try:
        return fn(*args)
    except StoreSkipped:  # Redis failed moments ago in this process (cache.RedisGate): said then
        return None
    except cache.errors:
        log.warning("%s cache unavailable", cache.namespace, exc_info=True)
        return None


def _send(
    op: str,
    method: str,
    inst: InstallationRef,
    path: str,
    token: str,
    params: list[tuple[str, str]] | None,
    json_body: Any,
) -> UpstreamResponse:
    charge = ledger().charge(inst.company_id, op)  # BudgetExhausted: nothing is sent
    started = time.perf_counter()
    outcome = "refused"
    sent = True  # for Server-Timing: was Pipedrive called (or may it have been)?
    try:
        resp = client().call(method, inst.api_domain, path, token, params=params, json=json_body)
        outcome = str(resp.status)
        return resp
    except DomainNotAllowed:  # refused before sending: the token never left
        sent = False
        ledger().refund(charge)
        raise
    except CircuitOpen as exc:  # nothing was sent
        outcome = "circuit_open"
        sent = False
        ledger().refund(charge)
        raise PipedriveCircuitOpen(
            "Pipedrive failed several times in a row; the app is not calling it for a few seconds.",
            retry_after=exc.retry_after,
        ) from None
    except UpstreamUnreachable as exc:
        outcome = "unreachable"
        sent = exc.sent
        if not exc.sent:
            ledger().refund(charge)
        if method != "GET" and exc.sent:
            raise OutcomeUnknown() from None
        raise PipedriveUnavailable(
            "Pipedrive is not reachable right now.", retry_after=UPSTREAM_RETRY_AFTER_S
        ) from None
    finally:
        elapsed = time.perf_counter() - started
        if sent:
            g.pd_upstream_s = g.get("pd_upstream_s", 0.0) + elapsed
        metrics.upstream(op, outcome, elapsed)
