"""Webhooks: Goals have none in Pipedrive, so the app derives events from its snapshots and its own
lifecycle, records one delivery per subscribed webhook (`events.emit`, in the caller's transaction), and
delivers them signed (`delivery`), only where `safety` allows. Partners register them through the API
(`views`), operators through the CLI (`cli`); `registry` is what both call."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import Session


def init_app(app: Flask) -> None:
    """After jobs.init_app: the delivery tasks join the app's queue when it is built."""
    from . import cli, delivery, views

    app.register_blueprint(views.bp)
    app.cli.add_command(cli.webhooks_cli)
    app.extensions["pd_jobs"].on_build(delivery.register_tasks)
    # Any session that recorded deliveries queues a delivery run once it commits (emit flags it).
    if not event.contains(Session, "after_commit", delivery.after_commit):
        event.listen(Session, "after_commit", delivery.after_commit)
        event.listen(Session, "after_soft_rollback", delivery.after_rollback)
