"""The install flow: state handling, Marketplace installs, refusals, and failures that store nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from pd_app.db import get_session
from pd_app.install.flow import STATE_SALT
from pd_app.install.identity import identity_from_users_me
from pd_app.models import Installation, OAuthState, utcnow


def _installations(app) -> list[Installation]:
    with app.app_context():
        return list(get_session().scalars(select(Installation)).all())


def _code_from(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


def test_install_redirects_to_authorize_with_signed_state(client, sandbox_server):
    resp = client.get("/oauth/install")
    assert resp.status_code == 302
    parts = urlsplit(resp.headers["Location"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == sandbox_server.url + "/oauth/authorize"
    query = parse_qs(parts.query)
    assert query["client_id"] == ["test-client-id"]
    assert query["redirect_uri"] == ["http://app.localhost/oauth/callback"]
    assert len(query["state"][0]) > 30
    # Two installs get two different states.
    assert client.get("/oauth/install").headers["Location"] != resp.headers["Location"]


def test_install_stores_the_installation_and_lands_on_a_clean_url(app, client, installer, sandbox):
    location = installer.consent(user_id=2002)
    resp = installer.callback(location)
    assert resp.status_code == 302
    landing = resp.headers["Location"]
    assert landing.startswith("/installed?ticket=")
    assert "code=" not in landing and "state=" not in landing
    page = client.get(landing)
    assert "Installed for Acme Sales Ltd as Sam Seller" in page.get_data(as_text=True)
    [inst] = _installations(app)
    assert (inst.company_id, inst.user_id, inst.status) == (1001, 2002, "active")
    assert inst.company_name == "Acme Sales Ltd" and inst.user_email == "sam@acme.example"
    assert inst.api_domain == installer.sandbox_url
    assert "goals:full" in inst.scope_list
    # The user's settings the panel formats with, from /users/me.
    assert (inst.locale, inst.default_currency, inst.timezone_name) == ("en_GB", "EUR", "Europe/London")
    assert inst.is_admin is False
    # The code was exchanged with Basic client auth, and /users/me was read with the new token.
    assert sandbox.count("/oauth/token", grant_type="authorization_code", status=200) == 1
    assert sandbox.count("/api/v1/users/me", status=200) == 1


def test_user_settings_from_users_me_are_cut_to_fit_or_left_out():
    me = {"id": 7, "company_id": 9, "locale": "x" * 100, "default_currency": 5, "timezone_name": ["UTC"]}
    identity = identity_from_users_me(me)
    assert identity.locale == "x" * 32  # the column's size
    assert identity.default_currency is None and identity.timezone_name is None  # not text: unknown
    assert identity_from_users_me({"id": 7, "company_id": 9}).locale is None


def test_reinstall_updates_the_same_row(app, installer):
    installer.install(user_id=2001)
    installer.install(user_id=2001)
    assert len(_installations(app)) == 1


def test_marketplace_install_without_state_installs_but_reveals_nothing(app, client, installer, sandbox):
    start = client.get("/oauth/install").headers["Location"]
    stateless = start.split("&state=")[0] if "&state=" in start else start
    stateless = "&".join(p for p in stateless.split("&") if not p.startswith("state="))
    location = installer.answer(stateless, user_id=2003)
    assert "state=" not in location
    resp = installer.callback(location)
    assert resp.status_code == 302 and resp.headers["Location"] == "/installed"
    page = client.get("/installed").get_data(as_text=True)
    assert "The app is installed" in page and "Rita" not in page
    [inst] = _installations(app)
    assert inst.user_id == 2003 and inst.company_id == 1001


def _forged_state(secret: str) -> str:
    return URLSafeTimedSerializer(secret, salt=STATE_SALT).dumps({"n": "x" * 32})


@pytest.mark.parametrize("case", ["missing_value", "forged", "garbage", "expired", "empty_nonce"])
def test_bad_state_is_refused_before_any_token_call(app, client, installer, sandbox, case):
    location = installer.consent()
    code = _code_from(location)
    if case == "missing_value":
        state = ""  # `state=` present but empty: not a Marketplace install, a broken one
    elif case == "forged":
        state = _forged_state("not-the-app-secret")
    elif case == "garbage":
        state = "not-a-state"
    elif case == "expired":
        app.config["SETTINGS"] = replace(app.config["SETTINGS"], state_max_age_s=-1)
        state = parse_qs(urlsplit(location).query)["state"][0]
    else:
        state = URLSafeTimedSerializer("test-secret-key-0123456789", salt=STATE_SALT).dumps({"n": ""})
    sandbox.clear_calls()
    resp = client.get(f"/oauth/callback?code={code}&state={state}")
    assert resp.status_code == 400
    page = resp.get_data(as_text=True)
    assert "Start the installation again" in page and 'href="/oauth/install"' in page
    assert sandbox.count("/oauth/token") == 0
    assert _installations(app) == []


def test_replayed_state_is_refused_before_any_token_call(app, client, installer, sandbox):
    location = installer.consent()
    assert installer.callback(location).status_code == 302
    sandbox.clear_calls()
    # Same state again, even with a fresh code: refused, nothing sent to the token endpoint.
    fresh = installer.consent()
    state = parse_qs(urlsplit(location).query)["state"][0]
    resp = client.get(f"/oauth/callback?code={_code_from(fresh)}&state={state}")
    assert resp.status_code == 400 and "already used" in resp.get_data(as_text=True)
    assert sandbox.count("/oauth/token") == 0


def test_spending_a_state_prunes_states_spent_longer_ago_than_a_state_lives(app, installer):
    max_age = app.config["SETTINGS"].state_max_age_s
    with app.app_context():
        session = get_session()
        session.add(OAuthState(nonce="o" * 32, used_at=utcnow() - timedelta(seconds=max_age + 60)))
        session.add(OAuthState(nonce="r" * 32, used_at=utcnow() - timedelta(seconds=max_age - 60)))
        session.commit()
    installer.install()
    with app.app_context():
        nonces = set(get_session().scalars(select(OAuthState.nonce)).all())
    # The old one is gone; the recent one still guards its state; the one just spent was added.
    assert "o" * 32 not in nonces and "r" * 32 in nonces and len(nonces) == 2


def test_missing_code_and_user_denied_are_readable_pages(app, client, installer, sandbox):
    denied = installer.callback(installer.consent(allow=False))
    assert denied.status_code == 400
    assert "Installation cancelled" in denied.get_data(as_text=True)
    missing = client.get("/oauth/callback")
    assert missing.status_code == 400 and "without an authorization code" in missing.get_data(as_text=True)
    assert sandbox.count("/oauth/token") == 0
    assert _installations(app) == []


def test_expired_or_reused_code_gives_a_way_forward(app, client, installer, sandbox):
    location = installer.consent()
    assert installer.callback(location).status_code == 302
    # The code was spent; a stateless retry of the same URL asks the token endpoint and is refused.
    resp = client.get("/oauth/callback?code=" + _code_from(location))
    assert resp.status_code == 400
    assert "Pipedrive did not accept the authorization" in resp.get_data(as_text=True)
    assert len(_installations(app)) == 1


def test_unreachable_pipedrive_stores_nothing(app, client, installer, sandbox, monkeypatch):
    location = installer.consent()
    pd_client = app.extensions["pd_client"]
    monkeypatch.setattr(pd_client, "settings", replace(pd_client.settings, oauth_url="http://127.0.0.1:9"))
    resp = installer.callback(location)
    assert resp.status_code == 503
    assert "not reachable" in resp.get_data(as_text=True)
    assert _installations(app) == []


@pytest.mark.parametrize(
    "evil",
    [
        "https://evil.example",
        "https://x.pipedrive.com.evil.example",
        "http://x.pipedrive.com",
        "https://acme.pipedrive.com@evil.example",
        "https://evil.example/?https://x.pipedrive.com",
    ],
)
def test_api_domain_outside_the_allow_list_is_refused_and_nothing_sent(
    app, installer, sandbox, network_guard, evil
):
    sandbox.set_knobs(api_domain_override=evil)
    resp = installer.callback(installer.consent())
    assert resp.status_code == 400
    assert "Installation refused" in resp.get_data(as_text=True)
    assert sandbox.count("/api/v1/users/me") == 0
    assert network_guard.blocked == []
    assert _installations(app) == []


def test_production_style_allow_list_accepts_pipedrive_subdomains_only():
    from pd_app.pipedrive.allowlist import DomainAllowList

    allow = DomainAllowList(("https://*.pipedrive.com",))
    assert allow.allows("https://acme.pipedrive.com")
    assert allow.allows("https://acme.pipedrive.com/")
    for url in (
        "https://pipedrive.com",
        "https://a.b.pipedrive.com",
        "http://acme.pipedrive.com",
        "https://acme.pipedrive.com:8443",
        "https://acme.pipedrive.com/api",
        "https://acme.pipedrive.co",
        "https://user@acme.pipedrive.com",
        "https://acme.pipedrive.com?x=1",
        "acme.pipedrive.com",
        "",
        "https://acme.pipedrive.com.evil.example",
        "https://[::1]",
    ):
        assert not allow.allows(url), url
