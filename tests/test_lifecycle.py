"""After the install: uninstall and sharing notices, operator revoke, keep-alive and key rotation."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, select, text

from pd_app import create_app
from pd_app.db import get_session
from pd_app.models import Installation, SharingNotice, utcnow
from pd_app.tokens.cipher import TokenDecryptError, cipher

from .conftest import CLIENT_ID, CLIENT_SECRET, ENCRYPTION_KEY, app_environ, close_app


def basic(user: str = CLIENT_ID, password: str = CLIENT_SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def notice(company_id: int = 1001, user_id: int = 2001) -> dict:
    return {"client_id": CLIENT_ID, "company_id": company_id, "user_id": user_id, "timestamp": "1700000000"}


def raw_rows(database_url: str) -> dict[int, dict]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM installations")).mappings().all()
    engine.dispose()
    return {r["user_id"]: dict(r) for r in rows}


@pytest.fixture
def two_users(installer, make_key, sandbox):
    installer.install(user_id=2001)
    installer.install(user_id=2002)
    keys = {2001: make_key(user_id=2001), 2002: make_key(user_id=2002)}
    sandbox.clear_calls()
    return keys


# -- uninstall notice ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(password="wrong"),
        basic(user="someone-else"),
        {"Authorization": "Bearer " + CLIENT_SECRET},
        {"Authorization": "Basic !!!"},
    ],
)
def test_uninstall_with_bad_credentials_is_refused_and_changes_nothing(client, two_users, clean_db, headers):
    before = raw_rows(clean_db)
    resp = client.delete("/oauth/callback", json=notice(), headers=headers)
    assert resp.status_code == 401
    assert raw_rows(clean_db) == before


@pytest.mark.parametrize(
    "body",
    [
        None,
        "text",
        [],
        {},
        {**notice(), "user_id": "abc"},
        {**notice(), "company_id": -1},
        {**notice(), "company_id": True},
        {**notice(), "company_id": 1001.0},
        {**notice(), "user_id": "2001"},
        {k: v for k, v in notice().items() if k != "user_id"},
        {**notice(), "client_id": "another-app"},
    ],
)
def test_malformed_uninstall_gets_4xx_and_changes_nothing(client, two_users, clean_db, body):
    before = raw_rows(clean_db)
    kwargs = {"json": body} if body is not None else {"data": "{", "content_type": "application/json"}
    resp = client.delete("/oauth/callback", headers=basic(), **kwargs)
    assert 400 <= resp.status_code < 500
    assert resp.get_json()["code"] == "validation_failed"
    assert raw_rows(clean_db) == before


def test_uninstall_erases_tokens_and_later_calls_are_not_installed(client, two_users, clean_db, sandbox):
    resp = client.delete("/oauth/callback", json=notice(user_id=2001), headers=basic())
    assert resp.status_code == 200 and resp.get_json() == {"success": True}
    rows = raw_rows(clean_db)
    assert rows[2001]["status"] == "uninstalled"
    assert rows[2001]["access_token_enc"] is None and rows[2001]["refresh_token_enc"] is None
    # The person's name and email go with the tokens; only ids stay.
    assert rows[2001]["user_name"] is None and rows[2001]["user_email"] is None
    assert rows[2001]["locale"] is None and rows[2001]["timezone_name"] is None
    assert rows[2002]["user_name"] == "Sam Seller" and rows[2002]["user_email"] == "sam@acme.example"
    # Repeating it is harmless.
    assert client.delete("/oauth/callback", json=notice(user_id=2001), headers=basic()).status_code == 200
    # Ada's callers: not_installed, and nothing reaches Pipedrive.
    gone = client.get("/api/v1/goals/find", headers={"x-api-token": two_users[2001]})
    assert gone.status_code == 409 and gone.get_json()["code"] == "not_installed"
    assert sandbox.count("/api/") == 0 and sandbox.count("/oauth/") == 0
    # Sam, same company, is untouched.
    assert rows[2002]["status"] == "active" and rows[2002]["refresh_token_enc"]
    assert client.get("/api/v1/goals/find", headers={"x-api-token": two_users[2002]}).status_code == 200


def test_uninstall_of_unknown_installation_answers_200(client, clean_db):
    assert client.delete("/oauth/callback", json=notice(4242, 4343), headers=basic()).status_code == 200


def test_company_key_stays_with_its_installation_after_uninstall(client, two_users, make_key, sandbox):
    """It never moves to the remaining installation by itself (another user's data): `keys rebind` does."""
    company_key = make_key()  # Ada's, the admin's
    client.delete("/oauth/callback", json=notice(user_id=2001), headers=basic())
    info = client.get("/api/v1/app/installation", headers={"x-api-token": company_key})
    assert info.status_code == 409 and "user 2001" in info.get_json()["error"]
    resp = client.get("/api/v1/goals/find", headers={"x-api-token": company_key})
    assert resp.status_code == 409 and resp.get_json()["code"] == "not_installed"
    assert sandbox.count("/api/") == 0


def test_reinstall_after_uninstall_works(client, two_users, installer):
    client.delete("/oauth/callback", json=notice(user_id=2001), headers=basic())
    installer.install(user_id=2001)
    assert client.get("/api/v1/goals/find", headers={"x-api-token": two_users[2001]}).status_code == 200


# -- sharing notice -----------------------------------------------------------------------------------------
def test_sharing_notice_is_recorded_only_when_signed(app, client, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="pd_app.audit")
    body = {"company_id": 1001, "user_id": 2001, "isShared": True}
    assert client.post("/oauth/callback", json=body, headers=basic()).status_code == 200
    # Unsigned: acknowledged and logged, but anyone could send it, so it never reaches the database.
    assert client.post("/oauth/callback", json={**body, "isShared": False}).status_code == 200
    assert client.post("/oauth/callback", json=body, headers=basic(password="x")).status_code == 401
    assert client.post("/oauth/callback", json={**body, "isShared": "yes"}).status_code == 400
    with app.app_context():
        notices = get_session().scalars(select(SharingNotice).order_by(SharingNotice.id)).all()
        assert [(n.company_id, n.user_id, n.is_shared) for n in notices] == [(1001, 2001, True)]
    logged = [r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == "app_sharing"]
    assert [(f["is_shared"], f.get("authenticated", True)) for f in logged] == [(True, True), (False, False)]


# -- operator revoke ----------------------------------------------------------------------------------------
def test_revoke_calls_pipedrive_then_erases(runner, two_users, clean_db, sandbox, client):
    result = runner.invoke(args=["installations", "revoke", "--company-id", "1001", "--user-id", "2002"])
    assert result.exit_code == 0, result.output
    assert "company 1001, user 2002" in result.output
    calls = [c for c in sandbox.calls if c["path"] == "/oauth/revoke"]
    assert len(calls) == 1 and calls[0]["status"] == 200
    rows = raw_rows(clean_db)
    assert rows[2002]["status"] == "uninstalled" and rows[2002]["refresh_token_enc"] is None
    assert rows[2001]["status"] == "active"
    resp = client.get("/api/v1/goals/find", headers={"x-api-token": two_users[2002]})
    assert resp.status_code == 409


def test_failed_revoke_keeps_the_tokens(app, runner, two_users, clean_db, monkeypatch):
    from dataclasses import replace

    pd_client = app.extensions["pd_client"]
    monkeypatch.setattr(pd_client, "settings", replace(pd_client.settings, oauth_url="http://127.0.0.1:9"))
    result = runner.invoke(args=["installations", "revoke", "--company-id", "1001"])
    assert result.exit_code == 1
    assert all(r["refresh_token_enc"] for r in raw_rows(clean_db).values())


# -- keep-alive ---------------------------------------------------------------------------------------------
def _age_refresh_tokens(app, days: int, user_id: int) -> None:
    with app.app_context():
        session = get_session()
        inst = session.scalar(select(Installation).where(Installation.user_id == user_id))
        inst.refresh_token_used_at = utcnow() - timedelta(days=days)
        session.commit()


def test_refresh_due_refreshes_only_idle_installations(app, runner, two_users, sandbox, clean_db):
    _age_refresh_tokens(app, 31, 2001)
    _age_refresh_tokens(app, 5, 2002)
    # Pipedrive's clock moves too: 31 days later Ada's refresh token is still within its 60 days.
    real = sandbox.clock
    sandbox.clock = lambda: real() + 31 * 86400
    try:
        result = runner.invoke(args=["tokens", "refresh-due"])
    finally:
        sandbox.clock = real
    assert result.exit_code == 0, result.output
    assert "Refreshed 1;" in result.output
    assert sandbox.count("/oauth/token", grant_type="refresh_token") == 1
    rows = raw_rows(clean_db)
    assert rows[2001]["last_refreshed_at"] is not None and rows[2002]["last_refreshed_at"] is None
    # Run again (another instance's cron): nothing is due any more.
    assert "Refreshed 0;" in runner.invoke(args=["tokens", "refresh-due"]).output
    assert sandbox.count("/oauth/token", grant_type="refresh_token") == 1


def test_refresh_due_reports_installations_that_need_reinstall(app, runner, two_users, sandbox):
    _age_refresh_tokens(app, 40, 2001)
    sandbox.set_knobs(refresh_error="invalid_grant")
    result = runner.invoke(args=["tokens", "refresh-due", "--days", "30"])
    assert result.exit_code == 0
    assert "need reinstall 1" in result.output


# -- key rotation -------------------------------------------------------------------------------------------
def test_reencrypt_moves_every_token_to_the_new_key(clean_db, sandbox_server, installer, two_users, client):
    new_key = Fernet.generate_key().decode()
    rotated = create_app(
        environ=app_environ(clean_db, sandbox_server.url, TOKEN_ENCRYPTION_KEYS=f"{new_key},{ENCRYPTION_KEY}")
    )
    before = raw_rows(clean_db)
    # Before: readable with old and new configuration alike.
    result = rotated.test_cli_runner().invoke(args=["tokens", "reencrypt"])
    assert result.exit_code == 0 and "Re-encrypted 2" in result.output
    after = raw_rows(clean_db)
    assert after[2001]["refresh_token_enc"] != before[2001]["refresh_token_enc"]
    # After: the retired key can go; every token still decrypts and the proxy still works.
    new_only = create_app(environ=app_environ(clean_db, sandbox_server.url, TOKEN_ENCRYPTION_KEYS=new_key))
    with new_only.app_context():
        for inst in get_session().scalars(select(Installation)).all():
            assert cipher().decrypt(inst, "refresh_token", inst.refresh_token_enc)
            assert cipher().decrypt(inst, "access_token", inst.access_token_enc)
    resp = new_only.test_client().get("/api/v1/goals/find", headers={"x-api-token": two_users[2001]})
    assert resp.status_code == 200
    # The old key alone can no longer read them: the rotation really happened.
    old_only = create_app(environ=app_environ(clean_db, sandbox_server.url))
    with old_only.app_context():
        inst = get_session().scalars(select(Installation)).first()
        with pytest.raises(TokenDecryptError):
            cipher().decrypt(inst, "refresh_token", inst.refresh_token_enc)
    for a in (rotated, new_only, old_only):
        close_app(a)


# -- audit trail --------------------------------------------------------------------------------------------
def test_audit_trail_names_events_and_ids_but_never_a_secret(
    app, client, installer, make_key, sandbox, caplog
):
    import logging

    from pd_app.logs import JsonFormatter

    caplog.set_level(logging.INFO, logger="pd_app")
    location = installer.consent(user_id=2001)
    code = location.split("code=")[1].split("&")[0]
    installer.callback(location)
    key = make_key(user_id=2001)
    sandbox.set_knobs(force_api_status={"status": 401, "count": 1})
    assert client.get("/api/v1/goals/find", headers={"x-api-token": key}).status_code == 200
    with app.app_context():
        inst = get_session().scalar(select(Installation).where(Installation.user_id == 2001))
        secrets = [
            cipher().decrypt(inst, "access_token", inst.access_token_enc),
            cipher().decrypt(inst, "refresh_token", inst.refresh_token_enc),
            code,
            key,
            CLIENT_SECRET,
        ]
    client.delete("/oauth/callback", json=notice(user_id=2001), headers=basic())
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name.startswith("pd_app")]
    events = [r.fields["event"] for r in caplog.records if r.name == "pd_app.audit"]
    assert {"installed", "key_created", "token_refreshed", "uninstalled"} <= set(events)
    installed = next(r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == "installed")
    assert installed["company_id"] == 1001 and installed["user_id"] == 2001
    blob = "\n".join(lines)
    for secret in secrets:
        assert secret not in blob
