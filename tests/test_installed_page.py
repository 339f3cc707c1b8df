"""/installed: only a valid ticket (signed by the OAuth callback, 10 minutes) lets the page say the app is
installed, and then what to do next; a missing, forged or expired ticket, or one whose installation is gone,
gets a neutral page that claims nothing."""

from __future__ import annotations

import re
import time
from html import unescape

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import delete, update

from pd_app import create_app
from pd_app.db import get_session
from pd_app.install.flow import TICKET_MAX_AGE_S, TICKET_SALT
from pd_app.models import Installation

from .conftest import CLIENT_ID, PUBLIC_URL, app_environ, close_app

CLAIMS = ("Goals for Pipedrive is installed", "Installed for", "All set", "What to do next")


def _text(resp) -> str:
    return unescape(re.sub(r"\s+", " ", resp.get_data(as_text=True)))


def _ticket(app, payload: dict, *, at: float | None = None) -> str:
    serializer = URLSafeTimedSerializer(app.config["SETTINGS"].secret_key, salt=TICKET_SALT)
    if at is None:
        return serializer.dumps(payload)
    real_time = time.time
    try:
        time.time = lambda: at  # itsdangerous stamps the ticket with time.time()
        return serializer.dumps(payload)
    finally:
        time.time = real_time


def _installation_id(app, user_id: int) -> int:
    with app.app_context():
        return get_session().query(Installation.id).filter_by(user_id=user_id).scalar()


def _assert_neutral(resp) -> None:
    page = _text(resp)
    assert "Nothing to confirm here" in page
    for claim in CLAIMS:
        assert claim not in page, claim
    assert 'href="/oauth/install"' in page and "Acme" not in page


def test_a_valid_ticket_names_the_installation_and_says_what_to_do_next(client, installer):
    resp = client.get(installer.install(user_id=2002).headers["Location"])
    assert resp.status_code == 200
    page = _text(resp)
    assert "Installed for Acme Sales Ltd as Sam Seller" in page and "What to do next" in page
    # Open Pipedrive (the company's own domain, from /users/me), the app's settings there for partner keys,
    # the CLI for the operator, and the API documentation.
    assert 'href="https://acme.pipedrive.com/"' in page
    assert f'href="https://acme.pipedrive.com/settings/marketplace/app/{CLIENT_ID}/app-settings"' in page
    assert "flask --app app keys create --company-id 1001 --name NAME" in page
    assert 'href="/api/docs"' in page


def test_a_marketplace_install_is_confirmed_without_names(client, installer):
    start = client.get("/oauth/install").headers["Location"]
    stateless = "&".join(p for p in start.split("&") if not p.startswith("state="))
    resp = installer.callback(installer.answer(stateless, user_id=2003))
    page = _text(client.get(resp.headers["Location"]))
    assert "Goals for Pipedrive is installed" in page and "What to do next" in page
    assert "Rita" not in page and "Acme" not in page and "acme.pipedrive.com" not in page
    assert "--company-id <id>" in page


def test_without_a_ticket_nothing_is_claimed(client, installer):
    installer.install(user_id=2001)  # installed, but this request does not prove it
    resp = client.get("/installed")
    assert resp.status_code == 200
    _assert_neutral(resp)
    assert "came without a confirmation" in _text(resp)


@pytest.mark.parametrize(
    "ticket",
    [
        "forged",
        "eyJpIjoxfQ.aw0sUA.84hz_bVUMtB3Sx_eB91NRl4LKGg",  # well formed, another secret's signature
        "",
        "x" * 5000,
    ],
)
def test_a_forged_ticket_gets_the_neutral_page(client, installer, ticket):
    installer.install(user_id=2001)
    resp = client.get("/installed", query_string={"ticket": ticket})
    assert resp.status_code == (400 if ticket else 200)
    _assert_neutral(resp)


def test_a_ticket_signed_for_another_purpose_or_with_odd_content_is_refused(app, client, installer):
    installer.install(user_id=2001)
    inst_id = _installation_id(app, 2001)
    state_signed = URLSafeTimedSerializer(app.config["SETTINGS"].secret_key, salt="pd-app/oauth-state")
    for ticket in (
        state_signed.dumps({"i": inst_id, "named": True}),  # right secret, wrong salt
        _ticket(app, {"named": True}),  # no installation
        _ticket(app, {"i": "one", "named": True}),
        _ticket(app, ["i", inst_id]),
        _ticket(app, {"i": 10**30, "named": True}),
    ):
        resp = client.get("/installed", query_string={"ticket": ticket})
        assert resp.status_code == 400, ticket
        _assert_neutral(resp)


def test_an_expired_ticket_gets_the_neutral_page(app, client, installer):
    installer.install(user_id=2001)
    inst_id = _installation_id(app, 2001)
    fresh = _ticket(app, {"i": inst_id, "named": True}, at=time.time() - TICKET_MAX_AGE_S + 60)
    assert "Installed for Acme Sales Ltd" in _text(client.get("/installed", query_string={"ticket": fresh}))
    stale = _ticket(app, {"i": inst_id, "named": True}, at=time.time() - TICKET_MAX_AGE_S - 5)
    resp = client.get("/installed", query_string={"ticket": stale})
    assert resp.status_code == 400
    _assert_neutral(resp)
    assert "not valid or has expired" in _text(resp)


@pytest.mark.parametrize("gone", ["deleted", "uninstalled"])
def test_a_ticket_for_an_installation_since_removed_claims_nothing(app, client, installer, gone):
    location = installer.install(user_id=2001).headers["Location"]
    with app.app_context():
        session = get_session()
        if gone == "deleted":
            session.execute(delete(Installation).where(Installation.user_id == 2001))
        else:
            session.execute(update(Installation).values(status="uninstalled"))
        session.commit()
    resp = client.get(location)
    assert resp.status_code == 400
    _assert_neutral(resp)


def test_an_odd_company_domain_never_becomes_a_link_host(app, client, installer):
    location = installer.install(user_id=2001).headers["Location"]
    with app.app_context():
        session = get_session()
        session.execute(update(Installation).values(company_domain="evil.example/x#"))
        session.commit()
    page = _text(client.get(location))
    assert "evil.example" not in page
    assert 'href="https://app.pipedrive.com/"' in page


def test_in_the_sandbox_the_next_step_is_its_deal_page(clean_db):
    environ = app_environ(clean_db, PUBLIC_URL + "/sandbox", PD_APP_ENV="development", PD_SANDBOX="1")
    app = create_app(environ=environ)
    try:
        assert app.config["SETTINGS"].sandbox
        with app.app_context():
            session = get_session()
            inst = Installation(company_id=1001, user_id=2002, api_domain=PUBLIC_URL + "/sandbox", version=1)
            session.add(inst)
            session.commit()
            ticket = _ticket(app, {"i": inst.id})
        page = _text(app.test_client().get("/installed", query_string={"ticket": ticket}))
    finally:
        close_app(app)
    assert f'href="{PUBLIC_URL}/sandbox/crm/deal/1?user=2002"' in page
    assert "Open a deal in the sandbox" in page and "pipedrive.com" not in page
