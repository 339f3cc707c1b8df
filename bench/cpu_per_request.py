"""The app's own CPU per proxied read, measured in-process without a server or a load generator in the way.

The asyncio stand-in (bench/upstream.py) runs as a process of its own (its CPU is not ours); this process
builds the app, installs one company, and calls the WSGI application directly, N times in one thread,
reading that thread's CPU clock around the loop. What remains is what the app spends per call: Flask, the
credential, the database, validation, the cache, the upstream client and the response. Run:
    .venv/bin/python bench/cpu_per_request.py [N] [--cache-hits] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402

from bench.proxy_bench import UpstreamProcess  # noqa: E402
from pd_app import create_app  # noqa: E402
from pd_app.migrate import upgrade  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("calls", type=int, nargs="?", default=3000)
    parser.add_argument("--cache-hits", action="store_true", help="repeat one read with the cache on")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top frames")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key (tottime, cumulative)")
    args = parser.parse_args()
    logging.getLogger("pd_app").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        upstream = UpstreamProcess(Path(tmp) / "upstream.log", max_seconds=600)  # bench/upstream.py
        try:
            run(args, upstream.url)
        finally:
            upstream.stop()


def run(args: argparse.Namespace, upstream: str) -> None:
    from tests.procs import AppDatabase

    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{tmp}/cpu.sqlite3"
        upgrade(database)
        environ = {
            "PD_APP_ENV": "test",
            "DATABASE_URL": database,
            "SECRET_KEY": "k" * 32,
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "PIPEDRIVE_CLIENT_ID": "c",
            "PIPEDRIVE_CLIENT_SECRET": "s",
            "PIPEDRIVE_OAUTH_URL": upstream,
            "PIPEDRIVE_API_DOMAINS": upstream,
            "GOALS_CACHE_TTL": "30" if args.cache_hits else "0",
            "PUBLIC_URL": "http://x",
        }
        db = AppDatabase(environ)
        token = {
            "access_token": "bench-access",
            "refresh_token": "bench-refresh",
            "api_domain": upstream,
            "expires_in": 30 * 86400,
            "scope": "base,goals:full",
        }
        db.install(token, 1001, 2001)
        key = db.create_key(1001)
        db.close()
        app = create_app(environ=environ)
        environ_base = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/api/v1/goals/find",
            "QUERY_STRING": "is_active=true",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "5000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:5000",
            "HTTP_X_API_TOKEN": key,
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        statuses: dict[str, int] = {}

        def start_response(status: str, _headers: list, _exc: object = None) -> None:
            statuses[status] = statuses.get(status, 0) + 1

        def call() -> None:
            environ = dict(environ_base, **{"wsgi.input": io.BytesIO(b"")})
            body = app(environ, start_response)
            b"".join(body)
            getattr(body, "close", lambda: None)()

        for _ in range(200):
            call()
        statuses.clear()
        profile = cProfile.Profile() if args.profile else None
        if profile:
            profile.enable()
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for _ in range(args.calls):
            call()
        cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
        if profile:
            profile.disable()
        print(f"{args.calls} calls, statuses {statuses}")
        print(
            f"app CPU per call: {cpu / args.calls * 1e3:.3f} ms, "
            f"wall per call: {wall / args.calls * 1e3:.3f} ms"
        )
        if profile:
            pstats.Stats(profile).sort_stats(args.sort).print_stats(45)


if __name__ == "__main__":
    main()
