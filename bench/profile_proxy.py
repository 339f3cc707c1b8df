"""Where a proxied request's CPU goes: cProfile over N in-process `GET /api/v1/goals/find` calls.

The sandbox is served on 127.0.0.1 in a thread of this process, so socket waits include it; read the app's
own frames (pd_app/*, requests, SQLAlchemy) and the total function-call count. Run:
    .venv/bin/python bench/profile_proxy.py [N]
"""

from __future__ import annotations

import cProfile
import logging
import pstats
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402
from werkzeug.serving import WSGIRequestHandler, make_server  # noqa: E402

from pd_app import create_app  # noqa: E402
from pd_app.auth import create_key  # noqa: E402
from pd_app.db import get_session  # noqa: E402
from pd_app.install.identity import Identity
from pd_app.migrate import upgrade  # noqa: E402
from pd_app.sandbox import SandboxSettings, create_sandbox_app  # noqa: E402
from pd_app.tokens.store import save_grant  # noqa: E402


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


def main(calls: int) -> None:
    logging.getLogger("pd_app").setLevel(logging.WARNING)
    holder = {}
    server = make_server(
        "127.0.0.1", 0, lambda e, s: holder["app"](e, s), threaded=True, request_handler=QuietHandler
    )
    url = f"http://127.0.0.1:{server.server_port}"
    sandbox = create_sandbox_app(
        SandboxSettings(
            client_id="c", client_secret="s", redirect_uris=["http://x/oauth/callback"], base_url=url
        )
    )
    holder["app"] = sandbox
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state = sandbox.extensions["pd_sandbox"]
    state.set_knobs(burst_limit=10**6, daily_budget=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{tmp}/profile.sqlite3"
        upgrade(database)
        app = create_app(
            environ={
                "PD_APP_ENV": "test",
                "DATABASE_URL": database,
                "SECRET_KEY": "k" * 32,
                "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                "PIPEDRIVE_CLIENT_ID": "c",
                "PIPEDRIVE_CLIENT_SECRET": "s",
                "PIPEDRIVE_OAUTH_URL": url,
                "PIPEDRIVE_API_DOMAINS": url,
                "GOALS_CACHE_TTL": "0",
                "PUBLIC_URL": "http://x",
            }
        )
        with app.app_context():
            identity = Identity(1001, 2001, "acme", "Acme", "Ada", "ada@acme.example", True)
            save_grant(get_session(), identity, state.install(1001, 2001))
            _, key = create_key(get_session(), company_id=1001, name="profile")
        client = app.test_client()
        for _ in range(20):  # warm the pools
            client.get("/api/v1/goals/find", headers={"x-api-token": key})
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(calls):
            client.get("/api/v1/goals/find", headers={"x-api-token": key})
        profile.disable()
        app.extensions["pd_client"].close()
        app.extensions["pd_db"]["engine"].dispose()
    server.shutdown()
    pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
