"""Private PostgreSQL and Redis servers that a test starts, stops and starts again itself: the fault tests
take them down, which must never happen to the machine's own (other suites use those at the same time).

Each server runs as a tests/procs.py `Proc` (its output is searched for secrets at the end of the run), binds
to 127.0.0.1 on a free port, keeps that port across restarts (the app's URL stays valid), and `close()`
leaves no process and no data behind. Where the binaries are missing (a fresh laptop) `require()` skips the
test with the reason, except under CI, where a missing server is a failure: the same rule as the Redis tests.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from glob import glob
from pathlib import Path

import pytest

from .procs import HOST, Proc, wait_until


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS's pick, released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def require(what: str, found: str | None) -> str:
    """`found` (a binary's path), or skip the test saying what is missing; under CI=true, fail instead."""
    if found:
        return found
    reason = f"{what} is not installed"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the fault tests (install it)", pytrace=False)
    pytest.skip(reason)


# -- Redis -----------------------------------------------------------------------------------------------
def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """`redis-server` with no persistence on a port of its own; `stop()` kills it (its data goes with it, as
    with a Redis that restarts without persistence), `start()` brings it back on the same port."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.binary = require("redis-server", redis_server_binary())
        self.log_dir = log_dir
        self.port = port or free_port()
        self.proc: Proc | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def start(self, timeout: float = 10) -> None:
        assert self.proc is None, "already running"
        argv = [self.binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        self.starts += 1
        self.proc = Proc(argv, {}, self.log_dir / f"redis-{self.port}-{self.starts}.log")
        try:
            self.proc.wait_for_output(r"Ready to accept connections", timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Gone at once, as a crashed or killed Redis is: SIGKILL, nothing saved."""
        if self.proc is not None:
            self.proc.stop(signal.SIGKILL, grace=5)
            self.proc = None
        wait_until(lambda: not _answers(self.port), 5, what=f"port {self.port} to close")

    def pause(self) -> None:
        """Hung, as behind a network partition: connections stay open and nothing answers (SIGSTOP)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        self.stop()


# -- PostgreSQL --------------------------------------------------------------------------------------------
def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian's layout, then whatever is on PATH)."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


class PostgresServer:
    """A throwaway cluster (initdb into a temporary directory, trust authentication, no fsync) served by
    `postgres` in the foreground on a port of its own. initdb and the server refuse to run as root: then
    both run as the `postgres` user, which owns the cluster's directory.

    `stop()` is PostgreSQL's fast shutdown (SIGINT: open sessions are ended, the app's pooled connections
    go stale); `start()` serves the same data directory on the same port again."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        found = postgres_bin_dir()
        self.bin = Path(require("PostgreSQL (initdb, postgres)", str(found) if found else None))
        self.log_dir = log_dir
        self.port = port or free_port()
        self.proc: Proc | None = None
        self.starts = 0
        # Outside pytest's own temporary tree: as root that tree is closed to the `postgres` user.
        self.root = Path(tempfile.mkdtemp(prefix="pd_app-pg-"))
        self.data = self.root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                require("a `postgres` user (PostgreSQL will not run as root)", None)
                raise
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
        init = [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]
        init += ["--no-sync", "--encoding=UTF8", "--locale=C"]
        done = subprocess.run(self._as + init, capture_output=True, text=True, timeout=60, cwd=self.root)
        if done.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            raise AssertionError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def start(self, timeout: float = 20) -> None:
        assert self.proc is None, "already running"
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root)]
        for setting in (
            f"listen_addresses={HOST}",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=60",
            "shared_buffers=16MB",
        ):
            argv += ["-c", setting]
        self.starts += 1
        self.proc = Proc(self._as + argv, {}, self.log_dir / f"postgres-{self.port}-{self.starts}.log")
        try:
            self.proc.wait_for_output(r"ready to accept connections", timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Fast shutdown: every session is ended at once, nothing is lost that was committed."""
        if self.proc is not None:
            self.proc.stop(signal.SIGINT, grace=15)
            self.proc = None
        wait_until(lambda: not _answers(self.port), 5, what=f"port {self.port} to close")

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; its SQLAlchemy URL."""
        import psycopg

        dsn = f"host={HOST} port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
