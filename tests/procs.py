"""Real processes for the multi-process tests and the benchmark: the sandbox on its own, the app under
gunicorn, and the in-process steps that give them an installation to serve. Everything binds to 127.0.0.1
on a port the OS picks, every wait is bounded, and `stop()` leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, select, text, update

from pd_app import create_app
from pd_app.auth import create_key
from pd_app.config import normalize_database_url
from pd_app.db import get_session
from pd_app.install.identity import Identity
from pd_app.migrate import upgrade
from pd_app.models import Base, Installation, utcnow
from pd_app.tokens.store import save_grant

from . import logscan

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# What subprocesses inherit from us; everything else (PD_*, PIPEDRIVE_*, DATABASE_URL...) is set explicitly.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """Poll until `predicate()` is truthy and return its value; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


class Proc:
    """A subprocess in its own process group, its output in a log file (a pipe nobody reads would fill up
    and block it)."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        logscan.SCAN.add_file(log_path)  # searched for secrets at the end of the run
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop())
        base = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**base, **env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match[str]:
        rx = re.compile(pattern)

        def found() -> re.Match[str] | None:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.popen.args[:4]} exited early:\n{self.tail()}")
            return rx.search(self.output())

        try:
            return wait_until(found, timeout, what=f"/{pattern}/ in the output")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None

    def stop(self, signum: int = signal.SIGTERM, grace: float = 5.0) -> None:
        """Ask politely, wait, then SIGKILL the whole process group (workers included). Idempotent."""
        try:
            if self.popen.poll() is None:
                self.popen.send_signal(signum)
                try:
                    self.popen.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.pid, signal.SIGKILL)  # children that outlived their parent
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                pass
        finally:
            self._log.close()


class SandboxProcess(Proc):
    """`python -m pd_app.sandbox` on a port of its own, and its /_sandbox control surface."""

    def __init__(self, log_path: Path, *, client_id: str, client_secret: str, redirect_uri: str) -> None:
        argv = [sys.executable, "-m", "pd_app.sandbox", "--host", HOST, "--port", "0"]
        argv += ["--client-id", client_id, "--client-secret", client_secret, "--redirect-uri", redirect_uri]
        super().__init__(argv, {"PYTHONUNBUFFERED": "1"}, log_path)
        try:
            self.url = self.wait_for_output(r"listening on (http://\S+)", 15).group(1)
        except BaseException:
            self.stop()
            raise
        self.http = requests.Session()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.http.request(method, f"{self.url}/_sandbox{path}", json=body, timeout=10)
        assert resp.status_code == 200, f"{method} /_sandbox{path}: {resp.status_code} {resp.text}"
        return resp.json()

    def knobs(self, **values: Any) -> dict[str, Any]:
        return self.control("POST", "/knobs", values)

    def install(self, company_id: int, user_id: int) -> dict[str, Any]:
        return self.control("POST", "/install", {"company_id": company_id, "user_id": user_id})

    def expire(self, company_id: int, user_id: int) -> int:
        return self.control("POST", "/tokens/expire", {"company_id": company_id, "user_id": user_id})[
            "expired"
        ]

    def calls(self, path_prefix: str = "", **match: Any) -> list[dict[str, Any]]:
        return [
            c
            for c in self.control("GET", "/calls")
            if c["path"].startswith(path_prefix) and all(c.get(k) == v for k, v in match.items())
        ]

    def reset(self) -> None:
        self.control("POST", "/reset")

    def stop(self, signum: int = signal.SIGTERM, grace: float = 5.0) -> None:
        if hasattr(self, "http"):
            self.http.close()
        super().stop(signum, grace)


class GunicornProcess(Proc):
    """`gunicorn app:app -c gunicorn.conf.py` as the Procfile runs it, bound to a port the OS picks. A worker
    class, when given, overrides gunicorn.conf.py's choice; `wsgi_app` serves another application (the bench's
    floor) under the same settings."""

    def __init__(
        self,
        log_path: Path,
        env: Mapping[str, str],
        *,
        workers: int,
        threads: int,
        worker_class: str | None = None,
        wsgi_app: str = "app:app",
        start_timeout: float = 20,
    ) -> None:
        env = {
            **env,
            "GUNICORN_BIND": f"{HOST}:0",
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1",
        }
        # --no-control-socket: gunicorn's default control socket is one path per user, which two servers
        # at once (tests, a bench, a developer's `make run`) would fight over.
        argv = [sys.executable, "-m", "gunicorn", wsgi_app, "-c", "gunicorn.conf.py", "--no-control-socket"]
        if worker_class:
            argv += ["--worker-class", worker_class]
        super().__init__(argv, env, log_path)
        self.workers = workers
        try:
            self.url = self.wait_for_output(r"Listening at: (http://[\d.]+:\d+)", start_timeout).group(1)
            wait_until(self._healthy, start_timeout, 0.1, "GET /healthz")
            wait_until(lambda: len(self.worker_pids()) == workers, start_timeout, 0.1, f"{workers} workers")
        except BaseException as exc:
            log = self.tail()
            self.stop()
            raise AssertionError(f"gunicorn did not come up: {exc}\n{log}") from None

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def worker_pids(self) -> set[int]:
        return children_of(self.pid)

    def stop(self, signum: int = signal.SIGINT, grace: float = 5.0) -> None:
        # SIGINT is gunicorn's quick shutdown (about a second); SIGTERM would wait up to graceful_timeout.
        super().stop(signum, grace)


# -- /proc (Linux): which process is which ------------------------------------------------------------------
def children_of(pid: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may contain spaces; the parent pid is the 2nd field after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            pids.add(int(entry.name))
    return pids


def _socket_inodes(local_port: int, remote_port: int) -> set[str]:
    """Inodes of the IPv4 TCP sockets going from local_port to remote_port on 127.0.0.1."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == remote_port:
            inodes.add(inode)
    return inodes


def pid_serving(candidates: set[int], server_port: int, client_port: int) -> int | None:
    """Which of `candidates` holds the server side of the TCP connection from client_port to server_port."""
    inodes = _socket_inodes(server_port, client_port)
    for pid in candidates:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    return None


# -- the database they share -------------------------------------------------------------------------------
def migrated_database(url: str | None, folder: Path) -> str:
    """A database at the migrations' head with nothing in it: `url`'s (its tables dropped first), or a new
    SQLite file in `folder`."""
    if url is None:
        url = f"sqlite:///{folder / 'pd_app.sqlite3'}"
    else:
        url = normalize_database_url(url)
        engine = create_engine(url)
        with engine.begin() as conn:
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        engine.dispose()
    upgrade(url)
    return url


def empty_tables(url: str) -> None:
    """Every row of the app's tables gone, the schema kept."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


# -- the installation the processes serve ------------------------------------------------------------------
class AppDatabase:
    """The app's own code, in this process, against the database the gunicorn workers use."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.app = create_app(environ=dict(environ))

    def close(self) -> None:
        self.app.extensions["pd_client"].close()
        self.app.extensions["pd_db"]["engine"].dispose()

    def install(
        self, token_response: dict[str, Any], company_id: int, user_id: int, admin: bool = True
    ) -> None:
        identity = Identity(company_id, user_id, "acme", "Acme Sales Ltd", "Ada Admin", None, admin)
        with self.app.app_context():
            save_grant(get_session(), identity, token_response)

    def create_key(self, company_id: int, user_id: int | None = None) -> str:
        with self.app.app_context():
            _row, key = create_key(get_session(), company_id=company_id, user_id=user_id, name="stampede")
            return key

    def make_due(self, company_id: int, user_id: int) -> None:
        """Put the stored access token's expiry in the past, so the next call must refresh it."""
        with self.app.app_context():
            session = get_session()
            session.execute(
                update(Installation)
                .where(Installation.company_id == company_id, Installation.user_id == user_id)
                .values(access_token_expires_at=utcnow() - timedelta(seconds=5))
            )
            session.commit()

    def installation(self, company_id: int, user_id: int) -> Installation:
        with self.app.app_context():
            session = get_session()
            inst = session.scalar(
                select(Installation).where(
                    Installation.company_id == company_id, Installation.user_id == user_id
                )
            )
            assert inst is not None
            session.expunge(inst)
            return inst
