"""CORS: a partner key's --origin list decides which browser origins may use it."""

from __future__ import annotations

import pytest

DASH = "https://dash.example.com"


@pytest.fixture
def keyed(app, installer, sandbox):
    installer.install(user_id=2001)
    runner = app.test_cli_runner()
    args = ["keys", "create", "--company-id", "1001", "--name", "dash", "--origin", DASH + "/"]
    with_origin = runner.invoke(args=args).stdout.strip().splitlines()[-1]
    plain = runner.invoke(args=["keys", "create", "--company-id", "1001", "--name", "server"])
    return with_origin, plain.stdout.strip().splitlines()[-1]


def test_preflight_is_answered_for_a_listed_origin_only(client, keyed):
    ok = client.options(
        "/api/v1/goals/find", headers={"Origin": DASH, "Access-Control-Request-Method": "GET"}
    )
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == DASH
    assert "x-api-token" in ok.headers["Access-Control-Allow-Headers"]
    other = client.options("/api/v1/goals/find", headers={"Origin": "https://evil.example"})
    assert other.status_code == 204 and "Access-Control-Allow-Origin" not in other.headers


def test_real_request_gets_the_header_only_with_its_own_key(client, keyed):
    with_origin, plain = keyed
    allowed = client.get("/api/v1/goals/find", headers={"Origin": DASH, "x-api-token": with_origin})
    assert allowed.status_code == 200 and allowed.headers["Access-Control-Allow-Origin"] == DASH
    # The server-side key lists no origin: a browser page may not use it, even from the dashboard's origin.
    refused = client.get("/api/v1/goals/find", headers={"Origin": DASH, "x-api-token": plain})
    assert "Access-Control-Allow-Origin" not in refused.headers
    elsewhere = client.get(
        "/api/v1/goals/find", headers={"Origin": "https://evil.example", "x-api-token": with_origin}
    )
    assert "Access-Control-Allow-Origin" not in elsewhere.headers


@pytest.mark.parametrize(
    "origin",
    [
        "dash.example.com",
        "https://dash.example.com/path",
        "ftp://x.example",
        "https://user:pw@dash.example.com",
    ],
)
def test_keys_create_refuses_what_is_not_an_origin(runner, origin):
    result = runner.invoke(args=["keys", "create", "--company-id", "1001", "--name", "x", "--origin", origin])
    assert result.exit_code == 2 and "origin" in result.output.lower()


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://Dash.Example.com", "https://dash.example.com"),
        ("https://dash.example.com:443", "https://dash.example.com"),
        ("http://localhost:80/", "http://localhost"),
        ("http://localhost:5173", "http://localhost:5173"),
        ("https://dash.example.com:80", "https://dash.example.com:80"),
    ],
)
def test_an_origin_is_stored_as_a_browser_sends_it(given, stored):
    """A browser's Origin header names no default port and a lower-case host: stored any other way, the key
    would never match its own page."""
    from pd_app.proxy.cors import normalize_origin

    assert normalize_origin(given) == stored
