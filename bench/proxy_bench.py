"""Throughput and latency of the Goals proxy under gunicorn's production settings, against a slow Pipedrive.

    .venv/bin/python bench/proxy_bench.py                      # `make bench`: SQLite, 1/50/200/300 clients
    .venv/bin/python bench/proxy_bench.py --postgres postgresql://postgres@127.0.0.1:5432/bench

What runs, all on 127.0.0.1 and stopped at the end:
- the Pipedrive sandbox as its own process, answering every API call after `api_delay_s` (0.2 s, Pipedrive's
  typical latency), with its burst limit and daily budget raised out of the way;
- the app: `gunicorn app:app -c gunicorn.conf.py` with the production worker settings (4 workers x 64 gthread
  threads), one installation and one partner key, the goals cache off so every request goes upstream;
- N closed-loop clients (threads, one keep-alive connection each) calling GET /api/v1/goals/find for a warm-up
  and then a measured window.

Per run it reports requests/s, latency percentiles, errors, how many requests the clients had in flight
at once, how many calls were waiting in the sandbox at once (from its call log: each call stays there at
least the 0.2 s it sleeps), and the CPU each party used. A "direct" run per N drives the sandbox itself
with the same clients, to show whether the sandbox (not the app) is the limit.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `pd_app` and the process helpers importable

from cryptography.fernet import Fernet  # noqa: E402

from pd_app.config import normalize_database_url  # noqa: E402
from pd_app.migrate import upgrade  # noqa: E402
from tests.procs import AppDatabase, GunicornProcess, SandboxProcess, children_of  # noqa: E402

API_DELAY_S = 0.2
WORKERS, THREADS = 4, 64  # gunicorn.conf.py's defaults (WEB_CONCURRENCY, GUNICORN_THREADS)
COMPANY, USER = 1001, 2001
FIND = "/api/v1/goals/find"
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- measuring -----------------------------------------------------------------------------------------------
@dataclass
class Run:
    label: str
    clients: int
    duration: float
    latencies: list[float] = field(default_factory=list)  # seconds, of the requests completed in the window
    errors: dict[str, int] = field(default_factory=dict)
    peak_in_flight: int = 0
    upstream_peak: int | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # share of one core, per party
    window: tuple[float, float] = (0.0, 0.0)  # the measured window, wall-clock seconds

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def drive(run: Run, url: str, headers: dict[str, str], warmup: float) -> None:
    """`run.clients` threads, each sending its next request as soon as the last one is answered."""
    parts = urlsplit(url)
    clients, duration = run.clients, run.duration
    lock = threading.Lock()
    state = {"in_flight": 0}
    ready = threading.Barrier(clients + 1)
    times: dict[str, float] = {}

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        ready.wait(30)
        measure_from, stop_at = times["measure_from"], times["stop_at"]
        while True:
            started = time.time()
            if started >= stop_at:
                break
            with lock:
                state["in_flight"] += 1
                if started >= measure_from:
                    run.peak_in_flight = max(run.peak_in_flight, state["in_flight"])
            error = None
            try:
                conn.request("GET", parts.path + FIND, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    error = f"HTTP {resp.status}"
                if resp.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
                conn.close()
            ended = time.time()
            with lock:
                state["in_flight"] -= 1
                if measure_from <= ended <= stop_at:
                    if error is None:
                        run.latencies.append(ended - started)
                    else:
                        run.errors[error] = run.errors.get(error, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    now = time.time()
    times["measure_from"] = now + warmup
    times["stop_at"] = now + warmup + duration
    run.window = (times["measure_from"], times["stop_at"])
    ready.wait(30)
    for t in threads:
        t.join(duration + warmup + 60)


def cpu_seconds(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, every process), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


@contextmanager
def cpu_meter(run: Run, parties: dict[str, Callable[[], set[int]]], warmup: float) -> Iterator[None]:
    """CPU used by each party during the measured window (sampled from /proc after the warm-up), and by
    everything else on the machine ("others": anything there makes the run's numbers lower than they'd be)."""
    result: dict[str, float] = {}

    def sample() -> None:
        time.sleep(warmup)
        pids = {name: find() for name, find in parties.items()}
        before = {name: cpu_seconds(p) for name, p in pids.items()}
        machine_before = machine_busy_seconds()
        time.sleep(run.duration)
        machine = machine_busy_seconds() - machine_before
        for name, p in pids.items():
            result[name] = (cpu_seconds(p) - before[name]) / run.duration
        result["others"] = max(0.0, machine / run.duration - sum(result.values()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    yield
    sampler.join(5)
    run.cpu = result


def upstream_peak(calls: list[dict], since: float, until: float) -> int:
    """Most sandbox API calls in progress at once: each was there for at least the API_DELAY_S it slept."""
    edges = []
    for call in calls:
        if call["path"].startswith(FIND) and since <= call["at"] <= until:
            edges += [(call["at"] - API_DELAY_S, 1), (call["at"], -1)]
    level = peak = 0
    for _, step in sorted(edges):
        level += step
        peak = max(peak, level)
    return peak


# -- the processes -------------------------------------------------------------------------------------------
def prepare_database(url: str | None, workdir: Path) -> str:
    url = normalize_database_url(url) if url else f"sqlite:///{workdir / 'bench.sqlite3'}"
    upgrade(url)
    return url


def bench_database(
    database_url: str,
    pd: SandboxProcess,
    workdir: Path,
    clients: list[int],
    warmup: float,
    duration: float,
    workers: int = WORKERS,
    threads: int = THREADS,
) -> list[Run]:
    environ = {
        "PD_APP_ENV": "test",  # production refuses an http:// loopback api_domain, which the sandbox is
        "PUBLIC_URL": "http://127.0.0.1",
        "SECRET_KEY": "bench-secret-key-0123456789",
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "PIPEDRIVE_CLIENT_ID": CLIENT_ID,
        "PIPEDRIVE_CLIENT_SECRET": CLIENT_SECRET,
        "PIPEDRIVE_OAUTH_URL": pd.url,
        "PIPEDRIVE_API_DOMAINS": pd.url,
        "GOALS_CACHE_TTL": "0",  # measure the proxy, not the cache: every request goes to the sandbox
    }
    db = AppDatabase(environ)
    grant = pd.install(COMPANY, USER)
    db.install(grant, COMPANY, USER)
    key = db.create_key(COMPANY)
    db.close()
    backend = database_url.split(":", 1)[0].split("+", 1)[0]
    label = f"app ({backend})"
    if (workers, threads) != (WORKERS, THREADS):
        label = f"app ({backend}, {workers}x{threads})"
    server = GunicornProcess(
        workdir / f"gunicorn-{backend}-{workers}x{threads}.log", environ, workers=workers, threads=threads
    )
    runs = []
    try:
        for n in clients:
            pd.control("DELETE", "/calls")
            run = Run(label, n, duration)
            parties = {
                "app": lambda: children_of(server.pid) | {server.pid},
                "sandbox": lambda: {pd.pid},
                "clients": lambda: {os.getpid()},
            }
            with cpu_meter(run, parties, warmup):
                drive(run, server.url, {"x-api-token": key}, warmup)
            run.upstream_peak = upstream_peak(pd.calls(FIND), *run.window)
            report(run)
            runs.append(run)
    finally:
        server.stop()
    if any(run.errors for run in runs):
        print(f"\n# the app's errors ({backend}), most frequent first:\n{app_errors(server.output())}\n")
    return runs


def bench_sandbox_direct(pd: SandboxProcess, clients: list[int], warmup: float, duration: float) -> list[Run]:
    token = pd.install(COMPANY, USER)["access_token"]
    runs = []
    for n in clients:
        run = Run("sandbox direct", n, duration)
        parties = {"sandbox": lambda: {pd.pid}, "clients": lambda: {os.getpid()}}
        pd.control("DELETE", "/calls")
        with cpu_meter(run, parties, warmup):
            drive(run, pd.url, {"Authorization": f"Bearer {token}"}, warmup)
        run.upstream_peak = upstream_peak(pd.calls(FIND), *run.window)
        report(run)
        runs.append(run)
    return runs


def app_errors(log: str) -> str:
    """The distinct last lines of the tracebacks the app logged, counted."""
    counts: dict[str, int] = {}
    for line in log.splitlines():
        if line.startswith("{") and '"level": "error"' in line:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            lines = (entry.get("exc") or entry.get("msg") or "?").strip().splitlines()
            # The exception's own line: skip SQLAlchemy's trailing "[SQL: ...]" and "(Background ...)".
            text = next((ln for ln in reversed(lines) if not ln.startswith(("(Background", "[", " "))), "?")
            counts[text[:200]] = counts.get(text[:200], 0) + 1
    return "\n".join(f"#   {n} x {text}" for text, n in sorted(counts.items(), key=lambda kv: -kv[1]))


# -- output --------------------------------------------------------------------------------------------------
HEADER = (
    "| target | clients | req/s | p50 ms | p95 ms | p99 ms | errors | peak in flight (clients) "
    "| peak upstream in flight | CPU (1.0 = one core) |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def row(run: Run) -> str:
    ms = lambda p: f"{run.percentile(p) * 1000:.0f}"  # noqa: E731
    errors = sum(run.errors.values())
    error_text = f"{errors} ({', '.join(f'{k}: {v}' for k, v in run.errors.items())})" if errors else "0"
    cpu = ", ".join(f"{name} {share:.2f}" for name, share in run.cpu.items())
    if run.ok and "app" in run.cpu:
        cpu += f" ({run.cpu['app'] * run.duration / run.ok * 1000:.1f} ms app CPU/request)"
    upstream = "-" if run.upstream_peak is None else str(run.upstream_peak)
    return (
        f"| {run.label} | {run.clients} | {run.ok / run.duration:.0f} | {ms(50)} | {ms(95)} | {ms(99)} "
        f"| {error_text} | {run.peak_in_flight} | {upstream} | {cpu} |"
    )


def report(run: Run) -> None:
    print(row(run), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,50,200,300", help="comma-separated numbers of clients")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring each run")
    parser.add_argument(
        "--postgres", default=os.environ.get("BENCH_POSTGRES_URL"), help="also run on this database"
    )
    parser.add_argument("--postgres-clients", default="200", help="clients for the PostgreSQL runs")
    parser.add_argument(
        "--threads", type=int, action="append", default=[], help="also run the app with N threads per worker"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs (printed: where)")
    parser.add_argument("--no-direct", action="store_true", help="skip the runs against the sandbox alone")
    args = parser.parse_args(argv)
    clients = [int(n) for n in args.clients.split(",") if n.strip()]

    print(f"# proxy bench: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {platform.node()}, {os.cpu_count()} CPUs")
    print(f"# gunicorn {WORKERS} workers x {THREADS} threads; sandbox api_delay_s={API_DELAY_S}")
    print(f"# warm-up {args.warmup:g} s, measured {args.duration:g} s per run\n")
    print(HEADER, flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="pd-bench-"))
    if args.keep:
        print(f"# logs and the SQLite database are kept in {workdir}\n")
    pd = SandboxProcess(
        workdir / "sandbox.log",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri="http://127.0.0.1/oauth/callback",
    )
    try:
        pd.knobs(api_delay_s=API_DELAY_S, burst_limit=10**9, daily_budget=10**12)
        bench_database(prepare_database(None, workdir), pd, workdir, clients, args.warmup, args.duration)
        for threads in args.threads:
            database_url = prepare_database(None, workdir)
            bench_database(database_url, pd, workdir, clients, args.warmup, args.duration, WORKERS, threads)
        if args.postgres:
            pg_clients = [int(n) for n in args.postgres_clients.split(",") if n.strip()]
            database_url = prepare_database(args.postgres, workdir)
            bench_database(database_url, pd, workdir, pg_clients, args.warmup, args.duration)
        if not args.no_direct:
            bench_sandbox_direct(pd, clients, args.warmup, args.duration)
    finally:
        pd.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
