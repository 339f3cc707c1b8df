"""The custom UI panel's entry: JWT verification, the screen per installation, headers, the vendored SDK.

The browser-level behaviour (SDK protocol, goals, forms, themes) is in tests/browser/.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import runpy
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import update

from pd_app import create_app
from pd_app.config import Settings
from pd_app.db import get_session
from pd_app.models import Installation
from pd_app.ui import frame_ancestors

from .conftest import PUBLIC_URL, app_environ, close_app

ROOT = Path(__file__).resolve().parent.parent
# Pipedrive's client secrets are 40 characters; a short one would also trip PyJWT's key-length warning.
JWT_SECRET = "panel-jwt-secret-0123456789abcdefghijklmnop"


@pytest.fixture
def app(clean_db, sandbox_server, sandbox):
    """conftest's app, with a custom UI JWT secret of a realistic length."""
    app = create_app(environ=app_environ(clean_db, sandbox_server.url, PIPEDRIVE_JWT_SECRET=JWT_SECRET))
    yield app
    close_app(app)


# -- JWTs built by hand, so every malformed variant is possible ----------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: dict) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def sign(
    claims: dict | None = None,
    *,
    alg: str = "HS256",
    secret: str = JWT_SECRET,
    digest=hashlib.sha256,
    without: tuple[str, ...] = (),
) -> str:
    now = int(time.time())
    body = {"userId": 2001, "companyId": 1001, "iat": now, "exp": now + 300}
    body.update(claims or {})
    for claim in without:
        del body[claim]
    head = f"{_segment({'alg': alg, 'typ': 'JWT'})}.{_segment(body)}"
    if alg == "none":
        return head + "."
    signature = hmac.new(secret.encode(), head.encode(), digest).digest()
    return f"{head}.{_b64(signature)}"


def _edited_company() -> str:
    head, _payload, signature = sign().split(".")
    now = int(time.time())
    forged = _segment({"userId": 2001, "companyId": 1002, "iat": now, "exp": now + 300})
    return f"{head}.{forged}.{signature}"


BAD_TOKENS = {
    "alg none": lambda: sign(alg="none"),
    "HS512": lambda: sign(alg="HS512", digest=hashlib.sha512),
    "RS256 header (HMAC-signed with the secret)": lambda: sign(alg="RS256"),
    "wrong secret": lambda: sign(secret="another-secret-0123456789abcdefghijklmnop"),
    "expired": lambda: sign({"iat": int(time.time()) - 900, "exp": int(time.time()) - 120}),
    "companyId edited after signing": _edited_company,
    "no exp": lambda: sign(without=("exp",)),
    "no companyId": lambda: sign({"companyId": None}),
    "not a JWT": lambda: "not.a.jwt",
    "empty": lambda: "",
}


def panel(client, token: str, **query: object):
    params = {
        "id": "ext-1",
        "resource": "deal",
        "view": "details",
        "selectedIds": "7",
        **query,
        "token": token,
    }
    return client.get("/ui/panel", query_string=params)


def screen_of(resp) -> str:
    match = re.search(r'data-screen="([a-z_]+)"', resp.get_data(as_text=True))
    assert match, resp.get_data(as_text=True)[:500]
    return match.group(1)


def set_status(app, user_id: int, status: str) -> None:
    with app.app_context():
        session = get_session()
        session.execute(update(Installation).where(Installation.user_id == user_id).values(status=status))
        session.commit()


# -- who the panel is for ------------------------------------------------------------------------------------
def test_installed_user_gets_the_panel_for_the_ids_of_the_token(client, installer):
    installer.install(user_id=2001)
    resp = panel(client, sign(), userId=2001, companyId=1001, theme="dark")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert screen_of(resp) == "ready"
    assert 'data-user-id="2001"' in html and 'data-company-id="1001"' in html
    assert 'class="theme-dark"' in html
    # The token stays in the address bar only until panel.js removes it; the page itself never repeats it.
    assert sign().split(".")[0] not in html.replace("data-", "")


def test_the_query_ids_are_optional_but_must_match(client, installer):
    installer.install(user_id=2001)
    assert screen_of(panel(client, sign())) == "ready"
    for query in (
        {"companyId": 1002},
        {"userId": 2002},
        {"companyId": 1002, "userId": 2101},
        {"userId": "x"},
    ):
        resp = panel(client, sign(), **query)
        assert resp.status_code == 401, query
        assert screen_of(resp) == "denied"


def test_unknown_user_gets_the_install_screen_never_another_installation(client, installer):
    installer.install(user_id=2001)  # a colleague's installation exists
    resp = panel(client, sign({"userId": 2002}), userId=2002, companyId=1001)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert screen_of(resp) == "install"
    assert 'data-user-id="2002"' in html and "2001" not in html
    assert f'href="{PUBLIC_URL}/oauth/install" target="_blank" rel="noopener"' in html
    # Another company altogether.
    assert screen_of(panel(client, sign({"userId": 2101, "companyId": 1002}))) == "install"


def test_uninstalled_and_reauth_required_have_their_screens(app, client, installer):
    installer.install(user_id=2001)
    set_status(app, 2001, "reauth_required")
    resp = panel(client, sign())
    assert resp.status_code == 200 and screen_of(resp) == "reauth"
    set_status(app, 2001, "uninstalled")
    assert screen_of(panel(client, sign())) == "install"


@pytest.mark.parametrize("name", BAD_TOKENS)
def test_bad_tokens_are_refused_by_the_page_and_the_api(client, installer, name):
    installer.install(user_id=2001)
    token = BAD_TOKENS[name]()
    page = panel(client, token)
    assert page.status_code == 401
    assert screen_of(page) == "denied"
    assert "could not confirm who you are" in page.get_data(as_text=True)
    assert "Traceback" not in page.get_data(as_text=True)
    api = client.get("/api/v1/goals/find", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 401, api.get_json()
    assert api.get_json()["code"] == "unauthorized"


def test_a_valid_token_is_a_credential_for_the_proxy(client, installer, sandbox):
    installer.install(user_id=2001)
    resp = client.get("/api/v1/goals/find", headers={"Authorization": f"Bearer {sign()}"})
    assert resp.status_code == 200
    titles = {goal["title"] for goal in resp.get_json()["data"]["goals"]}
    assert "Calls and meetings" in titles  # Ada's own goal, found without assignee.id
    assert "Set-Cookie" not in resp.headers


def test_the_token_decides_the_user_not_a_parameter(client, installer):
    installer.install(user_id=2001)
    installer.install(user_id=2002)
    resp = client.get("/api/v1/goals/find", headers={"Authorization": f"Bearer {sign({'userId': 2002})}"})
    titles = {goal["title"] for goal in resp.get_json()["data"]["goals"]}
    assert titles == {"Won revenue per month"}  # Sam's goal, not Ada's


# -- headers -------------------------------------------------------------------------------------------------
def test_panel_headers_allow_pipedrive_and_the_local_sandbox_only(client, sandbox_server):
    resp = panel(client, sign())
    csp = resp.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["frame-ancestors"] == f"https://*.pipedrive.com {sandbox_server.url}"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'" and directives["default-src"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    assert "X-Frame-Options" not in resp.headers
    assert "Set-Cookie" not in resp.headers


@pytest.mark.parametrize("path", ["/", "/api/openapi.json", "/api/docs", "/healthz", "/oauth/install"])
def test_everything_else_refuses_to_be_framed(client, path):
    resp = client.get(path)
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"], path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"env": "production", "sandbox": False}, "https://*.pipedrive.com"),
        # Production never trusts a loopback OAuth URL, nor 'self'.
        ({"env": "production", "oauth_url": "http://127.0.0.1:8900"}, "https://*.pipedrive.com"),
        (
            {"env": "development", "sandbox": True, "oauth_url": "http://localhost:5000/sandbox"},
            "https://*.pipedrive.com 'self' http://localhost:5000",
        ),
        (
            {"env": "test", "oauth_url": "http://127.0.0.1:8900"},
            "https://*.pipedrive.com http://127.0.0.1:8900",
        ),
        ({"env": "test", "oauth_url": "https://oauth.pipedrive.com"}, "https://*.pipedrive.com"),
        ({"env": "test", "oauth_url": "http://example.com"}, "https://*.pipedrive.com"),
    ],
)
def test_frame_ancestors_per_configuration(changes, expected):
    assert frame_ancestors(Settings(**changes)) == expected


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "style" or "style" in named:
            self.inline.append(f"style in <{tag}>")
        if any(name.startswith("on") for name in named):
            self.inline.append(f"event handler in <{tag}>")
        if tag == "script":
            if not named.get("src"):
                self.inline.append("inline <script>")
            else:
                self.scripts.append(named["src"] or "")


@pytest.mark.parametrize("screen_user", [2001, 2002])
def test_no_inline_script_or_style_and_scripts_from_our_origin(client, installer, screen_user):
    installer.install(user_id=2001)
    markup = _Markup()
    markup.feed(panel(client, sign({"userId": screen_user})).get_data(as_text=True))
    assert markup.inline == []
    assert markup.scripts == ["/ui/vendor/app-extensions-sdk/index.umd.js", "/static/panel.js"]


# -- the SDK, served by the app itself -----------------------------------------------------------------------
def test_the_sdk_is_pinned_and_served_from_the_apps_origin(client):
    package = json.loads((ROOT / "package.json").read_text())
    version = package["dependencies"]["@pipedrive/app-extensions-sdk"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "pin an exact version"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@pipedrive/app-extensions-sdk"]["version"] == version
    resp = client.get("/ui/vendor/app-extensions-sdk/index.umd.js")
    assert resp.status_code == 200, "run `npm ci` (make deps)"
    assert resp.mimetype == "text/javascript"
    assert b"AppExtensionsSDK" in resp.data and b"get_signed_token" in resp.data
    assert client.get("/ui/vendor/app-extensions-sdk/package.json").status_code == 404
    assert client.get("/ui/vendor/app-extensions-sdk/..%2Fpackage.json").status_code == 404
    # Conditional on its ETag, like every vendor file (pd_app/vendor.py).
    again = client.get(
        "/ui/vendor/app-extensions-sdk/index.umd.js", headers={"If-None-Match": resp.headers["ETag"]}
    )
    assert again.status_code == 304


def test_a_missing_vendor_file_is_a_404_that_says_how_to_fix_it(client, monkeypatch, tmp_path, caplog):
    from pd_app import vendor

    monkeypatch.setattr(vendor, "package_dir", lambda app, package: tmp_path / package)
    resp = client.get("/ui/vendor/app-extensions-sdk/index.umd.js")
    assert resp.status_code == 404
    assert "the panel cannot load: @pipedrive/app-extensions-sdk is missing, run `npm ci`" in caplog.text


def test_a_crash_in_the_panel_is_still_a_framable_panel_screen(client, monkeypatch):
    def boom():
        raise RuntimeError("database down")

    monkeypatch.setattr("pd_app.ui.resolve_panel", boom)
    resp = panel(client, sign())
    assert resp.status_code == 500
    assert screen_of(resp) == "error"
    assert "database down" not in resp.get_data(as_text=True)
    assert "frame-ancestors https://*.pipedrive.com" in resp.headers["Content-Security-Policy"]


def test_gunicorn_access_log_never_records_query_strings():
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    fmt = conf["access_log_format"]
    assert "%(U)s" in fmt
    for leaky in ("%(r)s", "%(q)s", "%({raw_uri}e)s", "%(f)s"):
        assert leaky not in fmt
