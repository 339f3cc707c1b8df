"""Configuration: defaults, development secrets, and the production refusals (docs/interface.md §2)."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from pd_app.config import (
    SANDBOX_CLIENT_ID,
    ConfigError,
    load_settings,
    normalize_database_url,
    production_warnings,
    sandbox_client_secret,
)

KEY = Fernet.generate_key().decode()
DEV = {"PD_APP_ENV": "development"}
PRODUCTION = {
    "PD_APP_ENV": "production",
    "SECRET_KEY": "s" * 40,
    "TOKEN_ENCRYPTION_KEYS": KEY,
    "PIPEDRIVE_CLIENT_ID": "id",
    "PIPEDRIVE_CLIENT_SECRET": "secret",
    "PUBLIC_URL": "https://goals.example.com",
    "METRICS_TOKEN": "m" * 40,
}


def test_unset_environment_means_production_and_its_refusals(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY is required when PD_APP_ENV=production"):
        load_settings({}, tmp_path)
    assert not (tmp_path / "dev-secrets.json").exists()  # no development secret was generated
    assert load_settings({k: v for k, v in PRODUCTION.items() if k != "PD_APP_ENV"}, tmp_path).production


def test_development_defaults_generate_secrets_once(tmp_path):
    first = load_settings({"PD_APP_ENV": "development"}, tmp_path)
    second = load_settings({"PD_APP_ENV": "development"}, tmp_path)
    assert first.env == "development"
    assert first.public_url == "http://localhost:5000"
    assert first.redirect_uri == "http://localhost:5000/oauth/callback"
    assert first.oauth_url == "https://oauth.pipedrive.com"
    assert first.api_domains == ("https://*.pipedrive.com",)
    assert first.database_url == f"sqlite:///{tmp_path / 'pd_app.sqlite3'}"
    assert first.goals_cache_ttl == 30
    assert first.secret_key and first.secret_key == second.secret_key
    assert first.token_encryption_keys == second.token_encryption_keys
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o777 == 0o600


def test_sandbox_points_oauth_and_api_at_the_mounted_sandbox(tmp_path):
    settings = load_settings(
        {"PD_APP_ENV": "development", "PD_SANDBOX": "1", "PUBLIC_URL": "http://localhost:5000/"}, tmp_path
    )
    assert settings.sandbox
    assert settings.oauth_url == "http://localhost:5000/sandbox"
    assert "http://localhost:5000/sandbox" in settings.api_domains
    assert settings.client_id and settings.client_secret
    assert settings.jwt_secret == settings.client_secret


def test_sandbox_never_holds_the_real_apps_secrets(tmp_path):
    # The sandbox's CRM page signs panel JWTs for whoever asks: with a real secret, anyone could mint them.
    real = {
        "PIPEDRIVE_CLIENT_ID": "real-id",
        "PIPEDRIVE_CLIENT_SECRET": "real-secret",
        "PIPEDRIVE_JWT_SECRET": "j",
    }
    settings = load_settings({"PD_APP_ENV": "development", "PD_SANDBOX": "1", **real}, tmp_path)
    derived = sandbox_client_secret(settings.secret_key)
    assert settings.client_id == SANDBOX_CLIENT_ID
    assert settings.client_secret == derived and settings.jwt_secret == derived


def test_jwt_secret_defaults_to_client_secret_and_can_be_set(tmp_path):
    assert load_settings({**DEV, "PIPEDRIVE_CLIENT_SECRET": "cs"}, tmp_path).jwt_secret == "cs"
    assert (
        load_settings(
            {**DEV, "PIPEDRIVE_CLIENT_SECRET": "cs", "PIPEDRIVE_JWT_SECRET": "j"}, tmp_path
        ).jwt_secret
        == "j"
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls(given, expected):
    assert normalize_database_url(given) == expected


def test_production_with_everything_set_starts(tmp_path):
    settings = load_settings(PRODUCTION, tmp_path)
    assert settings.production
    assert not (tmp_path / "dev-secrets.json").exists()


@pytest.mark.parametrize(
    "missing", ["SECRET_KEY", "TOKEN_ENCRYPTION_KEYS", "PIPEDRIVE_CLIENT_ID", "PIPEDRIVE_CLIENT_SECRET"]
)
def test_production_refuses_a_missing_secret(tmp_path, missing):
    environ = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(ConfigError, match=f"{missing} is required"):
        load_settings(environ, tmp_path)
    assert not (tmp_path / "dev-secrets.json").exists()


def test_production_refuses_the_sandbox(tmp_path):
    with pytest.raises(ConfigError, match="PD_SANDBOX=1 is refused in production"):
        load_settings({**PRODUCTION, "PD_SANDBOX": "1"}, tmp_path)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("http://*.pipedrive.com", "must use https"),
        ("https://localhost", "loopback or private"),
        ("https://127.0.0.1:8443", "loopback or private"),
        ("https://[::1]", "loopback or private"),
        ("https://10.1.2.3", "loopback or private"),
        ("https://192.168.0.10", "loopback or private"),
    ],
)
def test_production_refuses_unsafe_api_domains(tmp_path, pattern, reason):
    with pytest.raises(ConfigError, match=reason):
        load_settings({**PRODUCTION, "PIPEDRIVE_API_DOMAINS": f"https://*.pipedrive.com,{pattern}"}, tmp_path)


@pytest.mark.parametrize("pattern", ["https://*.com", "https://*", "https://acme.*.com"])
def test_production_refuses_a_wildcard_that_matches_too_much(tmp_path, pattern):
    with pytest.raises(ConfigError, match="wildcard that matches too much"):
        load_settings({**PRODUCTION, "PIPEDRIVE_API_DOMAINS": pattern}, tmp_path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"PIPEDRIVE_OAUTH_URL": "https://127.0.0.1:8900"}, "PIPEDRIVE_OAUTH_URL .* loopback or private"),
        ({"PIPEDRIVE_OAUTH_URL": "https://10.0.0.5"}, "PIPEDRIVE_OAUTH_URL .* loopback or private"),
        ({"PUBLIC_URL": "http://goals.example.com"}, "PUBLIC_URL .* should use https"),
        ({"METRICS_TOKEN": ""}, "METRICS_TOKEN is unset: /metrics answers 401"),
    ],
)
def test_production_warns_about_plain_http_and_private_oauth(tmp_path, changes, message):
    # Not refusals: a private OAuth host may be a deliberate egress gateway, so it is a warning at start.
    settings = load_settings({**PRODUCTION, **changes}, tmp_path)
    warnings = production_warnings(settings)
    assert len(warnings) == 1 and re.search(message, warnings[0])
    assert production_warnings(load_settings(PRODUCTION, tmp_path)) == []


def test_production_lists_every_problem_at_once(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings({"PD_APP_ENV": "production", "PD_SANDBOX": "1"}, tmp_path)
    message = str(info.value)
    for name in (
        "SECRET_KEY",
        "TOKEN_ENCRYPTION_KEYS",
        "PIPEDRIVE_CLIENT_ID",
        "PIPEDRIVE_CLIENT_SECRET",
        "PD_SANDBOX",
    ):
        assert name in message


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PD_APP_ENV": "staging"}, "PD_APP_ENV must be one of"),
        ({"TOKEN_ENCRYPTION_KEYS": "not-a-key"}, "not a Fernet key"),
        ({"TOKEN_ENCRYPTION_KEYS": base64.urlsafe_b64encode(b"k" * 31).decode()}, "not a Fernet key"),
        ({"TOKEN_ENCRYPTION_KEYS": f"{KEY},{KEY[:-2]}!!"}, "not a Fernet key"),
        ({"GOALS_CACHE_TTL": "soon"}, "GOALS_CACHE_TTL must be a whole number"),
        ({"GOALS_CACHE_TTL": "-1"}, "must not be negative"),
        ({"PIPEDRIVE_API_DOMAINS": "https://x.example:port"}, "its port is not a number"),
        ({"PIPEDRIVE_API_DOMAINS": "https://*.pipedrive.com,ftp://x"}, "must start with https://"),
        ({"PIPEDRIVE_API_DOMAINS": "https://"}, "names no host"),
        ({"PIPEDRIVE_API_DOMAINS": "https://a b.example"}, "its host may hold only"),
        ({"PIPEDRIVE_API_DOMAINS": "https://u:p@x.example"}, "may hold only a scheme"),
        ({"KEY_RATE_LIMIT": "lots"}, "KEY_RATE_LIMIT must be limits like"),
    ],
)
def test_bad_values_are_refused_with_one_clear_message(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({"PD_APP_ENV": "development", **environ}, tmp_path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"SECRET_KEY": "s" * 31}, "SECRET_KEY is too weak: at least 32 bytes"),
        ({"PIPEDRIVE_OAUTH_URL": "http://oauth.example.com"}, "PIPEDRIVE_OAUTH_URL .* must use https://"),
    ],
)
def test_production_refuses_a_weak_secret_and_a_plain_http_oauth_server(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({**PRODUCTION, **changes}, tmp_path)
    assert load_settings({**PRODUCTION, "SECRET_KEY": "s" * 32}, tmp_path).production


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "SECRET_KEY is required"),  # PD_APP_ENV unset: production's refusals
        ({**DEV, "PIPEDRIVE_API_DOMAINS": "https://x:port"}, "its port is not a number"),
        ({**DEV, "KEY_RATE_LIMIT": "many"}, "KEY_RATE_LIMIT must be"),
        ({**DEV, "SNAPSHOT_EVERY": "daily"}, "SNAPSHOT_EVERY must be a whole number"),
    ],
)
def test_app_py_exits_with_one_readable_line(tmp_path, environ, message):
    result = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **environ},
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_gunicorn_stops_instead_of_rebooting_workers_on_a_bad_value(tmp_path):
    # The master reads the settings in its on_starting hook and stops before forking any worker: otherwise
    # each worker would fail to load the app, and gunicorn's handling of that is a traceback when the
    # failure arrives during the master's own start-up, or a new worker forked for ever without exit code 4.
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "app:app", "-c", "gunicorn.conf.py", "--no-control-socket"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "PD_APP_ENV": "development",
            "PIPEDRIVE_API_DOMAINS": "https://*.pipedrive.com,https://x:port",
            "GUNICORN_BIND": "127.0.0.1:0",
            "WEB_CONCURRENCY": "2",
        },
    )
    assert result.returncode == 4
    assert "PIPEDRIVE_API_DOMAINS entry 'https://x:port' is not a pattern" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Booting worker" not in result.stderr


def test_a_key_the_config_accepts_is_one_fernet_accepts(tmp_path):
    # The settings check keys without importing cryptography (gunicorn's master reads them): same verdict.
    settings = load_settings({**DEV, "TOKEN_ENCRYPTION_KEYS": KEY}, tmp_path)
    assert Fernet(settings.token_encryption_keys[0]).decrypt(Fernet(KEY).encrypt(b"x")) == b"x"
