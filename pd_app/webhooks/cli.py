"""`flask --app app webhooks add|list|remove|deliver`: the operator's side of webhooks."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from ..db import get_session
from . import registry
from .delivery import deliver_all
from .events import EVENT_TYPES

webhooks_cli = AppGroup("webhooks", help="Signed webhooks of goal and installation events.")


@webhooks_cli.command("add")
@click.option("--company-id", type=click.IntRange(min=1), required=True)
@click.option("--url", required=True, help="Where to POST events (https:// in production).")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(EVENT_TYPES),
    help="An event to send (repeatable) [default: all].",
)
def add_command(company_id: int, url: str, events: tuple[str, ...]) -> None:
    """Register a webhook; its signing secret is printed once, alone on the last line."""
    try:
        hook, secret = registry.add(
            get_session(),
            company_id,
            url,
            list(events or EVENT_TYPES),
            created_by="cli",
            production=current_app.config["SETTINGS"].production,
        )
    except registry.InvalidWebhook as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Created webhook {hook.id} for company {company_id}: {hook.url} ({', '.join(hook.events)}). "
        "Its signing secret follows; store it now: it is not shown again.",
        err=True,
    )
    click.echo(secret)


@webhooks_cli.command("list")
@click.option("--company-id", type=click.IntRange(min=1), default=None, help="Only this company's.")
def list_command(company_id: int | None) -> None:
    """Every webhook: id, company, health, pending deliveries, events, URL, and its last attempts."""
    hooks = registry.listing(get_session(), company_id)
    click.echo(f"{'id':>4} {'company':>10} {'created':<20} {'status':<32} {'pending':>7}  events  url")
    for h in hooks:
        status = f"FAILING since {h['failing_since'][:16]}" if h["failing"] else "ok"
        click.echo(
            f"{h['id']:>4} {h['company_id']:>10} {h['created_at'][:16]:<20} {status:<32} "
            f"{h['pending_deliveries']:>7}  {','.join(h['events'])}  {h['url']}"
        )
        for a in h["last_attempts"]:
            outcome = a["status"] if a["status"] is not None else "-"
            click.echo(
                f"       {a['at'][:19]}  {outcome!s:>3}  {a['duration_ms']:>5} ms  {a['event_id']}"
                + (f"  {a['error']}" if a["error"] else "")
            )


@webhooks_cli.command("remove")
@click.argument("webhook_id", type=int)
def remove_command(webhook_id: int) -> None:
    """Remove a webhook and its pending deliveries."""
    try:
        registry.remove(get_session(), webhook_id, None)
    except registry.WebhookNotFound:
        raise click.ClickException(f"no webhook with id {webhook_id}") from None
    click.echo(f"Webhook {webhook_id} is removed, with its pending deliveries.")


@webhooks_cli.command("deliver")
def deliver_command() -> None:
    """Send every due delivery once, in the foreground, and exit."""
    summary = deliver_all()
    click.echo(
        f"Attempted {summary.attempted}: delivered {summary.delivered}, failed {summary.failed} "
        "(retried later)."
    )
