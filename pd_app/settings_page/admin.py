"""Who may see and change the app's settings: a Pipedrive admin of the company, as Pipedrive says now.

The admin flag stored at install (`Installation.is_admin`) can be months old, and a demoted admin must lose
access soon. So the answer comes from Pipedrive itself: `GET /users/me` with the caller's own installation's
token (whose `access` says admin or not, the same reading as the install's), through the proxy's own path:
charged to the company's ledger (2 tokens), held back by Pipedrive's throttle and the daily cap, retried
and refreshed like any read. One answer is remembered for ADMIN_CHECK_TTL_S seconds per (company, user) in
each process, so a page and its API calls cost one check a minute at most; a demoted admin loses access
within that minute, a promoted user gains it as fast. Identical concurrent checks share one call (flight.py).
When Pipedrive cannot answer (unreachable, throttled, the day's budget spent, the authorization lapsed),
nothing is assumed: the caller gets that error, never the stored flag. What Pipedrive said is written back to
the stored flag when it changed (key binding and snapshots prefer an admin's installation), and audited.
"""

from __future__ import annotations

import json
import threading
import time

from flask import Flask, current_app
from sqlalchemy import update

from .. import db
from ..auth import CredentialKind, InstallationRef, Principal
from ..install.identity import identity_from_users_me
from ..logs import audit
from ..models import Installation
from ..pipedrive.api import PipedriveError
from ..proxy import throttle
from ..proxy.flight import flights
from ..proxy.forward import _forward_upstream  # the proxy's one way upstream: ledger, retries, refresh
from ..tokens.store import ensure_serving

ADMIN_CHECK_TTL_S = 60.0
USERS_ME = "/api/v1/users/me"


class AdminOnly(Exception):
    """The caller may not see or change the app's settings: a partner key, or a user who is not an admin."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAdmin(AdminOnly):
    def __init__(self) -> None:
        super().__init__(
            "Only a Pipedrive admin of the company can see and change the app's settings; Pipedrive says "
            "this user is not one."
        )


class AdminChecks:
    """What Pipedrive last said of each (company, user), remembered for `ttl_s` seconds in this process."""

    def __init__(self, ttl_s: float = ADMIN_CHECK_TTL_S) -> None:
        self.ttl_s = ttl_s
        self.clock = time.monotonic  # tests move it past the TTL
        self._answers: dict[tuple[int, int], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def get(self, company_id: int, user_id: int) -> bool | None:
        with self._lock:
            found = self._answers.get((company_id, user_id))
        if found is None or self.clock() - found[0] >= self.ttl_s:
            return None
        return found[1]

    def put(self, company_id: int, user_id: int, is_admin: bool) -> None:
        with self._lock:
            if len(self._answers) > 10_000:  # a bound, not an eviction policy: answers are a minute's worth
                self._answers.clear()
            self._answers[(company_id, user_id)] = (self.clock(), is_admin)


def admin_checks() -> AdminChecks:
    return current_app.extensions["pd_admin_checks"]


def is_admin(ref: InstallationRef) -> bool:
    """Whether Pipedrive says the installation's user is an admin, asked at most once a TTL; raises the
    proxy's domain errors when it cannot be asked (reauth, throttle, budget, Pipedrive down)."""
    checks = admin_checks()
    known = checks.get(ref.company_id, ref.user_id)
    if known is not None:
        return known
    ref = ensure_serving(ref)
    throttle.check(ref.throttled_until)
    (body, _status), _shared = flights().run(
        f"users_me:{ref.id}",
        lambda: _forward_upstream(ref, "users_me", "GET", USERS_ME, None, None),
    )
    try:
        identity = identity_from_users_me(json.loads(body).get("data"))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise PipedriveError("Pipedrive's /users/me answer does not say who the user is.") from None
    if (identity.company_id, identity.user_id) != (ref.company_id, ref.user_id):
        raise PipedriveError("Pipedrive's /users/me answered for another user.")
    checks.put(ref.company_id, ref.user_id, identity.is_admin)
    _store(ref, identity.is_admin)
    return identity.is_admin


def _store(ref: InstallationRef, is_admin: bool) -> None:
    """Write Pipedrive's answer over the stored flag when it differs: one conditional update of that column
    alone, so it neither waits for nor disturbs a refresh (whose versioned write leaves it alone)."""
    session = db.get_session()
    db.end_read(session)  # a read begun before the call (SQLite) could not write after the ledger's commit
    with db.transaction(session):
        changed = session.execute(
            update(Installation)
            .where(Installation.id == ref.id, Installation.is_admin != is_admin)
            .values(is_admin=is_admin)
            .execution_options(synchronize_session=False)
        ).rowcount
    if changed:
        audit("admin_status_changed", company_id=ref.company_id, user_id=ref.user_id, is_admin=is_admin)


def require_admin(principal: Principal, ref: InstallationRef | None) -> InstallationRef:
    """The caller's own installation, if the caller is a Pipedrive admin of the company signed in through
    Pipedrive (a panel or settings-page JWT); AdminOnly otherwise. A partner key never qualifies, whatever
    its scope: keys are what this page manages."""
    if principal.kind is not CredentialKind.JWT:
        raise AdminOnly(
            "Partner keys cannot manage the app's settings, whatever their scope; a Pipedrive admin of the "
            "company does it from the app's settings page inside Pipedrive."
        )
    ref = ensure_serving(ref)
    if not is_admin(ref):
        raise NotAdmin()
    return ref


def init_app(app: Flask) -> None:
    app.extensions["pd_admin_checks"] = AdminChecks()
