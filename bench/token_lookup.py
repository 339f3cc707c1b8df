"""Token lookup latency at 100,000 installations: partner key -> the installation whose token serves it.

    .venv/bin/python bench/token_lookup.py --database postgresql://postgres@127.0.0.1:5432/bench_tokens

Seeds (once; reused while the counts match) 100,000 installations, one per company, and 100,000
company-wide partner keys, each bound to its company's installation, bulk-inserted with SQLAlchemy Core. The
token columns hold placeholder text: the timed path is the database resolution (key row, hash check,
installation row), not decryption. Every key's `last_used_at` is set to now before timing, so the
once-a-minute "last used" write of a key in steady use stays out of the timed path (it is counted separately
when it happens: see "writes").

Then `--lookups` (2,000) keys picked at random are resolved one by one, each in its own app context (a
request's session: opened on first use, closed at teardown), timing only `resolve()` below. It reports
p50/p90/p99/max and the SQL statements each lookup ran.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# -- the lookup under test: swap this adapter (and its label) when the hot path changes ------------------
LABEL = "one statement: auth._from_key (key -> installation -> token and cache generation)"


def resolve(session, key: str):
    """The request's credential -> the installation that serves it, as the hot path does it."""
    from pd_app.auth import _from_key

    return _from_key(key)[1]


# ---------------------------------------------------------------------------------------------------------
from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import create_engine, delete, event, func, insert, select, update  # noqa: E402

from bench.proxy_bench import create_postgres_database  # noqa: E402
from pd_app import create_app  # noqa: E402
from pd_app.auth import hash_key  # noqa: E402
from pd_app.config import normalize_database_url  # noqa: E402
from pd_app.db import get_session  # noqa: E402
from pd_app.migrate import upgrade  # noqa: E402
from pd_app.models import Installation, PartnerKey  # noqa: E402

BASE_COMPANY = 50_000_000  # bench companies: BASE_COMPANY + i, far from any other test's ids
CHUNK = 10_000


def key_for(i: int) -> str:
    """The i-th bench key, reproducible so a reused database needs no list of keys."""
    secret = hashlib.sha256(f"bench-key-{i}".encode()).hexdigest()[:43]
    return f"pdk_{i:08x}.{secret}"


def seed(url: str, n: int) -> float:
    """Make sure exactly n bench installations and keys exist; returns the seconds spent seeding (0 if
    reused)."""
    engine = create_engine(url)
    inst_t, key_t = Installation.__table__, PartnerKey.__table__
    bench_companies = inst_t.c.company_id >= BASE_COMPANY
    with engine.begin() as conn:
        have_inst = conn.scalar(select(func.count()).select_from(inst_t).where(bench_companies))
        have_keys = conn.scalar(  # bound keys only (a key is served by the installation it is bound to)
            select(func.count())
            .select_from(key_t)
            .where(key_t.c.company_id >= BASE_COMPANY, key_t.c.installation_id.is_not(None))
        )
    started = time.perf_counter()
    if have_inst == n and have_keys == n:
        engine.dispose()
        return 0.0
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(delete(key_t).where(key_t.c.company_id >= BASE_COMPANY))
        conn.execute(delete(inst_t).where(bench_companies))
        for lo in range(0, n, CHUNK):
            rows = range(lo, min(n, lo + CHUNK))
            conn.execute(
                insert(inst_t),
                [
                    {
                        "company_id": BASE_COMPANY + i,
                        "user_id": 1_000_000 + i,
                        "company_domain": f"company{i}",
                        "company_name": f"Company {i}",
                        "user_name": f"User {i}",
                        "user_email": f"user{i}@example.com",
                        "is_admin": True,
                        "scopes": "base,goals:full",
                        "api_domain": f"https://company{i}.pipedrive.com",
                        "access_token_enc": "placeholder-not-decrypted-in-the-timed-path-" + "x" * 140,
                        "refresh_token_enc": "placeholder-not-decrypted-in-the-timed-path-" + "y" * 140,
                        "access_token_expires_at": now + timedelta(days=365),
                        "status": "active",
                        "version": 1,
                        "installed_at": now,
                        "updated_at": now,
                    }
                    for i in rows
                ],
            )
            conn.execute(
                insert(key_t),
                [
                    {
                        "prefix": key_for(i).partition(".")[0],
                        "key_hash": hash_key(key_for(i)),
                        "name": f"bench key {i}",
                        "company_id": BASE_COMPANY + i,
                        "user_id": None,
                        "scope": "full",
                        "origins": [],
                        "created_at": now,
                        "last_used_at": now,
                    }
                    for i in rows
                ],
            )
        # Each key bound to its company's one installation, as `keys create` binds it.
        conn.execute(
            update(key_t)
            .where(key_t.c.company_id >= BASE_COMPANY)
            .values(
                installation_id=select(inst_t.c.id)
                .where(inst_t.c.company_id == key_t.c.company_id)
                .scalar_subquery()
            )
        )
    if url.startswith("postgresql"):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE installations")
            conn.exec_driver_sql("ANALYZE partner_keys")
    engine.dispose()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/bench_tokens")
    parser.add_argument("--installations", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--warmup", type=int, default=200, help="lookups before timing (pool, caches)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--results", default="", help="append the report to this file")
    args = parser.parse_args(argv)
    url = normalize_database_url(args.database)
    if url.startswith("postgresql"):
        create_postgres_database(url)
    upgrade(url)
    seeded = seed(url, args.installations)
    app = create_app(
        environ={
            "PD_APP_ENV": "test",
            "PUBLIC_URL": "http://127.0.0.1",
            "SECRET_KEY": "bench-secret-key-0123456789",
            "DATABASE_URL": url,
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        }
    )
    engine = app.extensions["pd_db"]["engine"]
    with engine.begin() as conn:  # steady state: every key used within the last minute (no touch write)
        conn.execute(
            update(PartnerKey)
            .where(PartnerKey.company_id >= BASE_COMPANY)
            .values(last_used_at=datetime.now(UTC))
        )
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    rng = random.Random(args.seed)
    picks = [rng.randrange(args.installations) for _ in range(args.warmup + args.lookups)]
    timings, per_lookup, writes = [], [], 0
    for n, i in enumerate(picks):
        with app.app_context():
            session = get_session()
            statements.clear()
            started = time.perf_counter()
            inst = resolve(session, key_for(i))
            elapsed = time.perf_counter() - started
            assert inst.company_id == BASE_COMPANY + i, (inst.company_id, i)
        if n >= args.warmup:
            timings.append(elapsed)
            sql = [s for s in statements if s.strip().upper() not in ("BEGIN", "COMMIT", "ROLLBACK")]
            per_lookup.append(len(sql))
            writes += any(s.lstrip().upper().startswith("UPDATE") for s in sql)
    timings.sort()

    def pct(p: float) -> float:
        return timings[min(len(timings) - 1, max(0, -(-len(timings) * p // 100) - 1))] * 1000

    backend = url.split(":", 1)[0].split("+", 1)[0]
    how = f"seeded in {seeded:.0f} s" if seeded else "reused"
    with engine.connect() as conn:
        server = conn.exec_driver_sql("SHOW server_version").scalar() if backend == "postgresql" else "sqlite"
    command = " ".join([".venv/bin/python", "bench/token_lookup.py", *(argv or sys.argv[1:])])
    text = "\n".join(
        [
            f"### `{command}`",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {backend} {server}, "
            f"{args.installations:,} installations and keys ({how}), "
            f"{args.lookups:,} lookups of random keys after {args.warmup} warm-up lookups, one at a time.",
            "",
            "| lookup | p50 ms | p90 ms | p99 ms | max ms | mean ms | SQL statements per lookup "
            "| lookups that wrote |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| {LABEL} | {pct(50):.2f} | {pct(90):.2f} | {pct(99):.2f} | {timings[-1] * 1000:.2f} "
            f"| {statistics.mean(timings) * 1000:.2f} | {statistics.mean(per_lookup):.1f} | {writes} |",
            "",
        ]
    )
    print(text)
    if args.results:
        with open(args.results, "a") as handle:
            handle.write("\n" + text)
    app.extensions["pd_client"].close()
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
