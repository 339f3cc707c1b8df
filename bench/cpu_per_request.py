"""The app's own CPU per proxied read, measured in-process without a server or a load generator in the way.

A keep-alive upstream stand-in runs as a separate process (its CPU is not ours); this process builds the
app, installs one company, and calls the WSGI application directly, N times in one thread, reading that
thread's CPU clock around the loop. What remains is what the app spends per call: Flask, the credential, the
database, validation, the cache, the upstream client and the response. Run:
    .venv/bin/python bench/cpu_per_request.py [N] [--cache-hits] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402

from pd_app import create_app  # noqa: E402
from pd_app.migrate import upgrade  # noqa: E402

UPSTREAM = r"""
import asyncio, json, sys
BODY = json.dumps({"success": True, "data": [{"id": "g%d" % i, "owner_id": 2001, "title": "Goal %d" % i,
    "type": {"name": "deals_won", "params": {"pipeline_id": [1]}}, "assignee": {"id": 2001, "type": "person"},
    "interval": "monthly", "duration": {"start": "2026-01-01", "end": None},
    "expected_outcome": {"target": 50, "tracking_metric": "quantity"}, "is_active": True,
    "report_ids": []} for i in range(3)], "additional_data": {"pagination": {"start": 0, "limit": 100,
    "more_items_in_collection": False}}}).encode()
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-ratelimit-limit: 80\r\n"
        b"x-ratelimit-remaining: 79\r\nx-ratelimit-reset: 2\r\nx-daily-requests-left: 9999\r\n"
        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n")
class P(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, d):
        self.buf += d
        while b"\r\n\r\n" in self.buf:
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.t.write(HEAD + BODY)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("calls", type=int, nargs="?", default=3000)
    parser.add_argument("--cache-hits", action="store_true", help="repeat one read with the cache on")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top frames")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key (tottime, cumulative)")
    args = parser.parse_args()
    logging.getLogger("pd_app").setLevel(logging.WARNING)
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM], stdout=subprocess.PIPE, text=True)
    try:
        port = int(upstream.stdout.readline())
        run(args, f"http://127.0.0.1:{port}")
    finally:
        upstream.kill()


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
