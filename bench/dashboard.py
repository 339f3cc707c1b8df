"""The dashboard figure: many screens of one company open at the same moment and poll its goals through
pd_app. What does that cost the company's Pipedrive budget, against the screens calling Pipedrive directly?

    .venv/bin/python bench/dashboard.py        # `make bench-dashboard`: 50 screens, 3 goals, 2 s poll, 20 s
    .venv/bin/python bench/dashboard.py --screens 5 --goals 1 --poll 2 --duration 4 --json

What runs, all on 127.0.0.1 and stopped at the end (as bench/proxy_bench.py starts it):
- `bench/upstream.py`, the asyncio stand-in for Pipedrive, answering after --latency-ms (100), its find
  returning --goals goals; it counts the calls it received by operation (platform.md's find, results, ...);
- pd_app under `gunicorn app:app -c gunicorn.conf.py` with its production defaults (2 workers; gthread x 64 on
  SQLite, gevent on PostgreSQL; GOALS_CACHE_TTL 30 s, no REDIS_URL), one installation of company 1001 served
  by the stand-in (its access token valid for a year: no refresh), and a company-wide partner key per screen
  (--shared-key: one key for all of them);
- in this process, --screens screens on one event loop, each on its own keep-alive connection. Every screen
  connects, then all of them start at the same instant t0; at t0, t0 + poll, t0 + 2 poll, ... while before
  t0 + duration, a screen asks `GET /api/v1/goals/find`, then, one after the other, `GET
  /api/v1/goals/{id}/results?period.start=...&period.end=...` for each goal id that find returned (the ids of
  its last good find when this one failed). A poll that is still running at the next tick makes the next one
  start as soon as it ends ("late polls"). A keep-alive connection the server closed is opened again, and a
  request that met a closed connection is sent once more, as a browser would.

The report: Pipedrive tokens (platform.md: find 20, results 20) that pd_app spent, as the stand-in counted
them, against plain pass-through (every screen request one upstream call: what the screens would spend calling
Pipedrive themselves), and their ratio (goal: at most 0.01); the same for the first wave alone (the stand-in's
count when every screen had its first poll answered); the time from t0 to each screen's first answer (find)
and to its first full poll (find and every goal's results); the answers by status, and requests that got no
answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `pd_app`, `bench` and `tests.procs` importable

from bench.load import ClientConnection  # noqa: E402
from bench.procstat import machine_facts  # noqa: E402
from bench.proxy_bench import (  # noqa: E402
    COMPANY,
    AppServer,
    Model,
    UpstreamProcess,
    app_environ,
    git_commit,
    prepare_database,
    seed,
)
from bench.upstream import TOKEN_COST  # noqa: E402
from tests.procs import AppDatabase  # noqa: E402

FIND = "/api/v1/goals/find"
GOAL = 0.01  # tokens through pd_app / tokens passed through, at most
START_DELAY = 0.3  # seconds between the last screen connecting and t0
REQUEST_TIMEOUT = 30.0  # seconds a screen waits for one answer (gunicorn's timeout is 60)


# -- the screens ---------------------------------------------------------------------------------------------
class Connection(ClientConnection):
    keep_body = True


@dataclass
class Tally:
    """What all the screens sent and got, by operation."""

    sent: Counter = field(default_factory=Counter)  # screen requests by operation (a resend counts once)
    statuses: Counter = field(default_factory=Counter)  # (operation, status) of every answer
    failures: Counter = field(default_factory=Counter)  # (operation, what) of requests that got no answer
    latencies: list[float] = field(default_factory=list)  # seconds, every answer
    first_answer: list[float] = field(default_factory=list)  # seconds from t0, per screen: its first find
    first_full: list[float] = field(default_factory=list)  # seconds from t0, per screen: its first full poll
    late_polls: int = 0
    reconnects: int = 0
    resent: int = 0
    unfinished: int = 0  # screens still running at the hard deadline (cancelled)
    screens: int = 0
    first_wave: asyncio.Event = field(
        default_factory=asyncio.Event
    )  # set when every screen had its first poll


class Screen:
    """One screen on its own keep-alive connection."""

    def __init__(self, host: str, port: int, key: str, tally: Tally) -> None:
        self.host, self.port, self.tally = host, port, tally
        self.head = f"Host: {host}:{port}\r\nx-api-token: {key}\r\nAccept: application/json\r\n\r\n"
        self.conn: Connection | None = None
        self.opened = 0
        self.loop = asyncio.get_running_loop()

    async def connect(self) -> None:
        self.opened += 1
        self.tally.reconnects += self.opened > 1
        _transport, self.conn = await asyncio.wait_for(
            self.loop.create_connection(Connection, self.host, self.port), REQUEST_TIMEOUT
        )

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None

    async def get(self, op: str, target: str) -> tuple[int, bytes]:
        """(status, body), or (0, b"") when no answer came."""
        self.tally.sent[op] += 1
        data = f"GET {target} HTTP/1.1\r\n{self.head}".encode()
        for attempt in (1, 2):
            reused = self.conn is not None and self.conn.transport is not None
            started = self.loop.time()
            try:
                if not reused:
                    await self.connect()
                assert self.conn is not None
                status, closing = await asyncio.wait_for(self.conn.request(data), REQUEST_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                self.close()
                if reused and attempt == 1 and isinstance(exc, ConnectionError):
                    self.tally.resent += 1  # the server closed an idle connection as we wrote: again, once
                    continue
                self.tally.failures[(op, type(exc).__name__)] += 1
                return 0, b""
            self.tally.latencies.append(self.loop.time() - started)
            self.tally.statuses[(op, status)] += 1
            body = self.conn.body
            if closing:
                self.close()
            return status, body
        raise AssertionError("unreachable")

    async def run(self, t0: float, polls: int, poll: float, goals: int, period: str) -> None:
        goal_ids: list[str] = []
        try:
            for n in range(polls):
                tick = t0 + n * poll
                if self.loop.time() < tick:
                    await asyncio.sleep(tick - self.loop.time())
                elif n:
                    self.tally.late_polls += 1
                status, body = await self.get("find", f"{FIND}?is_active=true")
                if n == 0:
                    self.tally.first_answer.append(self.loop.time() - t0)
                if status == 200:
                    goal_ids = _goal_ids(body)[:goals] or goal_ids
                for goal_id in goal_ids:
                    await self.get("results", f"/api/v1/goals/{goal_id}/results?{period}")
                if n == 0:
                    self.tally.first_full.append(self.loop.time() - t0)
                    if len(self.tally.first_full) == self.tally.screens:
                        self.tally.first_wave.set()
        finally:
            self.close()


def _goal_ids(body: bytes) -> list[str]:
    try:
        goals = json.loads(body)["data"]["goals"]
        return [str(g["id"]) for g in goals]
    except (ValueError, KeyError, TypeError):
        return []


async def drive(
    url: str, keys: list[str], args: argparse.Namespace, upstream: UpstreamProcess
) -> tuple[Tally, dict, float]:
    """Every screen connects, all start at t0; returns the tally, the stand-in's counts when the first wave
    was answered, and the seconds the run took."""
    parts = urlsplit(url)
    tally = Tally(screens=len(keys))
    screens = [Screen(parts.hostname or "127.0.0.1", parts.port or 80, key, tally) for key in keys]
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(s.connect() for s in screens))
    polls = polls_of(args)
    year = time.gmtime().tm_year
    period = f"period.start={year}-01-01&period.end={year}-12-31"
    t0 = loop.time() + START_DELAY
    tasks = [asyncio.ensure_future(s.run(t0, polls, args.poll, args.goals, period)) for s in screens]

    async def first_wave_counts() -> dict:
        await tally.first_wave.wait()
        return await loop.run_in_executor(None, upstream.get, "/_stats")

    wave = asyncio.ensure_future(first_wave_counts())
    # A hard end: the last poll's tick, plus every request of it timing out.
    deadline = START_DELAY + (polls - 1) * args.poll + (1 + args.goals) * REQUEST_TIMEOUT + 5
    _done, pending = await asyncio.wait(tasks, timeout=deadline)
    tally.unfinished = len(pending)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = loop.time() - t0
    if tally.first_wave.is_set():
        await asyncio.wait([wave], timeout=10)  # with one poll, the last screen can end before the snapshot
    first = {}
    if wave.done() and not wave.cancelled() and wave.exception() is None:
        first = wave.result()
    else:
        wave.cancel()
    return tally, first, elapsed


def polls_of(args: argparse.Namespace) -> int:
    """Polls start at 0, poll, 2 poll, ... while before `duration` (at least one)."""
    return max(1, -(-round(args.duration * 1000) // round(args.poll * 1000)))


# -- the report ----------------------------------------------------------------------------------------------
def tokens(counts: dict[str, int]) -> int:
    return sum(TOKEN_COST.get(op, 0) * n for op, n in counts.items())


def distribution(seconds: list[float]) -> dict[str, float | None]:
    """min, p50, p90, p99 (nearest rank), max, in ms."""
    if not seconds:
        return {k: None for k in ("min", "p50", "p90", "p99", "max")}
    ordered = sorted(seconds)

    def rank(p: float) -> float:
        return ordered[max(1, -(-len(ordered) * p // 100)) - 1] * 1000

    return {
        "min": round(ordered[0] * 1000, 2),
        "p50": round(rank(50), 2),
        "p90": round(rank(90), 2),
        "p99": round(rank(99), 2),
        "max": round(ordered[-1] * 1000, 2),
    }


def build_report(
    args: argparse.Namespace, model: Model, tally: Tally, upstream: dict, first: dict, elapsed: float
) -> dict:
    calls = {op: n for op, n in sorted(upstream["by_operation"].items())}
    spent = tokens(calls)
    passed = tokens(dict(tally.sent))
    first_calls = dict(sorted(first.get("by_operation", {}).items())) if first else None
    first_passed = tokens({"find": args.screens, "results": args.screens * args.goals})
    answers: Counter = Counter()
    for (_op, status), n in tally.statuses.items():
        answers[str(status)] += n
    errors = {s: n for s, n in sorted(answers.items()) if s != "200"}
    no_answer = {f"{op}: {what}": n for (op, what), n in sorted(tally.failures.items())}
    return {
        "command": args.command_line,
        "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "commit": git_commit(),
        "machine": machine_facts(),
        "config": {
            "screens": args.screens,
            "goals": args.goals,
            "poll_s": args.poll,
            "duration_s": args.duration,
            "polls_per_screen": polls_of(args),
            "upstream_latency_ms": args.latency_ms,
            "keys": 1 if args.shared_key else args.screens,
            "app": f"{model}, database {args.backend}, production defaults otherwise",
        },
        "screen_requests": dict(sorted(tally.sent.items())),
        "upstream_calls": calls,
        "tokens": {
            "pd_app": spent,
            "pass_through": passed,
            "ratio": spent / passed if passed else None,
            "goal": GOAL,
            "met": bool(passed) and spent / passed <= GOAL,
        },
        "first_wave": {
            "upstream_calls": first_calls,
            "tokens_pd_app": tokens(first_calls) if first_calls is not None else None,
            "tokens_pass_through": first_passed,
            "first_answer_ms": distribution(tally.first_answer),
            "first_full_poll_ms": distribution(tally.first_full),
            "screens_answered": len(tally.first_answer),
        },
        "answers": dict(sorted(answers.items())),
        "errors_by_status": errors,
        "no_answer": no_answer,
        "answer_ms": distribution(tally.latencies),
        "late_polls": tally.late_polls,
        "reconnects": tally.reconnects,
        "resent": tally.resent,
        "unfinished_screens": tally.unfinished,
        "upstream_peak_in_flight": upstream["peak_in_flight"],
        "app_error_log_lines": args.app_errors,
        "seconds": round(elapsed, 1),
    }


def _ms(dist: dict[str, float | None]) -> str:
    if dist["p50"] is None:
        return "-"
    return " / ".join(f"{dist[k]:.0f}" for k in ("min", "p50", "p90", "p99", "max"))


def _int(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _ops(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "?"
    return ", ".join(f"{op} {n}" for op, n in counts.items()) or "none"


def markdown(report: dict) -> str:
    c, t, w, m = report["config"], report["tokens"], report["first_wave"], report["machine"]
    ratio = f"{t['ratio']:.4f}" if t["ratio"] is not None else "-"
    first_ratio = "-"
    if w["tokens_pd_app"] is not None and w["tokens_pass_through"]:
        first_ratio = f"{w['tokens_pd_app'] / w['tokens_pass_through']:.4f}"
    errors = ", ".join(f"HTTP {s}: {n}" for s, n in report["errors_by_status"].items()) or "0"
    no_answer = ", ".join(f"{k}: {n}" for k, n in report["no_answer"].items()) or "0"
    lines = [
        f"### `{report['command']}`",
        "",
        f"Finished {report['finished_utc']} UTC; {m['cpus']} CPUs ({m['cpu model']}), {m['memory']} RAM, "
        f"Linux {m['kernel']}, Python {m['python']}; commit {report['commit']}. {c['screens']} screens, "
        f"{c['goals']} goals, a poll every {c['poll_s']:g} s for {c['duration_s']:g} s "
        f"({c['polls_per_screen']} polls a screen), upstream {c['upstream_latency_ms']:g} ms, "
        f"{c['keys']} partner key(s); {c['app']}.",
        "",
        "| measure | goal | value |",
        "|---|---|---:|",
        f"| Pipedrive tokens, pd_app (stand-in's count: {_ops(report['upstream_calls'])}) | - "
        f"| {t['pd_app']:,} |",
        f"| Pipedrive tokens, pass-through (screen requests: {_ops(report['screen_requests'])}) | - "
        f"| {t['pass_through']:,} |",
        f"| ratio | <= {t['goal']:g} | **{ratio}** |",
        f"| first wave: tokens pd_app / pass-through ({_ops(w['upstream_calls'])}) | - "
        f"| {_int(w['tokens_pd_app'])} / {w['tokens_pass_through']:,}"
        f" = {first_ratio} |",
        f"| first wave: time to first answer, ms (min / p50 / p90 / p99 / max) | - "
        f"| {_ms(w['first_answer_ms'])} |",
        f"| first wave: time to a full screen, ms (min / p50 / p90 / p99 / max) | - "
        f"| {_ms(w['first_full_poll_ms'])} |",
        f"| every answer, ms (min / p50 / p90 / p99 / max) | - | {_ms(report['answer_ms'])} |",
        f"| answers (errors by status) | 0 errors | {sum(report['answers'].values()):,} (errors: {errors}) |",
        f"| requests with no answer | 0 | {no_answer} |",
        f"| late polls / reconnects / resent / unfinished screens | - | {report['late_polls']} / "
        f"{report['reconnects']} / {report['resent']} / {report['unfinished_screens']} |",
        f"| upstream calls at once (peak) / app error log lines | - | {report['upstream_peak_in_flight']} / "
        f"{report['app_error_log_lines']} |",
        "",
    ]
    return "\n".join(lines)


# -- the run -------------------------------------------------------------------------------------------------
def partner_keys(environ: dict[str, str], upstream_url: str, count: int) -> list[str]:
    """proxy_bench's installation and key, and count - 1 more company-wide keys of the same company."""
    keys = [seed(environ, upstream_url)]
    if count > 1:
        db = AppDatabase(environ)
        try:
            keys += [db.create_key(COMPANY) for _ in range(count - 1)]
        finally:
            db.close()
    return keys


def run(args: argparse.Namespace, workdir: Path) -> dict:
    budget = START_DELAY + args.duration + (1 + args.goals) * REQUEST_TIMEOUT + 120
    upstream = UpstreamProcess(workdir / "upstream.log", max_seconds=budget)
    server = None
    try:
        upstream.latency(args.latency_ms)
        upstream.get(f"/_goals?n={args.goals}")
        database_url = prepare_database(args.database, workdir)
        args.backend = database_url.split(":", 1)[0].split("+", 1)[0]
        environ = app_environ(database_url, upstream.url)
        if args.redis:
            import redis

            redis.Redis.from_url(args.redis).flushdb()  # no cache entries or locks left from an earlier run
            environ["REDIS_URL"] = args.redis
        keys = partner_keys(environ, upstream.url, 1 if args.shared_key else args.screens)
        if args.shared_key:
            keys = keys * args.screens
        worker_class = "gevent" if args.backend == "postgresql" else "gthread"
        # gunicorn.conf.py's defaults (as proxy_bench reads them), the worker class named for the report.
        workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
        model = Model(worker_class, workers, int(os.environ.get("GUNICORN_THREADS", "64")))
        server = AppServer(workdir / "gunicorn.log", environ, model.workers, model.threads, worker_class)
        upstream.get("/_stats/reset")
        tally, first, elapsed = asyncio.run(drive(server.url, keys, args, upstream))
        counts = upstream.get("/_stats")
        server.stop()
        args.app_errors = sum(
            '"level": "error"' in ln or "Traceback" in ln for ln in server.output().splitlines()
        )
        server = None
        return build_report(args, model, tally, counts, first, elapsed)
    finally:
        if server is not None:
            server.stop()
        upstream.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--screens", type=int, default=50, help="screens of the company, all opened at once")
    parser.add_argument("--goals", type=int, default=3, help="goals the company has (1-99)")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between a screen's polls")
    parser.add_argument("--duration", type=float, default=20.0, help="polls start while before this (s)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of Markdown")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="the stand-in's answer time")
    parser.add_argument("--database", default=None, help="e.g. postgresql://postgres@127.0.0.1:5432/bench")
    parser.add_argument(
        "--shared-key", action="store_true", help="one partner key for every screen (default: one each)"
    )
    parser.add_argument("--redis", default=None, help="REDIS_URL for the app, e.g. redis://127.0.0.1:6379/14")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    if args.screens < 1 or not 1 <= args.goals <= 99 or args.poll <= 0 or args.duration <= 0:
        parser.error("--screens >= 1, --goals 1-99, --poll and --duration > 0")
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the finally blocks stop the stand-in and gunicorn.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.command_line = " ".join(
        [".venv/bin/python", "bench/dashboard.py", *[shlex.quote(a) for a in (argv or sys.argv[1:])]]
    )
    workdir = Path(tempfile.mkdtemp(prefix="pd-dashboard-"))
    print(f"# {args.command_line}\n# work directory {workdir}", file=sys.stderr, flush=True)
    try:
        report = run(args, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2) if args.json else markdown(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
