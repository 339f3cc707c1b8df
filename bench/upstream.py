"""A stand-in for Pipedrive's API for the benchmark: stdlib asyncio, HTTP/1.1 keep-alive, fixed answers.

    python bench/upstream.py [--port 0] [--latency-ms 0] [--goals 3]

Prints `listening on http://127.0.0.1:PORT` once it accepts connections. One process, one event loop: it
answers thousands of requests per second on one core (the Flask sandbox tops out near 600/s), so it is not
what limits a run. Every API answer is held back by the configured latency (a timer, not a sleeping thread),
so any number of calls can wait at once.

API (what pd_app calls; the bearer token is required but not checked):
    GET /api/v1/goals/find            {"success": true, "data": {"goals": [3 goals]}, "additional_data": ...}
    GET /api/v1/goals/<id>/results    that goal (or the first, for an unknown id) with its progress
    GET /api/v1/users/me              a user of company 1001
with Pipedrive's rate-limit headers (x-ratelimit-limit/remaining/reset, x-daily-requests-left).

Control (answered at once, never delayed):
    GET /_stats                       {"requests", "by_path", "by_operation", "in_flight", "peak_in_flight",
                                       "latency_ms", "goals"}; by_operation names platform.md's operations
                                       (find, results, add, update, delete, users_me; else "other")
    GET /_stats/reset                 zero the counters and the peak, then answer like /_stats
    GET /_latency?ms=100              set the added latency of API answers
    GET /_goals?n=3                   how many goals find returns (1-99)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections import deque
from urllib.parse import parse_qs

GOAL_KINDS = [
    ("Deals won this quarter", "deals_won", "quarterly", 40),
    ("New deals every week", "deals_started", "weekly", 25),
    ("Deals moved to proposal", "deals_progressed", "monthly", 60),
]


def goal(n: int) -> dict:
    title, kind, interval, target = GOAL_KINDS[n % len(GOAL_KINDS)]
    return {
        "id": f"5665cef556ddff22606fc8f6c00048{n:02d}",
        "owner_id": 2001,
        "title": title if n < len(GOAL_KINDS) else f"{title} #{n}",
        "type": {"name": kind, "params": {"pipeline_id": [1, 2]}},
        "assignee": {"type": "person", "id": 2001},
        "interval": interval,
        "duration": {"start": "2026-01-01", "end": "2026-12-31"},
        "expected_outcome": {"target": target, "tracking_metric": "quantity"},
        "is_active": True,
        "report_ids": [f"f37bd66a2ab64d28ff6a9b6d228981{n}a"],
    }


def find_body(goals: list[dict]) -> bytes:
    return json.dumps(
        {
            "success": True,
            "statusCode": 20000,
            "statusText": "OK",
            "service": "statistics-goals-api",
            "data": {"goals": goals},
            "additional_data": {"pagination": {"start": 0, "limit": 100, "more_items_in_collection": False}},
        }
    ).encode()


def results_body(one: dict) -> bytes:
    period = {"start": "2026-01-01", "end": "2026-03-31"}
    return json.dumps({"success": True, "data": {"goal": one, "progress": 17, "period": period}}).encode()


GOALS = [goal(n) for n in range(3)]
FIND_BODY = find_body(GOALS)
RESULTS_BODY = results_body(GOALS[0])
ME_BODY = json.dumps(
    {
        "success": True,
        "data": {
            "id": 2001,
            "name": "Ada Admin",
            "email": "ada@example.com",
            "company_id": 1001,
            "company_name": "Acme Sales Ltd",
            "company_domain": "acme",
            "is_admin": 1,
            "access": [{"app": "sales", "admin": True}],
        },
    }
).encode()
NOT_FOUND = b'{"success":false,"error":"Not found","errorCode":404}'
UNAUTHORIZED = b'{"success":false,"error":"unauthorized access","errorCode":401}'
REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found"}
MAX_HEAD = 64 * 1024


# platform.md's cost table: Pipedrive API tokens per call of each operation.
TOKEN_COST = {"find": 20, "results": 20, "add": 10, "update": 10, "delete": 6, "users_me": 2}


def operation(method: str, path: str) -> str:
    """The operation of platform.md's cost table that a call is, or "other"."""
    if path == "/api/v1/users/me":
        return "users_me" if method == "GET" else "other"
    if path == "/api/v1/goals/find":
        return "find" if method == "GET" else "other"
    if path == "/api/v1/goals":
        return "add" if method == "POST" else "other"
    if path.startswith("/api/v1/goals/"):
        rest = path[len("/api/v1/goals/") :]
        if rest.endswith("/results") and "/" not in rest[: -len("/results")]:
            return "results" if method == "GET" else "other"
        if rest and "/" not in rest:
            return {"PUT": "update", "DELETE": "delete"}.get(method, "other")
    return "other"


class Stats:
    def __init__(self, latency_ms: float, goals: int = 3) -> None:
        self.latency = latency_ms / 1000
        self.set_goals(goals)
        self.reset()

    def set_goals(self, n: int) -> None:
        self.goals = [goal(i) for i in range(n)]
        self.find_body = find_body(self.goals)
        self.results_bodies = {g["id"]: results_body(g) for g in self.goals}

    def reset(self) -> None:
        self.requests = 0
        self.by_path: dict[str, int] = {}
        self.by_operation: dict[str, int] = {}
        self.in_flight = 0
        self.peak_in_flight = 0
        self.daily_left = 10_000_000

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "requests": self.requests,
                "by_path": self.by_path,
                "by_operation": self.by_operation,
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
                "latency_ms": self.latency * 1000,
                "goals": len(self.goals),
            }
        ).encode()


def response(status: int, body: bytes, extra: bytes = b"", close: bool = False) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        status,
        REASONS.get(status, b"Other"),
        len(body),
    )
    if close:
        head += b"Connection: close\r\n"
    return head + extra + b"\r\n" + body


class Upstream(asyncio.Protocol):
    """One connection. Requests are answered in order (HTTP/1.1), each after the configured latency."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buffer = b""
        # Requests read but not yet answered: (the answer, or None when it waits for the latency; the API
        # body of a delayed answer; close the connection after it).
        self.pending: deque[tuple[bytes | None, bytes, bool]] = deque()
        self.busy = False
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._write(response(400, b"{}", close=True), close=True)
                return
            head = self.buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            length, auth, close = 0, False, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "authorization":
                    auth = value.strip().lower().startswith("bearer ")
                elif name == "connection":
                    close = value.strip().lower() == "close"
            if len(self.buffer) < end + 4 + length:
                return  # the body has not all arrived
            self.buffer = self.buffer[end + 4 + length :]
            ready, body = self._handle(lines[0], auth)
            self.pending.append((ready, body, close))
            self._next()

    def _handle(self, request_line: str, auth: bool) -> tuple[bytes | None, bytes]:
        """(the answer's bytes, b"") at once; (None, body) for an API call, answered after the latency."""
        try:
            method, target, _version = request_line.split(" ", 2)
        except ValueError:
            return response(400, b"{}", close=True), b""
        path, _, query = target.partition("?")
        if path.startswith("/_"):
            return self._control(path, query), b""
        self.stats.requests += 1
        self.stats.by_path[path] = self.stats.by_path.get(path, 0) + 1
        op = operation(method, path)
        self.stats.by_operation[op] = self.stats.by_operation.get(op, 0) + 1
        if method != "GET":
            return response(404, NOT_FOUND), b""
        if not auth:
            return response(401, UNAUTHORIZED), b""
        if op == "find":
            return None, self.stats.find_body
        if op == "results":
            goal_id = path[len("/api/v1/goals/") : -len("/results")]
            return None, self.stats.results_bodies.get(goal_id, RESULTS_BODY)
        if path == "/api/v1/users/me":
            return None, ME_BODY
        return response(404, NOT_FOUND), b""

    def _control(self, path: str, query: str) -> bytes:
        stats = self.stats
        if path == "/_stats/reset":
            stats.reset()
        elif path == "/_latency":
            stats.latency = float(parse_qs(query).get("ms", ["0"])[0]) / 1000
        elif path == "/_goals":
            stats.set_goals(max(1, min(99, int(parse_qs(query).get("n", ["3"])[0]))))
        elif path != "/_stats":
            return response(404, NOT_FOUND)
        return response(200, stats.as_json())

    def _next(self) -> None:
        if self.busy or not self.pending:
            return
        ready, _body, close = self.pending[0]
        if ready is not None:
            self.pending.popleft()
            self._write(ready, close)
            self._next()
            return
        self.busy = True
        self.stats.in_flight += 1
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
        if self.stats.latency > 0:
            self.loop.call_later(self.stats.latency, self._answer)
        else:
            self._answer()

    def _answer(self) -> None:
        stats = self.stats
        stats.in_flight -= 1
        self.busy = False
        _ready, body, close = self.pending.popleft()
        stats.daily_left -= 1
        headers = b"x-ratelimit-limit: 80\r\nx-ratelimit-remaining: 79\r\nx-ratelimit-reset: 2\r\n"
        headers += b"x-daily-requests-left: %d\r\n" % stats.daily_left
        self._write(response(200, body, headers, close), close)
        self._next()

    def _write(self, data: bytes, close: bool = False) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if close:
            self.transport.close()
            self.transport = None


async def serve(host: str, port: int, latency_ms: float, goals: int = 3) -> None:
    stats = Stats(latency_ms, goals)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Upstream(stats), host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()
    print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency of every API answer")
    parser.add_argument("--goals", type=int, default=3, help="how many goals find returns (1-99)")
    parser.add_argument("--max-seconds", type=float, default=3600, help="stop by itself after this long")
    args = parser.parse_args(argv)

    async def run() -> None:
        try:
            await asyncio.wait_for(
                serve(args.host, args.port, args.latency_ms, max(1, min(99, args.goals))), args.max_seconds
            )
        except TimeoutError:
            pass

    started = time.monotonic()
    asyncio.run(run())
    print(f"stopped after {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
