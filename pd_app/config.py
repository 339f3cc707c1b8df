"""The one place that reads the environment (the table in ../shared/docs/interface.md §2)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

ENVIRONMENTS = ("development", "test", "production")
SANDBOX_PREFIX = "/sandbox"
SANDBOX_CLIENT_ID = "pd-app-sandbox"
MIN_SECRET_KEY_BYTES = 32


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says which setting and why."""


@dataclass(frozen=True)
class Settings:
    env: str = "production"
    public_url: str = "http://localhost:5000"
    secret_key: str = ""
    database_url: str = ""
    redis_url: str | None = None
    token_encryption_keys: tuple[str, ...] = ()
    client_id: str = ""
    client_secret: str = ""
    redirect_uri: str = ""
    oauth_url: str = "https://oauth.pipedrive.com"
    api_domains: tuple[str, ...] = ("https://*.pipedrive.com",)
    jwt_secret: str = ""
    sandbox: bool = False
    goals_cache_ttl: int = 30
    reference_cache_ttl: int = 600
    key_rate_limit: str = "600/minute"
    company_daily_token_cap: int = 10000
    upstream_retries: int = 2
    snapshot_every: int = 86400
    metrics_token: str = ""
    # Not environment variables: knobs the code and tests set.
    queue_path: str = ""  # the job queue's SQLite file without REDIS_URL (the instance folder's)
    upstream_timeout: float = 10.0
    # A proxied request's time for its upstream attempts: each retry must fit a whole `upstream_timeout`
    # before it, so a request ends well within gunicorn's 60 s timeout.
    upstream_deadline_s: float = 20.0
    upstream_backoff_s: float = 0.2  # a retry's backoff: full jitter up to base x 2^n, capped
    upstream_backoff_max_s: float = 2.0
    breaker_failures: int = 5  # consecutive failures that open a Pipedrive host's breaker
    breaker_cool_off_s: float = 10.0
    token_timeout: float = 10.0
    webhook_timeout_s: float = 5.0  # one webhook delivery's POST, connect to last byte
    refresh_margin_s: int = 300
    state_max_age_s: int = 600

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def sandbox_url(self) -> str:
        return self.public_url.rstrip("/") + SANDBOX_PREFIX


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _int(name: str, value: str | None, default: int) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}.") from None
    if number < 0:
        raise ConfigError(f"{name} must not be negative, got {number}.")
    return number


def _rate_limit(value: str | None) -> str:
    """KEY_RATE_LIMIT in Flask-Limiter's notation (`10/second;600/minute`), checked here so that a typo is one
    readable line at start, not an error on the first request."""
    value = (value or "").strip()
    if not value:
        return "600/minute"
    from limits import parse_many  # here: only a value someone set needs the parser

    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(
            f"KEY_RATE_LIMIT must be limits like `600/minute` or `10/second;600/minute`, got {value!r}."
        ) from None
    return value


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _pattern_host(host: str) -> bool:
    return re.fullmatch(r"[a-z0-9*\-]+(\.[a-z0-9*\-]+)*", host) is not None


def _check_domain_pattern(pattern: str) -> None:
    """A PIPEDRIVE_API_DOMAINS entry the allow-list can compile: scheme, host, optional port, nothing else."""
    problem = ""
    try:
        parts = urlsplit(pattern)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number in range)
    except ValueError:
        problem = "its port is not a number from 1 to 65535"
    else:
        if parts.scheme not in ("http", "https"):
            problem = "it must start with https:// (or http:// outside production)"
        elif not parts.hostname:
            problem = "it names no host"
        elif parts.username or parts.password or parts.query or parts.fragment:
            problem = "it may hold only a scheme, a host, a port and a path"
        elif not (_ip_literal(parts.hostname) or _pattern_host(parts.hostname)):
            problem = "its host may hold only letters, digits, '-', '.' and '*' labels"
    if problem:
        raise ConfigError(
            f"PIPEDRIVE_API_DOMAINS entry {pattern!r} is not a pattern like https://*.pipedrive.com: "
            f"{problem}."
        )


def normalize_database_url(url: str) -> str:
    """Map Heroku-style `postgres://` and bare `postgresql://` to the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _dev_secrets(instance_path: Path) -> dict[str, str]:
    """Secrets for development, generated once into the instance folder (never used in production)."""
    path = instance_path / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    instance_path.mkdir(parents=True, exist_ok=True)
    values = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "TOKEN_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),  # a Fernet key
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    return values


def sandbox_client_secret(secret_key: str) -> str:
    """The sandbox's client secret, derived so the app and its mounted sandbox agree without configuration."""
    return hmac.new(secret_key.encode(), b"pd-app-sandbox-client", hashlib.sha256).hexdigest()


def load_settings(
    environ: Mapping[str, str], instance_path: Path, overrides: Mapping[str, object] | None = None
) -> Settings:
    # Unset means production: a deployment that forgets the variable gets production's refusals, never the
    # development conveniences (generated secrets, the sandbox). `make run` and `make test` set it.
    env = environ.get("PD_APP_ENV", "production").strip() or "production"
    if env not in ENVIRONMENTS:
        raise ConfigError(f"PD_APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}.")
    public_url = environ.get("PUBLIC_URL", "http://localhost:5000").rstrip("/")
    secret_key = environ.get("SECRET_KEY", "")
    keys = _csv(environ.get("TOKEN_ENCRYPTION_KEYS"))
    if env != "production" and (not secret_key or not keys):
        generated = _dev_secrets(instance_path)
        secret_key = secret_key or generated["SECRET_KEY"]
        keys = keys or _csv(generated["TOKEN_ENCRYPTION_KEYS"])
    sandbox = _flag(environ.get("PD_SANDBOX"))
    client_id = environ.get("PIPEDRIVE_CLIENT_ID", "")
    client_secret = environ.get("PIPEDRIVE_CLIENT_SECRET", "")
    oauth_url = environ.get("PIPEDRIVE_OAUTH_URL", "https://oauth.pipedrive.com").rstrip("/")
    api_domains = _csv(environ.get("PIPEDRIVE_API_DOMAINS")) or ("https://*.pipedrive.com",)
    for pattern in api_domains:
        _check_domain_pattern(pattern)
    jwt_secret = environ.get("PIPEDRIVE_JWT_SECRET") or client_secret
    if sandbox and env != "production":
        # The sandbox is mounted at {PUBLIC_URL}/sandbox and plays both the OAuth server and the API. Its
        # credentials are always the derived ones: its CRM page signs panel JWTs for anyone who asks, so it
        # must never hold a real app's secret (nor sign with it).
        client_id = SANDBOX_CLIENT_ID
        client_secret = jwt_secret = sandbox_client_secret(secret_key)
        if "PIPEDRIVE_OAUTH_URL" not in environ:
            oauth_url = public_url + SANDBOX_PREFIX
        api_domains = (*api_domains, public_url + SANDBOX_PREFIX)
    database_url = environ.get("DATABASE_URL") or f"sqlite:///{instance_path / 'pd_app.sqlite3'}"
    settings = Settings(
        env=env,
        public_url=public_url,
        secret_key=secret_key,
        database_url=normalize_database_url(database_url),
        redis_url=environ.get("REDIS_URL") or None,
        token_encryption_keys=keys,
        client_id=client_id,
        client_secret=client_secret,
        redirect_uri=environ.get("PIPEDRIVE_REDIRECT_URI") or f"{public_url}/oauth/callback",
        oauth_url=oauth_url,
        api_domains=api_domains,
        jwt_secret=jwt_secret,
        sandbox=sandbox,
        goals_cache_ttl=_int("GOALS_CACHE_TTL", environ.get("GOALS_CACHE_TTL"), 30),
        reference_cache_ttl=_int("REFERENCE_CACHE_TTL", environ.get("REFERENCE_CACHE_TTL"), 600),
        key_rate_limit=_rate_limit(environ.get("KEY_RATE_LIMIT")),
        company_daily_token_cap=_int(
            "COMPANY_DAILY_TOKEN_CAP", environ.get("COMPANY_DAILY_TOKEN_CAP"), 10000
        ),
        upstream_retries=_int("UPSTREAM_RETRIES", environ.get("UPSTREAM_RETRIES"), 2),
        snapshot_every=_int("SNAPSHOT_EVERY", environ.get("SNAPSHOT_EVERY"), 86400),
        metrics_token=environ.get("METRICS_TOKEN", "").strip(),
        queue_path=str(instance_path / "queue.sqlite3"),
    )
    if overrides:
        settings = replace(settings, **overrides)  # type: ignore[arg-type]
    check_settings(settings)
    return settings


def _private_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in {"localhost", "localhost.localdomain"} or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified


def _public_https(name: str, url: str) -> list[str]:
    """Why `url` may not receive the app's secrets or tokens in production, if it may not."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return [f"{name} {url!r} must use https:// in production."]
    if _private_host(parts.hostname or ""):
        return [f"{name} {url!r} points at a loopback or private host, refused in production."]
    return []


def _too_broad(host: str) -> bool:
    """A wildcard host with fewer than two literal labels after its last `*` (`*.com`, `*`)."""
    labels = host.split(".")
    if "*" not in labels:
        return False
    after = labels[len(labels) - labels[::-1].index("*") :]
    return len([label for label in after if label]) < 2


def production_warnings(settings: Settings) -> list[str]:
    """Risky production settings that the contract does not refuse: logged at start, one line each."""
    if not settings.production:
        return []
    warnings = []
    if urlsplit(settings.public_url).scheme != "https":
        warnings.append(f"PUBLIC_URL {settings.public_url!r} should use https:// in production.")
    if not settings.metrics_token:
        warnings.append(
            "METRICS_TOKEN is unset: /metrics answers 401 and /readyz only its status until it is set."
        )
    warnings += [
        message.replace(" must ", " should ").replace("refused in production", "not fit for production")
        for message in _public_https("PIPEDRIVE_OAUTH_URL", settings.oauth_url)
    ]
    return warnings


def _fernet_key(key: str) -> None:
    """What cryptography's Fernet() checks of a key (32 url-safe base64 bytes), without importing it:
    gunicorn's master reads the settings too (gunicorn.conf.py) and stays small without the crypto library."""
    try:
        raw = base64.urlsafe_b64decode(key.encode())
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError("not 32 bytes")


def check_settings(settings: Settings) -> None:
    """Refuse what must never run; in production, every problem is listed, one line each."""
    for key in settings.token_encryption_keys:
        try:
            _fernet_key(key)
        except ValueError:
            raise ConfigError(
                "TOKEN_ENCRYPTION_KEYS holds a value that is not a Fernet key "
                "(32 url-safe base64-encoded bytes; make one with `python -c "
                "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)."
            ) from None
    if not settings.production:
        return
    problems = []
    for name, value in (
        ("SECRET_KEY", settings.secret_key),
        ("TOKEN_ENCRYPTION_KEYS", settings.token_encryption_keys),
        ("PIPEDRIVE_CLIENT_ID", settings.client_id),
        ("PIPEDRIVE_CLIENT_SECRET", settings.client_secret),
    ):
        if not value:
            problems.append(f"{name} is required when PD_APP_ENV=production.")
    if settings.secret_key and len(settings.secret_key.encode()) < MIN_SECRET_KEY_BYTES:
        problems.append(
            f"SECRET_KEY is too weak: at least {MIN_SECRET_KEY_BYTES} bytes in production (make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)."
        )
    if urlsplit(settings.oauth_url).scheme != "https":
        problems.append(
            f"PIPEDRIVE_OAUTH_URL {settings.oauth_url!r} must use https:// in production: "
            "the client secret and authorization codes travel to it."
        )
    if settings.sandbox:
        problems.append(
            "PD_SANDBOX=1 is refused in production: the sandbox is for development and tests only."
        )
    for pattern in settings.api_domains:
        problems += _public_https("PIPEDRIVE_API_DOMAINS entry", pattern)
        if _too_broad(urlsplit(pattern).hostname or ""):
            problems.append(
                f"PIPEDRIVE_API_DOMAINS entry {pattern!r} has a wildcard that matches too much: "
                "name at least two labels after it (like https://*.pipedrive.com)."
            )
    if problems:
        raise ConfigError("refusing to start:\n  " + "\n  ".join(problems))
