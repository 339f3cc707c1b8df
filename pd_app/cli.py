"""Operator commands: `flask --app app keys|installations|db ...`. No command ever prints a token."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from . import keys, lifecycle, migrate
from .auth import CannotBind, rebind_key
from .db import get_session
from .logs import audit
from .models import Installation, KeyScope, PartnerKey
from .webhooks.registry import reencrypt_secrets

keys_cli = AppGroup("keys", help="Partner keys for the /api/v1 proxy.")
installations_cli = AppGroup("installations", help="Installations of the app (never shows a token).")
db_cli = AppGroup("db", help="Database migrations (Alembic).")
tokens_cli = AppGroup("tokens", help="Token keep-alive and encryption key rotation.")


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


@keys_cli.command("create")
@click.option("--company-id", type=click.IntRange(min=1), required=True)
@click.option(
    "--user-id",
    type=click.IntRange(min=1),
    default=None,
    help="Serve the key with this user's installation (default: the company's admin's, else its most "
    "recent). Either way the key stays with that installation until `keys rebind`.",
)
@click.option("--name", required=True, help="Who the key is for.")
@click.option(
    "--scope",
    type=click.Choice([s.value for s in KeyScope]),
    default=None,
    help="[default: read with --origin (a browser key is public), else full]",
)
@click.option(
    "--origin", "origins", multiple=True, help="Browser origin allowed to use the key (repeatable)."
)
def create_key_command(
    company_id: int, user_id: int | None, name: str, scope: str | None, origins: tuple[str, ...]
) -> None:
    """Create a partner key bound to one installation of the company; the key is printed once, alone on the
    last line."""
    try:
        wanted = keys.validate(name, scope, list(origins))
    except keys.InvalidKey as exc:
        problem = exc.details[0]
        option = "--" + problem["field"].partition("[")[0].removesuffix("s")
        raise click.BadParameter(problem["message"], param_hint=option) from None
    try:
        row, key, served_by = keys.create(get_session(), company_id, wanted, by="cli", user_id=user_id)
    except CannotBind as exc:
        raise click.ClickException(exc.message) from None
    click.echo(
        f"Created key {row.id} ({row.prefix}) for company {company_id}, scope {wanted.scope}, served by user "
        f"{served_by.user_id if served_by else None}'s installation. Store it now: it is not shown again.",
        err=True,
    )
    click.echo(key)


@keys_cli.command("list")
def list_keys_command() -> None:
    """Every key with its prefix, company, the user whose installation serves it (`*`: user-bound, created
    with --user-id), scope and use; never the key itself."""
    rows = get_session().execute(
        select(PartnerKey, Installation)
        .outerjoin(Installation, Installation.id == PartnerKey.installation_id)
        .order_by(PartnerKey.id)
    )
    click.echo(
        f"{'id':>4}  {'prefix':<14} {'company':>10} {'served by':>10} {'installation':<16} {'scope':<5} "
        f"{'created':<16} {'last used':<16} {'status':<8} name [origins]"
    )
    for r, inst in rows:
        status = "revoked" if r.revoked_at else "active"
        served_by = f"{inst.user_id}{'*' if r.user_id else ''}" if inst else "-"
        click.echo(
            f"{r.id:>4}  {r.prefix:<14} {r.company_id:>10} {served_by:>10} "
            f"{inst.status if inst else 'none':<16} {r.scope:<5} "
            f"{_when(r.created_at):<16} {_when(r.last_used_at):<16} {status:<8} {r.name}"
            + (f" [{', '.join(r.origins)}]" if r.origins else "")
        )


@keys_cli.command("rebind")
@click.argument("key_id", type=int)
@click.option(
    "--user-id",
    type=click.IntRange(min=1),
    required=True,
    help="The user whose installation (of the key's company) serves the key from now on.",
)
def rebind_key_command(key_id: int, user_id: int) -> None:
    """Move a key to another installation of its company (the only way a key changes whose data it shows)."""
    try:
        moved = rebind_key(get_session(), key_id, user_id)
    except CannotBind as exc:
        raise click.ClickException(exc.message) from None
    key, before, after = moved.key, moved.before, moved.after
    if before is not None and before.id == after.id:
        click.echo(f"Key {key.id} ({key.prefix}) is already served by user {after.user_id}'s installation.")
        return
    audit(
        "key_rebound",
        key_id=key.id,
        prefix=key.prefix,
        company_id=key.company_id,
        from_user_id=before.user_id if before else None,
        to_user_id=after.user_id,
    )
    was = f"user {before.user_id}'s installation" if before else "no installation"
    click.echo(
        f"Key {key.id} ({key.prefix}) of company {key.company_id} moved from {was} to user {after.user_id}'s "
        f"({after.status})" + (f"; it is now user-bound to user {after.user_id}." if key.user_id else ".")
    )


@keys_cli.command("revoke")
@click.argument("key_id", type=int)
def revoke_key_command(key_id: int) -> None:
    try:
        row = keys.revoke(get_session(), key_id, by="cli")
    except keys.KeyNotFound:
        raise click.ClickException(f"no key with id {key_id}") from None
    click.echo(f"Key {row.id} ({row.prefix}) is revoked.")


@installations_cli.command("list")
def list_installations_command() -> None:
    """Company, user, status, token expiry, last refresh, scopes and the last rate-limit figures seen."""
    rows = (
        get_session()
        .scalars(select(Installation).order_by(Installation.company_id, Installation.user_id))
        .all()
    )
    click.echo(
        f"{'company':>10} {'user':>10} {'status':<16} {'admin':<5} {'token expires':<16} "
        f"{'last refresh':<16} {'daily left':>10} {'scopes':<20} company name / user"
    )
    for r in rows:
        daily = (r.rate_limit or {}).get("daily-ratelimit-token-remaining", "-")
        click.echo(
            f"{r.company_id:>10} {r.user_id:>10} {r.status:<16} {'yes' if r.is_admin else 'no':<5} "
            f"{_when(r.access_token_expires_at):<16} {_when(r.last_refreshed_at):<16} {daily:>10} "
            f"{r.scopes:<20} {r.company_name or '-'} / {r.user_name or '-'}"
        )


@installations_cli.command("revoke")
@click.option("--company-id", type=click.IntRange(min=1), required=True)
@click.option(
    "--user-id", type=click.IntRange(min=1), default=None, help="Only this user (default: every user)."
)
def revoke_installations_command(company_id: int, user_id: int | None) -> None:
    """Disconnect from our side: revoke at Pipedrive (uninstalls the app there), then erase the tokens."""
    outcome = lifecycle.revoke(get_session(), company_id, user_id)
    for company, user in outcome.revoked:
        click.echo(f"Revoked and erased: company {company}, user {user}.")
    for company, user, error in outcome.failed:
        click.echo(f"Not revoked (tokens kept, try again): company {company}, user {user}: {error}", err=True)
    if not outcome.revoked and not outcome.failed:
        click.echo("No installation with tokens matched.")
    if outcome.failed:
        raise SystemExit(1)


@tokens_cli.command("refresh-due")
@click.option(
    "--days",
    type=click.IntRange(min=1, max=59),
    default=30,
    show_default=True,
    help="Refresh tokens unused for this many days (Pipedrive's lapse after 60).",
)
def refresh_due_command(days: int) -> None:
    """Keep-alive: refresh every installation whose refresh token would otherwise lapse. Safe from cron on
    every instance at once."""
    outcome = lifecycle.refresh_due(get_session(), timedelta(days=days))
    click.echo(
        f"Refreshed {outcome.refreshed}; need reinstall {len(outcome.reauth)}; "
        f"failed (will retry) {len(outcome.failed)}."
    )
    for company, user in outcome.reauth:
        click.echo(f"Needs reinstall: company {company}, user {user}.", err=True)
    for company, user, error in outcome.failed:
        click.echo(f"Failed: company {company}, user {user}: {error}", err=True)
    if outcome.failed:
        raise SystemExit(1)


@tokens_cli.command("reencrypt")
def reencrypt_command() -> None:
    """Re-encrypt every stored token and webhook secret under the first key of TOKEN_ENCRYPTION_KEYS."""
    done, failed = lifecycle.reencrypt_all()
    click.echo(f"Re-encrypted {done} installation(s) under the first key; {failed} failed.")
    hooks, hooks_failed = reencrypt_secrets(get_session())
    click.echo(f"Re-encrypted {hooks} webhook secret(s); {hooks_failed} failed.")
    if failed or hooks_failed:
        raise SystemExit(1)


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade_command(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    migrate.upgrade(current_app.config["SETTINGS"].database_url, revision)
    click.echo(f"Database at {migrate.current(current_app.config['SETTINGS'].database_url) or 'base'}.")


@db_cli.command("current")
def db_current_command() -> None:
    click.echo(migrate.current(current_app.config["SETTINGS"].database_url) or "base (empty)")


@click.command("worker")
@click.option("--threads", type=click.IntRange(min=1, max=32), default=2, show_default=True)
def worker_command(threads: int) -> None:
    """Run the background jobs (keep-alive, goal snapshots, webhook deliveries) until SIGTERM or SIGINT."""
    from .jobs import jobs

    jobs().consumer(threads).run()


def init_app(app: Flask) -> None:
    for group in (keys_cli, installations_cli, db_cli, tokens_cli):
        app.cli.add_command(group)
    app.cli.add_command(worker_command)
