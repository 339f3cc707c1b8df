"""A partner key is served by the one installation it was bound to when created: it never switches to another
user's token by itself; `keys rebind` moves it. And what a refused credential is told."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from pd_app.auth import CannotBind, create_key
from pd_app.db import get_session
from pd_app.models import Installation, PartnerKey, utcnow
from pd_app.sandbox import fingerprint
from pd_app.tokens.cipher import cipher

from .test_lifecycle import basic, notice
from .test_proxy import GOAL

FIND = "/api/v1/goals/find"
ADA, SAM, RITA, GIL = 2001, 2002, 2003, 2101  # Acme's admin, two Acme sellers, Globex's admin


def token_fingerprints(app) -> dict[int, str]:
    """Each installed user's access token, as the sandbox records it."""
    with app.app_context():
        rows = get_session().scalars(select(Installation)).all()
        return {
            i.user_id: fingerprint(cipher().decrypt(i, "access_token", i.access_token_enc))
            for i in rows
            if i.access_token_enc
        }


def installation_id(app, user_id: int) -> int:
    with app.app_context():
        return get_session().scalar(select(Installation.id).where(Installation.user_id == user_id))


def finds_sent(sandbox) -> list[str]:
    """The access tokens (fingerprints) of every find the sandbox received."""
    return [c["access_token_fp"] for c in sandbox.calls if c["path"] == FIND]


def key_id(runner, key: str) -> str:
    prefix = key.partition(".")[0]
    line = next(x for x in runner.invoke(args=["keys", "list"]).output.splitlines() if prefix in x)
    return line.split()[0]


def listed(runner, key: str) -> list[str]:
    """The `keys list` row of a key, split into its columns."""
    prefix = key.partition(".")[0]
    return next(x for x in runner.invoke(args=["keys", "list"]).output.splitlines() if prefix in x).split()


@pytest.fixture
def acme(installer, sandbox):
    """Acme with its admin Ada installed first, then Sam."""
    installer.install(user_id=ADA)
    installer.install(user_id=SAM)
    sandbox.clear_calls()


def _needs_reauth(app, client, key: str, sandbox, user_id: int = ADA) -> None:
    """Make Pipedrive refuse the installation's refresh token, the way it happens: the next refresh gets
    `invalid_grant` and the installation is marked reauth_required."""
    with app.app_context():
        session = get_session()
        session.execute(
            update(Installation)
            .where(Installation.user_id == user_id)
            .values(access_token_expires_at=utcnow() + timedelta(seconds=60))
        )
        session.commit()
    sandbox.set_knobs(refresh_error="invalid_grant")
    first = client.get(FIND, headers={"x-api-token": key})
    assert first.status_code == 401 and first.get_json()["code"] == "reauth_required"
    assert f"user {user_id} of company 1001" in first.get_json()["error"]
    sandbox.set_knobs(refresh_error=None)
    with app.app_context():
        status = get_session().scalar(select(Installation.status).where(Installation.user_id == user_id))
    assert status == "reauth_required"
    sandbox.clear_calls()


# -- binding at creation ------------------------------------------------------------------------------------
def test_a_company_key_is_bound_to_the_admins_installation(app, client, runner, acme, make_key, sandbox):
    key = make_key()  # Sam installed last, but Ada is the admin
    assert listed(runner, key)[3:5] == [str(ADA), "active"]
    info = client.get("/api/v1/app/installation", headers={"x-api-token": key}).get_json()["data"]
    assert info["user_id"] == ADA and info["status"] == "active"
    assert info["credential"]["installation_id"] == installation_id(app, ADA)
    assert info["credential"]["user_bound"] is False
    assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
    assert finds_sent(sandbox) == [token_fingerprints(app)[ADA]]


def test_without_an_admin_a_company_key_takes_the_most_recent_installation(runner, installer, make_key):
    installer.install(user_id=SAM)
    installer.install(user_id=RITA)
    assert listed(runner, make_key())[3] == str(RITA)


def test_a_user_key_is_bound_to_that_users_installation(app, client, runner, acme, make_key, sandbox):
    key = make_key(user_id=SAM)
    assert listed(runner, key)[3] == f"{SAM}*"
    info = client.get("/api/v1/app/installation", headers={"x-api-token": key}).get_json()["data"]
    assert info["credential"]["installation_id"] == installation_id(app, SAM)
    assert info["credential"]["user_bound"] is True


@pytest.mark.parametrize(
    ("installed", "args", "says"),
    [
        ((), ["--company-id", "1001"], "Company 1001 has no installation"),
        ((GIL,), ["--company-id", "1001"], "Company 1001 has no installation"),
        ((ADA,), ["--company-id", "1001", "--user-id", str(SAM)], f"no installation of user {SAM}"),
        ((GIL,), ["--company-id", "1001", "--user-id", str(GIL)], f"no installation of user {GIL}"),
    ],
)
def test_a_key_is_not_created_without_an_installation_to_bind(app, runner, installer, installed, args, says):
    for user_id in installed:
        installer.install(user_id=user_id)
    result = runner.invoke(args=["keys", "create", *args, "--name", "early"])
    assert result.exit_code == 1
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "pdk_" not in result.stdout
    with app.app_context():
        assert get_session().scalars(select(PartnerKey)).all() == []


def test_a_key_is_not_created_for_an_uninstalled_user(app, client, runner, acme):
    client.delete("/oauth/callback", json=notice(user_id=SAM), headers=basic())
    result = runner.invoke(
        args=["keys", "create", "--company-id", "1001", "--user-id", str(SAM), "--name", "x"]
    )
    assert result.exit_code == 1
    assert f"User {SAM}'s installation of company 1001 is uninstalled" in result.stderr
    # A company-wide key skips it: Ada's it is.
    created = runner.invoke(args=["keys", "create", "--company-id", "1001", "--name", "y"])
    assert created.exit_code == 0 and listed(runner, created.stdout.split()[-1])[3] == str(ADA)


def test_create_key_raises_for_callers_to_handle(app):
    with app.app_context(), pytest.raises(CannotBind, match="Company 1001 has no installation"):
        create_key(get_session(), company_id=1001, name="early")


@pytest.mark.parametrize(
    ("origin", "scope", "expected"),
    [
        (True, None, "read"),  # a browser key is public
        (False, None, "full"),
        (True, "full", "full"),
        (False, "read", "read"),
    ],
)
def test_scope_defaults_to_read_for_browser_keys(runner, installer, origin, scope, expected):
    installer.install(user_id=ADA)
    args = ["keys", "create", "--company-id", "1001", "--name", "k"]
    args += ["--origin", "https://dash.example.com"] if origin else []
    args += ["--scope", scope] if scope else []
    result = runner.invoke(args=args)
    assert result.exit_code == 0 and f"scope {expected}," in result.stderr
    assert listed(runner, result.stdout.split()[-1])[5] == expected


# -- the bound installation cannot serve: say so, never use another -----------------------------------------
def test_reauth_of_the_admin_never_switches_a_company_key_to_another_users_token(
    app, client, acme, make_key, sandbox
):
    """The issue's scenario: Ada's installation needs reauthorization; Sam's is fine. The company key used to
    answer with Sam's token (and Sam's goals) from then on."""
    key = make_key()
    _needs_reauth(app, client, key, sandbox)
    resp = client.get(FIND, headers={"x-api-token": key})
    assert resp.status_code == 401
    body = resp.get_json()
    assert body["code"] == "reauth_required" and f"user {ADA} of company 1001" in body["error"]
    assert "/oauth/install" in body["error_info"]
    assert finds_sent(sandbox) == [] and sandbox.count("/api/") == 0 and sandbox.count("/oauth/") == 0
    # The installation endpoint still answers, naming the installation and its status.
    info = client.get("/api/v1/app/installation", headers={"x-api-token": key})
    assert info.status_code == 200
    data = info.get_json()["data"]
    assert (data["user_id"], data["status"]) == (ADA, "reauth_required")
    assert data["credential"]["installation_id"] == installation_id(app, ADA)
    # Sam's own key is untouched.
    sam = make_key(user_id=SAM)
    assert client.get(FIND, headers={"x-api-token": sam}).status_code == 200
    assert finds_sent(sandbox) == [token_fingerprints(app)[SAM]]


def test_an_uninstalled_installation_answers_not_installed_until_reinstalled(
    app, client, installer, acme, make_key, sandbox
):
    key = make_key()
    client.delete("/oauth/callback", json=notice(user_id=ADA), headers=basic())
    sandbox.clear_calls()
    for path in (FIND, "/api/v1/app/installation"):
        resp = client.get(path, headers={"x-api-token": key})
        assert resp.status_code == 409
        body = resp.get_json()
        assert body["code"] == "not_installed" and f"user {ADA} of company 1001" in body["error"]
    write = client.post("/api/v1/goals", json=GOAL, headers={"x-api-token": key})
    assert write.status_code == 409 and write.get_json()["code"] == "not_installed"
    assert sandbox.count("/api/") == 0 and sandbox.count("/oauth/") == 0
    # Ada installs again: the same installation, so the key serves again, with her new token.
    installer.install(user_id=ADA)
    sandbox.clear_calls()
    assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
    assert finds_sent(sandbox) == [token_fingerprints(app)[ADA]]


def test_a_key_bound_to_nothing_is_not_installed(app, client, acme, make_key, sandbox):
    """Keys created before binding, of a company that had no installation then (migration 0004 left them
    unbound)."""
    key = make_key()
    with app.app_context():
        session = get_session()
        session.execute(update(PartnerKey).values(installation_id=None))
        session.commit()
    resp = client.get(FIND, headers={"x-api-token": key})
    assert resp.status_code == 409 and resp.get_json()["code"] == "not_installed"
    assert sandbox.count("/api/") == 0


# -- keys rebind --------------------------------------------------------------------------------------------
def test_rebind_moves_a_company_key_to_another_installation(app, client, runner, acme, make_key, sandbox):
    key = make_key()  # Ada's, who is fine: only the operator's rebind moves it
    kid = key_id(runner, key)
    result = runner.invoke(args=["keys", "rebind", kid, "--user-id", str(SAM)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"Key {kid} ({key.partition('.')[0]}) of company 1001 moved from user {ADA}'s installation "
        f"to user {SAM}'s (active)."
    )
    assert listed(runner, key)[3:5] == [str(SAM), "active"]
    resp = client.get(FIND, headers={"x-api-token": key})
    assert resp.status_code == 200
    assert finds_sent(sandbox) == [token_fingerprints(app)[SAM]]
    info = client.get("/api/v1/app/installation", headers={"x-api-token": key}).get_json()["data"]
    assert info["user_id"] == SAM and info["credential"]["installation_id"] == installation_id(app, SAM)
    assert info["credential"]["user_bound"] is False
    # Once is enough: the same again changes nothing.
    again = runner.invoke(args=["keys", "rebind", kid, "--user-id", str(SAM)])
    assert again.exit_code == 0 and "already served by user 2002's installation" in again.output


def test_rebind_of_a_user_key_makes_it_that_users_key(app, client, runner, acme, make_key, sandbox):
    key = make_key(user_id=ADA)
    result = runner.invoke(args=["keys", "rebind", key_id(runner, key), "--user-id", str(SAM)])
    assert result.exit_code == 0 and f"it is now user-bound to user {SAM}." in result.output
    assert listed(runner, key)[3] == f"{SAM}*"
    with app.app_context():
        assert get_session().scalar(select(PartnerKey.user_id)) == SAM
    assert client.get(FIND, headers={"x-api-token": key}).status_code == 200
    assert finds_sent(sandbox) == [token_fingerprints(app)[SAM]]


def test_rebind_binds_a_key_that_was_bound_to_nothing(app, client, runner, acme, make_key):
    key = make_key()
    with app.app_context():
        session = get_session()
        session.execute(update(PartnerKey).values(installation_id=None))
        session.commit()
    result = runner.invoke(args=["keys", "rebind", key_id(runner, key), "--user-id", str(ADA)])
    assert result.exit_code == 0 and f"moved from no installation to user {ADA}'s" in result.output
    assert client.get(FIND, headers={"x-api-token": key}).status_code == 200


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (RITA, f"Company 1001 has no installation of user {RITA}"),  # never installed
        (GIL, f"Company 1001 has no installation of user {GIL}"),  # another company's user
        (SAM, f"User {SAM}'s installation of company 1001 is uninstalled"),
    ],
)
def test_rebind_refuses_an_installation_that_cannot_take_the_key(
    app, client, runner, installer, acme, make_key, sandbox, target, says
):
    installer.install(user_id=GIL)
    key = make_key()
    client.delete("/oauth/callback", json=notice(user_id=SAM), headers=basic())
    result = runner.invoke(args=["keys", "rebind", key_id(runner, key), "--user-id", str(target)])
    assert result.exit_code == 1 and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert listed(runner, key)[3] == str(ADA)


def test_rebind_refuses_unknown_and_revoked_keys(runner, acme, make_key):
    missing = runner.invoke(args=["keys", "rebind", "999", "--user-id", str(SAM)])
    assert missing.exit_code == 1 and "No key with id 999." in missing.output
    key = make_key()
    kid = key_id(runner, key)
    runner.invoke(args=["keys", "revoke", kid])
    revoked = runner.invoke(args=["keys", "rebind", kid, "--user-id", str(SAM)])
    assert revoked.exit_code == 1 and "is revoked" in revoked.output


def test_key_changes_are_audited(runner, acme, make_key, caplog):
    caplog.set_level(logging.INFO, logger="pd_app.audit")
    key = make_key()
    runner.invoke(args=["keys", "rebind", key_id(runner, key), "--user-id", str(SAM)])
    events = {r.fields["event"]: r.fields for r in caplog.records if hasattr(r, "fields")}
    assert events["key_created"]["bound_user_id"] == ADA
    assert (events["key_rebound"]["from_user_id"], events["key_rebound"]["to_user_id"]) == (ADA, SAM)


# -- what a refused credential is told ----------------------------------------------------------------------
@pytest.mark.parametrize("also", ["none", "header", "bearer"])
def test_a_key_in_the_query_string_is_refused_with_where_to_send_it(
    client, acme, make_key, sandbox, caplog, also
):
    caplog.set_level(logging.DEBUG)
    key = make_key()
    headers = {"header": {"x-api-token": key}, "bearer": {"Authorization": f"Bearer {key}"}}.get(also, {})
    for path in (FIND, "/api/v1/app/installation"):
        resp = client.get(path, query_string={"api_token": key}, headers=headers)
        assert resp.status_code == 401
        body = resp.get_json()
        assert body["code"] == "unauthorized"
        assert "`api_token`" in body["error"] and "`x-api-token` header" in body["error"]
        assert key not in resp.get_data(as_text=True)
        assert key.partition(".")[2] not in str(dict(resp.headers))
    assert sandbox.count("/api/") == 0
    assert key.partition(".")[2] not in caplog.text


def test_api_token_elsewhere_in_the_query_is_no_credential(client, acme, make_key):
    """Only the parameter's name counts: a title that mentions it is just a title."""
    key = make_key()
    resp = client.get(FIND, query_string={"title": "api_token"}, headers={"x-api-token": key})
    assert resp.status_code == 200


def test_no_credential_says_so(client):
    resp = client.get(FIND)
    assert resp.status_code == 401 and resp.get_json()["error"] == "No credential was sent."


def test_keys_are_made_revoked_and_rebound_after_another_process_wrote_since_the_request_read(
    app, installer, clean_db
):
    """A request reads first (the caller's credential, the admin check) and writes later, while other
    processes commit (a usage flush, a budget settle). On SQLite a transaction that read before such a commit
    could never write: it was refused at once with "database is locked" (seen as a 503 on
    POST /api/v1/app/keys under the fuzz run). Each write now begins as a writer and waits its turn."""
    from sqlalchemy import create_engine, text

    from pd_app import keys
    from pd_app.auth import rebind_key

    installer.install(user_id=2001)
    installer.install(user_id=2002)
    elsewhere = create_engine(clean_db)

    def another_process_commits(n: int) -> None:
        with elsewhere.begin() as conn:
            conn.execute(text("DELETE FROM cache_generations WHERE company_id = 1001"))
            conn.execute(text(f"INSERT INTO cache_generations (company_id, generation) VALUES (1001, {n})"))

    try:
        with app.app_context():
            session = get_session()
            session.execute(select(Installation.id)).all()  # the request has read: its snapshot is open
            another_process_commits(1)
            row, _key = create_key(session, company_id=1001, name="after a commit")
            session.execute(select(PartnerKey.id)).all()
            another_process_commits(2)
            assert rebind_key(session, row.id, 2002).after.user_id == 2002
            session.execute(select(PartnerKey.id)).all()
            another_process_commits(3)
            assert keys.revoke(session, row.id, by="test").revoked_at is not None
    finally:
        elsewhere.dispose()
