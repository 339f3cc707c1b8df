"""The Goals proxy under gunicorn's production settings, side by side with direct calls to the upstream.

    .venv/bin/python bench/proxy_bench.py                  # `make bench`: SQLite, gunicorn.conf.py, ~3 min
    .venv/bin/python bench/proxy_bench.py --workers 2 --threads 32
    .venv/bin/python bench/proxy_bench.py --worker-class gevent
    .venv/bin/python bench/proxy_bench.py --models gthread:4x64,gthread:2x32,gevent:2  # worker models
    .venv/bin/python bench/proxy_bench.py --database postgresql://postgres@127.0.0.1:5432/bench
    .venv/bin/python bench/proxy_bench.py --profile       # + a py-spy profile of the 200-in-flight run

What runs, all on 127.0.0.1 and stopped at the end:
- `bench/upstream.py`: an asyncio stand-in for Pipedrive's API, its own process, answering after 0 or 100 ms;
- the app: `gunicorn app:app -c gunicorn.conf.py` (production worker settings unless overridden), with one
  installation whose api_domain is the stand-in, its access token valid for a year (no refresh), and one
  partner key; PD_APP_ENV=test because production refuses an http:// loopback api_domain;
- `bench/load.py` in this process: N closed-loop keep-alive connections, a warm-up, then a measured window.

Each step drives the stand-in directly and then the app with the same clients and the same query:
- concurrency 1, upstream 0 ms: the latency the app adds (app p50/p99 minus direct p50/p99);
- 50 and 200 in flight, upstream 100 ms: rate as a share of the ideal (clients / 0.1 s), p50/p99, errors;
- cache misses (every request has its own `title`, so no two are alike) and cache hits (one request over and
  over, with the default GOALS_CACHE_TTL).
From /proc over each window: CPU of the app (master + workers; per request answered), of the stand-in, of
this process (the load generator) and of everything else, and the instance's summed RSS and PSS, sampled
every 0.1 s (RSS counts shared pages once per process; PSS splits them).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `pd_app`, `bench` and `tests.procs` importable

from cryptography.fernet import Fernet  # noqa: E402

from bench.load import LoadResult, run_load  # noqa: E402
from bench.procstat import Meter, Usage, machine_facts, postgres_backends, wait_for_quiet  # noqa: E402
from bench.pyspy_summary import markdown as pyspy_markdown  # noqa: E402
from pd_app.config import normalize_database_url  # noqa: E402
from pd_app.migrate import upgrade  # noqa: E402
from pd_app.pipedrive.api import MAX_EXPIRES_IN_S  # noqa: E402
from tests.procs import AppDatabase, GunicornProcess, Proc  # noqa: E402

COMPANY, USER = 1001, 2001
FIND = "/api/v1/goals/find"
HIT_QUERY = "?is_active=true"
GOALS = {"app": 250.0, "added_p50_ms": 1.0, "added_p99_ms": 3.0, "ratio_200": 0.50, "cpu_ms": 1.0}
RESULTS = ROOT / "bench" / "RESULTS.md"
QUIET_WAIT = [5.0]  # seconds to wait, before each run, for other work on the machine to stop


# -- the processes -------------------------------------------------------------------------------------------
class UpstreamProcess(Proc):
    """bench/upstream.py on a port of its own."""

    def __init__(self, log_path: Path, max_seconds: float) -> None:
        argv = [sys.executable, "bench/upstream.py", "--port", "0", "--max-seconds", str(int(max_seconds))]
        super().__init__(argv, {"PYTHONUNBUFFERED": "1"}, log_path)
        try:
            self.url = self.wait_for_output(r"listening on (http://\S+)", 15).group(1)
        except BaseException:
            self.stop()
            raise

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return json.loads(resp.read())

    def latency(self, ms: float) -> None:
        self.get(f"/_latency?ms={ms:g}")


class AppServer(GunicornProcess):
    """tests/procs.py's gunicorn, with the worker class always named (gunicorn.conf.py picks one by
    DATABASE_URL, and the report must say what ran) and every process of the instance to meter."""

    def __init__(
        self,
        log_path: Path,
        env: dict[str, str],
        workers: int,
        threads: int,
        worker_class: str,
        wsgi_app: str = "app:app",
    ) -> None:
        super().__init__(
            log_path,
            env,
            workers=workers,
            threads=threads,
            worker_class=worker_class,
            wsgi_app=wsgi_app,
            start_timeout=30,
        )

    def pids(self) -> set[int]:
        return self.worker_pids() | {self.pid}


def prepare_database(url: str | None, workdir: Path) -> str:
    if not url:
        url = f"sqlite:///{workdir / 'bench.sqlite3'}"
    url = normalize_database_url(url)
    if url.startswith("postgresql"):
        create_postgres_database(url)
    upgrade(url)
    return url


def create_postgres_database(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{parsed.database}"')


def app_environ(database_url: str, upstream_url: str) -> dict[str, str]:
    return {
        "PD_APP_ENV": "test",  # production refuses an http:// loopback api_domain, which the stand-in is
        "PUBLIC_URL": "http://127.0.0.1",
        "SECRET_KEY": "bench-secret-key-0123456789",
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "PIPEDRIVE_CLIENT_ID": "bench-client",
        "PIPEDRIVE_CLIENT_SECRET": "bench-secret",
        "PIPEDRIVE_OAUTH_URL": upstream_url,
        "PIPEDRIVE_API_DOMAINS": upstream_url,
        # Every budget rule stays on (their per-request work is what is measured), with limits the bench's
        # one key and one company do not reach: tens of thousands of requests a minute from one key would
        # otherwise be refused by the defaults (600/minute, 10,000 tokens a day) within a second.
        "KEY_RATE_LIMIT": "100000000/minute",
        "COMPANY_DAILY_TOKEN_CAP": "2000000000",
    }


def seed(environ: dict[str, str], upstream_url: str) -> str:
    """One installation served by the stand-in, its access token valid for a year; one partner key."""
    db = AppDatabase(environ)
    try:
        grant = {
            "access_token": "bench-access-token",
            "refresh_token": "bench-refresh-token",
            "api_domain": upstream_url,
            "expires_in": MAX_EXPIRES_IN_S,
            "scope": "base,goals:full",
        }
        db.install(grant, COMPANY, USER)
        return db.create_key(COMPANY)
    finally:
        db.close()


# -- one measured run ------------------------------------------------------------------------------------
@dataclass
class Run:
    step: str  # "c1", "c50", "c200", "calibration"
    target: str  # "direct", "app miss", "app hit"
    latency_ms: float
    load: LoadResult
    usage: Usage
    upstream_calls: int
    upstream_peak: int

    @property
    def ideal(self) -> float | None:
        return self.load.concurrency / (self.latency_ms / 1000) if self.latency_ms else None

    @property
    def app_cpu_ms(self) -> float | None:
        if "app" not in (self.usage.cpu or {}) or not self.load.ok:
            return None
        # CPU over the window / answers in the window (both measured over the same window).
        return self.usage.cpu["app"] / self.usage.seconds * self.load.duration / self.load.ok * 1000


def measure(
    step: str,
    target: str,
    url: str,
    clients: int,
    latency_ms: float,
    upstream: UpstreamProcess,
    parties: dict[str, Callable[[], set[int]]],
    instance: str | None,
    path: Callable[[int], str] | None,
    headers: dict[str, str],
    warmup: float,
    duration: float,
    on_window: tuple[Callable[[], None], Callable[[], None]] | None = None,
) -> Run:
    upstream.latency(latency_ms)
    _RUN[0] = next(_RUN_IDS)
    if QUIET_WAIT[0]:
        busy = wait_for_quiet(max_wait=QUIET_WAIT[0])
        if busy >= 0.25:
            print(f"# the machine was still busy ({busy:.2f} cores) before this run", flush=True)
    upstream.get("/_stats/reset")
    meter = Meter(parties, instance)

    def start() -> None:
        meter.start()
        if on_window:
            on_window[0]()

    def stop() -> None:
        meter.stop()
        if on_window:
            on_window[1]()

    load = asyncio.run(
        run_load(url, clients, duration, warmup, path=path, headers=headers, on_start=start, on_stop=stop)
    )
    stats = upstream.get("/_stats")
    run = Run(step, target, latency_ms, load, meter.usage, stats["requests"], stats["peak_in_flight"])
    print(row(run), flush=True)
    return run


_RUN_IDS = itertools.count(1)
_RUN = [0]


def miss_path(n: int) -> str:
    """Every request of every run its own `title`: the load generator numbers each run's requests from 1, and
    a title seen by an earlier run within GOALS_CACHE_TTL would be a cache hit in a "miss" row (measure()
    moves `_RUN` on for each run)."""
    return f"{FIND}?is_active=true&title=bench-{_RUN[0]}-{n}"


def hit_path(_n: int) -> str:
    return FIND + HIT_QUERY


# -- output ------------------------------------------------------------------------------------------------
HEADER = (
    "| step | target | upstream ms | clients | req/s | of ideal | p50 ms | p99 ms | added p50 / p99 ms "
    "| errors | upstream calls (peak in flight) | app CPU ms/req | CPU (cores) "
    "| peak RSS MB (PSS) |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}" if seconds < 0.1 else f"{seconds * 1000:.0f}"


def row(run: Run, direct: Run | None = None) -> str:
    load, usage = run.load, run.usage
    ideal = f"{load.rate / run.ideal:.2f}" if run.ideal else "-"
    added = "-"
    if direct is not None and run.target != "direct":
        added = f"{_ms(load.percentile(50) - direct.load.percentile(50))} / "
        added += f"{_ms(load.percentile(99) - direct.load.percentile(99))}"
    errors = load.failed
    error_text = "0"
    if errors:
        kinds = {**{f"HTTP {s}": n for s, n in load.statuses.items() if s != 200}, **load.errors}
        error_text = f"{errors} ({', '.join(f'{k}: {v}' for k, v in kinds.items())})"
    names = {"app": "app", "db": "db", "upstream": "stand-in", "load": "load"}
    cpu = ", ".join(f"{names[p]} {usage.share(p):.2f}" for p in names if p in (usage.cpu or {}))
    cpu += f", others {usage.others / usage.seconds:.2f}"
    app_cpu = f"{run.app_cpu_ms:.2f}" if run.app_cpu_ms is not None else "-"
    memory = "-"
    if usage.peak_rss_kb:
        memory = f"{usage.peak_rss_kb / 1024:.0f} ({usage.peak_pss_kb / 1024:.0f})"
    return (
        f"| {run.step} | {run.target} | {run.latency_ms:g} | {load.concurrency} | {load.rate:.0f} | {ideal} "
        f"| {_ms(load.percentile(50))} | {_ms(load.percentile(99))} | {added} | {error_text} "
        f"| {run.upstream_calls} ({run.upstream_peak}) | {app_cpu} | {cpu} | {memory} |"
    )


def table(runs: list[Run]) -> str:
    direct = {r.step: r for r in runs if r.target == "direct"}
    return "\n".join([HEADER] + [row(r, direct.get(r.step)) for r in runs])


MODEL_HEADER = (
    "| worker model | added p50 / p99 ms (c=1, 0 ms) | req/s at 200 (100 ms) | of ideal | p50 / p99 ms "
    "| errors | app CPU ms/req | app CPU (cores) | peak RSS MB | peak PSS MB |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def model_row(model: str, c1: Run, c1_direct: Run, c200: Run) -> str:
    added = f"{_ms(c1.load.percentile(50) - c1_direct.load.percentile(50))} / "
    added += f"{_ms(c1.load.percentile(99) - c1_direct.load.percentile(99))}"
    load, usage = c200.load, c200.usage
    rss = max(c1.usage.peak_rss_kb, usage.peak_rss_kb) / 1024
    pss = max(c1.usage.peak_pss_kb, usage.peak_pss_kb) / 1024
    return (
        f"| {model} | {added} | {load.rate:.0f} | {load.rate / (c200.ideal or 1):.2f} "
        f"| {_ms(load.percentile(50))} / {_ms(load.percentile(99))} | {load.failed} "
        f"| {c200.app_cpu_ms or 0:.2f} | {usage.share('app'):.2f} | {rss:.0f} | {pss:.0f} |"
    )


# -- the bench -------------------------------------------------------------------------------------------
@dataclass
class Model:
    worker_class: str
    workers: int
    threads: int

    @classmethod
    def parse(cls, text: str) -> Model:
        """`gthread:4x64`, `gevent:2` (workers; gevent takes gunicorn's worker_connections, 1000)."""
        kind, _, size = text.partition(":")
        workers, _, threads = size.partition("x")
        return cls(kind, int(workers or 4), int(threads or (64 if kind == "gthread" else 1)))

    def __str__(self) -> str:
        if self.worker_class == "gthread":
            return f"gthread {self.workers}x{self.threads}"
        return f"{self.worker_class} {self.workers} workers"


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.upstream = UpstreamProcess(workdir / "upstream.log", max_seconds=3600)
        try:
            self.database_url = prepare_database(args.database, workdir)
            self.environ = app_environ(self.database_url, self.upstream.url)
            self.key = seed(self.environ, self.upstream.url)
        except BaseException:
            self.upstream.stop()
            raise
        self.direct_headers = {"Authorization": "Bearer bench-access-token"}
        self.app_headers = {"x-api-token": self.key}
        self.me = os.getpid()
        self.pg_database = (
            self.database_url.rsplit("/", 1)[1] if self.database_url.startswith("postgres") else ""
        )

    def stop(self) -> None:
        self.upstream.stop()

    def _direct(self, step: str, clients: int, latency_ms: float, path=miss_path) -> Run:
        parties = {"upstream": lambda: {self.upstream.pid}, "load": lambda: {self.me}}
        a = self.args
        return measure(
            step, "direct", self.upstream.url, clients, latency_ms, self.upstream, parties, None, path,
            self.direct_headers, a.warmup, a.duration,
        )  # fmt: skip

    def _app(
        self,
        server: AppServer,
        step: str,
        target: str,
        clients: int,
        latency_ms: float,
        path: Callable[[int], str],
        on_window: tuple[Callable[[], None], Callable[[], None]] | None = None,
        duration: float | None = None,
    ) -> Run:
        parties = {"app": server.pids, "upstream": lambda: {self.upstream.pid}, "load": lambda: {self.me}}
        if self.pg_database:
            parties["db"] = lambda: postgres_backends(self.pg_database)
        a = self.args
        return measure(
            step, target, server.url, clients, latency_ms, self.upstream, parties, "app", path,
            self.app_headers, a.warmup, duration or a.duration, on_window,
        )  # fmt: skip

    def start_app(self, model: Model) -> AppServer:
        log = self.workdir / f"gunicorn-{model.worker_class}-{model.workers}x{model.threads}.log"
        return AppServer(log, self.environ, model.workers, model.threads, model.worker_class)

    def floor(self, model: Model) -> list[Run]:
        """bench/floor_app.py (bare Flask + pooled urllib3) under the same settings: c1 and c200 misses."""
        log = self.workdir / "gunicorn-floor.log"
        env = {**self.environ, "FLOOR_UPSTREAM": self.upstream.url}
        server = AppServer(
            log, env, model.workers, model.threads, model.worker_class, wsgi_app="bench.floor_app:app"
        )
        try:
            return [
                self._app(server, "c1", "floor", 1, 0, miss_path),
                self._app(server, "c200", "floor", 200, 100, miss_path),
            ]
        finally:
            server.stop()
            self.check_log(server)

    def calibration(self) -> list[Run]:
        """The stand-in and the load generator alone, upstream 0 ms: how far above 2,000/s they go."""
        return [self._direct("calibration", n, 0) for n in (50, 200)]

    def full(self, model: Model) -> list[Run]:
        runs = []
        steps = self.args.steps.split(",")
        if "c1" in steps:
            runs.append(self._direct("c1", 1, 0))
        server = self.start_app(model)
        try:
            if "c1" in steps:
                runs.append(self._app(server, "c1", "app miss", 1, 0, miss_path))
                runs.append(self._app(server, "c1", "app hit", 1, 0, hit_path))
            for clients in (50, 200):
                step = f"c{clients}"
                if step not in steps:
                    continue
                runs.append(self._direct(step, clients, 100))
                runs.append(self._app(server, step, "app miss", clients, 100, miss_path))
                runs.append(self._app(server, step, "app hit", clients, 100, hit_path))
            if self.args.profile:
                self.profiled = self.profile(server)
        finally:
            server.stop()
            self.check_log(server)
        return runs

    def model(self, model: Model, c1_direct: Run) -> tuple[Run, Run]:
        server = self.start_app(model)
        try:
            c1 = self._app(server, "c1", f"app miss, {model}", 1, 0, miss_path)
            c200 = self._app(server, "c200", f"app miss, {model}", 200, 100, miss_path)
        finally:
            server.stop()
            self.check_log(server)
        return c1, c200

    def profile(self, server: AppServer) -> tuple[Run, str]:
        """The 200-in-flight cache-miss run again, under `py-spy record --subprocesses` for its window."""
        out = self.workdir / "pyspy.txt"
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        duration = self.args.profile_seconds
        argv = [spy, "record", "--pid", str(server.pid), "--subprocesses", "--gil", "--format", "raw"]
        argv += ["--rate", str(self.args.profile_rate), "--duration", str(int(duration)), "--nonblocking"]
        argv += ["--output", str(out)]
        holder: dict[str, subprocess.Popen] = {}

        log = open(self.workdir / "pyspy.log", "wb")  # noqa: SIM115  (closed below)

        def start() -> None:
            holder["spy"] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

        run = self._app(
            server, "c200", "app miss (py-spy on)", 200, 100, miss_path, (start, lambda: None), duration
        )
        holder["spy"].wait(duration + 30)
        log.close()
        text = out.read_text() if out.exists() else ""
        if self.args.keep_profile:
            Path(self.args.keep_profile).write_text(text)
        spy_log = (self.workdir / "pyspy.log").read_text(errors="replace")
        lagged = [ln for ln in spy_log.splitlines() if "behind in sampling" in ln or "Samples:" in ln]
        summary = pyspy_markdown(text) if text else "py-spy wrote nothing."
        summary += "\npy-spy said: " + (" / ".join(ln.removeprefix("py-spy> ") for ln in lagged[-2:]) or "-")
        print(summary)
        return run, summary

    def check_log(self, server: AppServer) -> None:
        errors = [ln for ln in server.output().splitlines() if '"level": "error"' in ln or "Traceback" in ln]
        if errors:
            print(f"# the app logged {len(errors)} error line(s); the first: {errors[0][:300]}", flush=True)


def report(args: argparse.Namespace, body: str) -> str:
    facts = machine_facts()
    import gunicorn
    import sqlalchemy

    backend = args.database.split(":", 1)[0] if args.database else "sqlite"
    return "\n".join(
        [
            f"### `{args.command_line}`",
            "",
            f"Finished {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; "
            f"{facts['cpus']} CPUs ({facts['cpu model']}), "
            f"{facts['memory']} RAM, Linux {facts['kernel']}, Python {facts['python']}, "
            f"gunicorn {gunicorn.__version__}, SQLAlchemy {sqlalchemy.__version__}, database {backend}; "
            f"warm-up {args.warmup:g} s, measured {args.duration:g} s per row; commit {git_commit()}.",
            "",
            body,
            "",
        ]
    )


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("GUNICORN_THREADS", "64")))
    parser.add_argument(
        "--worker-class",
        default="",
        help="default: what gunicorn.conf.py picks (gthread on SQLite, gevent on PostgreSQL)",
    )
    parser.add_argument(
        "--models",
        default="",
        help="compare worker models instead of the full run: e.g. gthread:4x64,gthread:2x32,gevent:2",
    )
    parser.add_argument("--database", default=None, help="e.g. postgresql://postgres@127.0.0.1:5432/bench")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per row")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each window")
    parser.add_argument("--profile", action="store_true", help="py-spy profile of the 200-in-flight run")
    parser.add_argument("--keep-profile", default="", help="also save py-spy's raw output here")
    parser.add_argument("--profile-rate", type=int, default=20, help="py-spy samples per second")
    parser.add_argument("--profile-seconds", type=float, default=15.0, help="the profiled window")
    parser.add_argument("--no-calibration", action="store_true")
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run bench/floor_app.py (bare Flask + urllib3) under the same settings",
    )
    parser.add_argument("--steps", default="c1,c50,c200", help="which steps of the full run")
    parser.add_argument("--results", default=str(RESULTS), help="append the report here ('' to skip)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--quiet-wait", type=float, default=5.0, help="max seconds to wait for an idle machine before a run"
    )
    args = parser.parse_args(argv)
    QUIET_WAIT[0] = args.quiet_wait
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the finally blocks stop the stand-in and gunicorn.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.command_line = " ".join(
        [".venv/bin/python", "bench/proxy_bench.py", *[shlex.quote(a) for a in (argv or sys.argv[1:])]]
    )
    workdir = Path(tempfile.mkdtemp(prefix="pd-bench-"))
    print(f"# {args.command_line}\n# work directory {workdir}\n", flush=True)
    sections = []
    bench = Bench(args, workdir)
    try:
        calibration = [] if args.no_calibration else bench.calibration()
        if calibration:
            sections.append(
                "Calibration, the stand-in driven directly with upstream 0 ms (headroom above 2,000/s):\n\n"
                + table(calibration)
            )
        if args.models:
            models = [Model.parse(m) for m in args.models.split(",") if m.strip()]
            c1_direct = bench._direct("c1", 1, 0)
            rows, runs = [], [c1_direct]
            for model in models:
                try:
                    c1, c200 = bench.model(model, c1_direct)
                except AssertionError as exc:
                    print(f"# {model}: {exc}", flush=True)
                    rows.append(f"| {model} | did not start: {str(exc).splitlines()[0][:200]} |")
                    continue
                runs += [c1, c200]
                rows.append(model_row(str(model), c1, c1_direct, c200))
            sections.append("Worker models, cache misses:\n\n" + "\n".join([MODEL_HEADER, *rows]))
            sections.append("The runs behind it:\n\n" + table(runs))
        else:
            on_postgresql = (args.database or "").startswith(("postgres://", "postgresql"))
            worker_class = args.worker_class or ("gevent" if on_postgresql else "gthread")
            model = Model(worker_class, args.workers, args.threads)
            runs = bench.full(model)
            if args.floor:
                runs += bench.floor(model)
            sections.append(f"{model}:\n\n" + table(runs))
            if args.profile:
                run, summary = bench.profiled
                sections.append(
                    f"py-spy (`record --subprocesses --gil --nonblocking --rate {args.profile_rate}`: "
                    "the threads holding the GIL) over the window of this extra run:\n\n"
                    + table([run])
                    + "\n\n"
                    + summary
                )
    finally:
        bench.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    text = report(args, "\n\n".join(sections))
    print("\n" + text)
    if args.results:
        with open(args.results, "a") as handle:
            handle.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
