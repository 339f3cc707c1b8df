"""Configuration of one sandbox instance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxSettings:
    """What the sandbox pretends the app registered in Pipedrive's Developer Hub."""

    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    # Pipedrive compares the redirect URI byte for byte with the registered Callback URL.
    redirect_uris: Sequence[str] = ("http://localhost:5000/oauth/callback",)
    # Where the sandbox is reachable; returned as `api_domain` so the app sends API calls back here.
    base_url: str = "http://localhost:5000/sandbox"
    app_name: str = "pd_app Goals"
    # What the app asks for: goals, and read access to the reference data its goal forms show by name.
    scopes: Sequence[str] = ("base", "goals:full", "deals:read", "activities:read", "users:read")
    access_token_ttl: int = 3599
    jwt_secret: str | None = None  # the custom UI JWT's secret; None: the client secret (Pipedrive's default)
    # The app's custom UI panel (Developer Hub "Iframe URL"), framed by the sandbox's CRM deal page.
    panel_url: str = "http://localhost:5000/ui/panel"
    control: bool = True  # the /_sandbox/* endpoints exist only when True

    def __post_init__(self) -> None:
        # Callers may pass lists; tuples keep a frozen settings object really immutable.
        object.__setattr__(self, "redirect_uris", tuple(self.redirect_uris))
        object.__setattr__(self, "scopes", tuple(self.scopes))
