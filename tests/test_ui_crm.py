"""The sandbox's CRM deal page, which plays Pipedrive's part for the panel (server side; the SDK protocol is
exercised in a real browser in tests/browser/)."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from pd_app import create_app
from pd_app.config import SANDBOX_CLIENT_ID, sandbox_client_secret

from .conftest import ENCRYPTION_KEY, close_app

SECRET_KEY = "crm-page-secret-key-0123456789"


@pytest.fixture
def demo(clean_db):
    """The app as `make run` starts it: PD_SANDBOX=1, the sandbox mounted at /sandbox."""
    app = create_app(
        environ={
            "PD_APP_ENV": "development",
            "PD_SANDBOX": "1",
            "PUBLIC_URL": "http://localhost:5000",
            "SECRET_KEY": SECRET_KEY,
            "TOKEN_ENCRYPTION_KEYS": ENCRYPTION_KEY,
            "DATABASE_URL": clean_db,
        }
    )
    yield app
    close_app(app)


def _frame_src(html: str, frame: str = "panel-frame") -> str:
    match = re.search(rf'<iframe id="{frame}"[^>]* src="([^"]+)"', html)
    assert match, html
    return unescape(match.group(1))


def test_deal_page_frames_the_panel_with_pipedrives_query_and_a_fresh_token(demo):
    client = demo.test_client()
    resp = client.get("/sandbox/crm/deal/2?user=2002&theme=dark")
    assert resp.status_code == 200
    src = _frame_src(resp.get_data(as_text=True))
    parts = urlsplit(src)
    # Mounted: the panel is on the page's own origin, whatever host name the browser used.
    assert parts.scheme == "" and parts.path == "/ui/panel"
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert set(query) == {"id", "userId", "companyId", "token", "resource", "view", "selectedIds", "theme"}
    assert (query["userId"], query["companyId"], query["selectedIds"]) == ("2002", "1001", "2")
    assert (query["resource"], query["view"], query["theme"]) == ("deal", "details", "dark")
    claims = jwt.decode(query["token"], sandbox_client_secret(SECRET_KEY), algorithms=["HS256"])
    assert (claims["userId"], claims["companyId"]) == (2002, 1001)
    assert claims["exp"] - claims["iat"] == 300
    # The app accepts what the sandbox signed: Sam is not installed, so the panel offers the install.
    panel = client.get(src)
    assert panel.status_code == 200 and 'data-screen="install"' in panel.get_data(as_text=True)


SETTINGS_PAGE = f"/sandbox/crm/settings/marketplace/app/{SANDBOX_CLIENT_ID}/app-settings"


def test_the_apps_settings_page_frames_the_settings_ui_at_pipedrives_deep_link(demo):
    client = demo.test_client()
    resp = client.get(SETTINGS_PAGE + "?user=2002&theme=dark")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    src = _frame_src(html, "settings-frame")
    parts = urlsplit(src)
    assert parts.scheme == "" and parts.path == "/ui/settings"
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    # A panel's query without its record (resource, view, selectedIds): a settings page shows none.
    assert set(query) == {"id", "userId", "companyId", "token", "theme"}
    assert (query["userId"], query["companyId"], query["theme"]) == ("2002", "1001", "dark")
    claims = jwt.decode(query["token"], sandbox_client_secret(SECRET_KEY), algorithms=["HS256"])
    assert (claims["userId"], claims["companyId"], claims["exp"] - claims["iat"]) == (2002, 1001, 300)
    assert f"https://acme.pipedrive.com/settings/marketplace/app/{SANDBOX_CLIENT_ID}/app-settings" in html
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["Cache-Control"] == "no-store"
    # The user picker stays on this page, and the navigation links both ways.
    assert f'action="{SETTINGS_PAGE}"' in html
    deal = client.get("/sandbox/crm/deal/1?user=2002&theme=dark").get_data(as_text=True)
    assert unescape(f'href="{SETTINGS_PAGE}?user=2002&theme=dark"') in unescape(deal)
    assert 'href="/sandbox/crm/deal/1?user=2002&amp;theme=dark"' in html
    # The app accepts what the sandbox signed: Sam is not installed, so the page offers the install.
    page = client.get(src)
    assert page.status_code == 200 and 'data-screen="install"' in page.get_data(as_text=True)


def test_deal_page_headers(demo):
    resp = demo.test_client().get("/sandbox/crm/deal/1")
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Referrer-Policy"] == "no-referrer"


def test_token_endpoint_signs_for_the_chosen_user(demo):
    resp = demo.test_client().post("/sandbox/crm/token", json={"user_id": 2101})
    assert resp.status_code == 200
    claims = jwt.decode(resp.get_json()["token"], sandbox_client_secret(SECRET_KEY), algorithms=["HS256"])
    assert (claims["userId"], claims["companyId"]) == (2101, 1002)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/sandbox/crm/deal/1?user=999", {}, 400),
        ("get", "/sandbox/crm/deal/1?user=abc", {}, 400),
        ("get", "/sandbox/crm/deal/99", {}, 404),
        ("get", "/sandbox/crm/settings/marketplace/app/another-app/app-settings", {}, 404),
        ("get", f"/sandbox/crm/settings/marketplace/app/{SANDBOX_CLIENT_ID}/app-settings?user=7", {}, 400),
        ("post", "/sandbox/crm/token", {"json": {"user_id": 42}}, 400),
        ("post", "/sandbox/crm/token", {"data": "x"}, 400),
    ],
)
def test_bad_requests_get_readable_answers(demo, method, path, kwargs, status):
    resp = getattr(demo.test_client(), method)(path, **kwargs)
    assert resp.status_code == status


def test_crm_start_redirects_to_a_deal(demo):
    resp = demo.test_client().get("/sandbox/crm")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/sandbox/crm/deal/1")


def test_start_page_links_to_the_crm_only_with_the_sandbox(demo, app):
    assert 'href="/sandbox/crm/deal/1"' in demo.test_client().get("/").get_data(as_text=True)
    assert "/sandbox/crm" not in app.test_client().get("/").get_data(as_text=True)


def test_standalone_sandbox_frames_the_configured_panel_url(sandbox_server, sandbox):
    """Not mounted: the page frames the configured absolute panel URL and allows just that origin."""
    from pd_app.sandbox import SandboxSettings, create_sandbox_app

    app = create_sandbox_app(
        SandboxSettings(
            base_url="http://127.0.0.1:8900",
            client_secret="standalone-secret-0123456789abcdefghijkl",
            panel_url="http://localhost:5000/ui/panel",
        )
    )
    resp = app.test_client().get("/crm/deal/1")
    src = _frame_src(resp.get_data(as_text=True))
    assert src.startswith("http://localhost:5000/ui/panel?")
    assert "frame-src http://localhost:5000;" in resp.headers["Content-Security-Policy"]
    token = parse_qs(urlsplit(src).query)["token"][0]
    # No jwt_secret configured: signed with the client secret, Pipedrive's default.
    assert (
        jwt.decode(token, "standalone-secret-0123456789abcdefghijkl", algorithms=["HS256"])["userId"] == 2001
    )
