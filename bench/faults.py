"""Faults under a steady load, in figures: the scenarios of tests/test_faults.py (tests/faults.py), run once
each, with what the load saw (requests sent, answered, by status, no answer) and how long recovery took.

    .venv/bin/python bench/faults.py                      # `make bench-faults`: every scenario, SQLite
    .venv/bin/python bench/faults.py --scenarios redis,postgres --results bench/RESULTS.md

What runs, all on 127.0.0.1 and stopped at the end: the sandbox (`python -m pd_app.sandbox`) as Pipedrive;
pd_app under `gunicorn app:app -c gunicorn.conf.py` (2 workers; gthread x 8 on SQLite, gevent on
PostgreSQL); for the Redis scenario a private `redis-server`, and for the PostgreSQL one a private cluster
(initdb in a temporary directory; as root, run as the `postgres` user), both stopped and started by the
scenario, never the machine's own. The app's database for the other scenarios is a SQLite file in a
temporary directory, or --database (its tables are dropped and made again).

The load (tests/steady.py): a few threads, each with its own keep-alive connection, at a fixed total rate
(8-15 requests/s; a slow request delays its thread's next one, no catch-up burst). The times are from this
machine, which other work shares: read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `pd_app`, `bench` and `tests` importable


from bench.procstat import machine_facts  # noqa: E402
from tests import faults  # noqa: E402
from tests.conftest import CLIENT_ID, CLIENT_SECRET, PUBLIC_URL  # noqa: E402
from tests.procs import SandboxProcess, empty_tables, migrated_database  # noqa: E402
from tests.services import PostgresServer, RedisServer  # noqa: E402
from tests.steady import Tally  # noqa: E402

SCENARIOS = ("redis", "redis-pause", "postgres", "sigterm", "kill-install", "kill-refresh")


def statuses(tally: Tally) -> str:
    return ", ".join(f"{status}: {n}" for status, n in sorted(tally.by_status.items())) or "-"


def unanswered(tally: Tally) -> str:
    return ", ".join(f"{why}: {n}" for why, n in sorted(tally.unanswered.items())) or "0"


def run_one(name: str, rig: faults.Rig, workdir: Path) -> tuple[faults.Report, str, str]:
    """The scenario's report, what the fault did, and how it recovered (both in words with figures)."""
    if name in ("redis", "redis-pause"):
        pause = name == "redis-pause"
        server = RedisServer(workdir)
        try:
            server.start()
            report = faults.redis_restart(rig, server, pause=pause)
        finally:
            server.close()
        m, t = report.marks, report.tally
        during = t.sent_between(m["down"], m["up"])
        took = sorted(s.ended - s.sent for s in during.shots) or [0.0]
        did = (
            f"Redis {'paused (SIGSTOP)' if pause else 'killed'} for {m['up'] - m['down']:.1f} s: "
            f"{during.sent} requests sent meanwhile, {statuses(during)} (p50 {took[len(took) // 2]:.2f} s, "
            f"max {took[-1]:.2f} s); /readyz 200 throughout, `degraded` "
            f"{m['degraded_reported'] - m['down']:.1f} s after the fault"
        )
        healed = (
            f"/readyz `ok` {m['ok_reported'] - m['up']:.1f} s after Redis was back; cache and key limit "
            f"shared again after {m['shared_again'] - m['up']:.1f} s; no worker restarted"
        )
        return report, did, healed
    if name == "postgres":
        server = PostgresServer(workdir)
        try:
            server.start()
            report = faults.postgres_restart(rig, server)
        finally:
            server.close()
        m, t = report.marks, report.tally
        refused = t.where(lambda s: s.status == 503)
        first = min((s.sent for s in refused.shots), default=m["down"])
        last = max((s.ended for s in refused.shots), default=m["down"])
        did = (
            f"PostgreSQL down {m['up'] - m['down']:.1f} s (fast shutdown, restart): {refused.sent} "
            f"answers 503 with Retry-After, from {first - m['down']:+.2f} s to "
            f"{last - m['down']:+.2f} s of the stop"
        )
        healed = (
            f"6 fresh reads in a row answered {m['recovered'] - m['up']:.2f} s after PostgreSQL accepted "
            "connections again; no worker restarted"
        )
        return report, did, healed
    if name == "sigterm":
        report = faults.sigterm(rig)
        m, t = report.marks, report.tally
        in_flight = t.where(lambda s: s.sent < m["term"] < s.ended)
        after = t.where(lambda s: s.sent >= m["term"] and s.label != "healthz")
        arrivals = t.where(lambda s: s.sent >= m["term"] and s.label == "healthz")
        did = (
            f"SIGTERM with {in_flight.sent} requests in flight (Pipedrive answering in 1.5 s): "
            f"{statuses(in_flight)}; the load's requests sent after it: {statuses(after)}, no answer "
            f"{unanswered(after)}; new clients after it (/healthz, a connection each): "
            f"{statuses(arrivals)}, no answer {unanswered(arrivals)}"
        )
        healed = (
            f"master exited {report.seen['exit_code']} {m['master_exited'] - m['term']:.1f} s after SIGTERM "
            "(graceful_timeout 30 s)"
        )
        return report, did, healed
    if name == "kill-install":
        report = faults.kill_mid_install(rig)
        did = (
            "two callbacks' workers SIGKILLed (during the code exchange; during /users/me): no answer for "
            "them, installation rows unchanged / not created"
        )
        healed = f"the same user installed again: {report.seen['install_again'].status_code}, key read 200"
        return report, did, healed
    if name == "kill-refresh":
        report = faults.kill_mid_refresh(rig)
        lost = report.tally.where(lambda s: not s.answered)
        did = (
            f"the worker holding the refresh lock SIGKILLed: {lost.sent} load requests lost with it "
            f"({unanswered(report.tally)}), plus the one that took the lock"
        )
        status, writes = report.seen["installation"]
        healed = (
            f"refreshes at Pipedrive: {report.seen['refresh_statuses']}; installation {status}, "
            f"written {writes}x"
        )
        return report, did, healed
    raise ValueError(name)


def markdown(rows: list[tuple[str, faults.Report, str, str]]) -> str:
    lines = [
        "| scenario | sent | answered | by status | no answer | what the fault did | recovery |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, report, did, healed in rows:
        t = report.tally
        lines.append(
            f"| {name} | {t.sent} | {t.answered} | {statuses(t)} | {unanswered(t)} | {did} | {healed} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--database", default=None, help="the app's database (default: SQLite in a temp dir)")
    parser.add_argument("--results", type=Path, help="append the report to this Markdown file")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    workdir = Path(tempfile.mkdtemp(prefix="pd_app-faults-"))
    started = datetime.now(UTC)
    rows: list[tuple[str, faults.Report, str, str]] = []
    pd = SandboxProcess(
        workdir / "sandbox.log",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=PUBLIC_URL + "/oauth/callback",
    )
    try:
        database_url = migrated_database(args.database, workdir)
        for name in names:
            empty_tables(database_url)
            rig = faults.Rig(pd, workdir, database_url)
            t0 = time.monotonic()
            try:
                report, did, healed = run_one(name, rig, workdir)
            finally:
                rig.close()
            rows.append((name, report, did, healed))
            print(f"{name}: {report.tally.summary()} ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    finally:
        pd.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        print(json.dumps({name: figures(*row) for name, *row in rows}, indent=2))
        return 0
    command = shlex.join(["python", "bench/faults.py", *(sys.argv[1:] if argv is None else argv)])
    facts = machine_facts()
    out = [
        f"### `.venv/bin/{command}`",
        "",
        f"{started:%Y-%m-%d %H:%M} UTC; {facts['cpus']} x {facts['cpu model']}, {facts['memory']}, "
        f"Linux {facts['kernel']}, Python {facts['python']}; database: "
        f"{'SQLite' if args.database is None else 'PostgreSQL'} (the postgres scenario: a private cluster).",
        "",
        markdown(rows),
        "",
    ]
    report_md = "\n".join(out)
    print(report_md)
    if args.results:
        with args.results.open("a") as fh:
            fh.write("\n" + report_md)
    return 0


def figures(report: faults.Report, did: str, healed: str) -> dict:
    t = report.tally
    return {
        "sent": t.sent,
        "answered": t.answered,
        "by_status": {str(k): v for k, v in t.by_status.items()},
        "no_answer": dict(t.unanswered),
        "fault": did,
        "recovery": healed,
    }


if __name__ == "__main__":
    sys.exit(main())
