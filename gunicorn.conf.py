"""gunicorn settings for `gunicorn app:app` (the Procfile's web process).

A proxied request spends almost all its time waiting on Pipedrive (100-300 ms), not on the CPU, so each worker
keeps many requests in flight. The worker model was chosen by measurement (bench/RESULTS.md, "Worker models"):
- 2 workers, not 4: the same rate at 200 in flight on 2 cores, in about 230 MB instead of 410 MB (each worker
  holds its own copy of the app). WEB_CONCURRENCY changes it.
- On PostgreSQL, `gevent` (1000 connections a worker): no GIL contention between 64 threads, so 0.39-0.55
  of the ideal rate at 200 in flight against 0.24-0.27 for threads in the same hour, and less CPU per
  request. psycopg 3 waits cooperatively under gevent, and gunicorn patches the standard library before
  the app is imported (the master does not import the app, see pd_app/__init__.py).
- On SQLite, `gthread` (GUNICORN_THREADS, default 64): SQLite's busy handler sleeps inside C, so under gevent
  one company's refresh (which holds the write lock while Pipedrive's token endpoint answers) would stop every
  other request of the worker until the 30 s busy timeout; threads wait on their own
  (tests/test_stampede.py, two companies refreshing in one worker).
GUNICORN_WORKER_CLASS overrides the choice.
"""

import glob
import os
import shutil
import sys
import tempfile

# -- /metrics across workers (prometheus_client's multiprocess mode) --------------------------------------
# Each worker writes its metric values to files in PROMETHEUS_MULTIPROC_DIR and /metrics sums all of them, so
# a scrape answered by any worker shows the whole server. prometheus_client picks its mode once, when first
# imported, and the master imports it while loading `logger_class` below (pd_app.gunicorn_logging imports the
# pd_app package): so the variable is set here, at the top of the config, before any of that. An operator's
# own directory is kept (and emptied of old files at start, see on_starting); otherwise a private one is
# made, and removed when the master exits. Kept across a HUP reload: the config runs again, finds the
# variable set, and the new workers add to the same figures.
_PRIVATE_DIR_MARK = "PD_APP_PRIVATE_PROMETHEUS_DIR"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_PRIVATE_DIR_MARK] = tempfile.mkdtemp(
        prefix="pd_app-prometheus-"
    )


def on_starting(server):  # gunicorn hook: the master, once, before any worker
    # The settings are read here first, so a bad value stops the master with one line and exit code 4
    # before any worker is forked. (A worker failing to load would also stop it, but a failure during the
    # master's own start-up arrives outside gunicorn's handler and ends in a traceback.) Only pd_app.config
    # is imported: the master stays without the app.
    from pathlib import Path

    import pd_app
    from pd_app.config import ConfigError, load_settings

    try:
        # Flask's instance folder for the pd_app package (where development secrets are kept).
        load_settings(os.environ, Path(pd_app.__file__).resolve().parents[1] / "instance")
    except ConfigError as exc:
        print(f"pd_app: {exc}", file=sys.stderr)
        on_exit(server)  # not called by gunicorn on this path: remove the private metrics directory
        sys.exit(4)  # gunicorn's "App failed to load" code
    # Files left by an earlier server in the same directory would be added to this one's figures.
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


def child_exit(server, worker):  # gunicorn hook: the master, after a worker exits
    # Drops the dead worker's live-gauge files; its counters and histograms stay and keep being summed, so a
    # restarted worker does not make totals go backwards.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):  # gunicorn hook: each worker, its app loaded, before it serves
    # A deploy's SIGTERM: the master closes its copy of the listening socket and tells the workers, which stop
    # accepting and finish what is in flight. A gthread worker keeps its own copy open until then, so the
    # kernel goes on completing connections that nobody will accept, and resets them all when the copy
    # finally closes: a client cannot tell that reset (nothing was read) from one in the middle of a request.
    # Closed as soon as the worker stops accepting, the socket goes away with the last copy: a new
    # connection is refused at once, which a client or load balancer may safely try elsewhere. (gevent
    # workers close theirs within a second of the signal by themselves.) tests/test_faults.py, SIGTERM.
    stop_accepting = getattr(worker, "set_accept_enabled", None)
    if stop_accepting is None:
        return

    def set_accept_enabled(enabled):
        stop_accepting(enabled)
        if not enabled and not worker.alive:  # the shutdown path, in the worker's main loop
            for listener in worker.sockets:
                listener.close()

    worker.set_accept_enabled = set_accept_enabled


def on_exit(server):  # gunicorn hook: the master, at shutdown
    private = os.environ.get(_PRIVATE_DIR_MARK)
    if private and private == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(private, ignore_errors=True)


bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '5000')}")
# psycopg 3 only (the driver requirements.txt pins, and what these URLs map to): it waits cooperatively.
_on_postgresql = os.environ.get("DATABASE_URL", "").startswith(
    ("postgres://", "postgresql://", "postgresql+psycopg://")
)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or ("gevent" if _on_postgresql else "gthread")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
timeout = 60
graceful_timeout = 30
keepalive = 5
# The access log records the path only (%(U)s), never the query string: the custom UI panel's URL carries
# Pipedrive's JWT and the OAuth callback carries an authorization code.
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
# The error log names the raw URI when a request fails inside gunicorn: this logger drops its query string.
logger_class = "pd_app.gunicorn_logging.QuerylessLogger"
# Requests gunicorn itself refuses (an over-long URL, oversized headers) are answered in the API's JSON
# envelope rather than gunicorn's HTML page.
limit_request_line = 8190  # gunicorn's maximum; a longer line is a 414 envelope (pd_app/gunicorn_errors.py)

from pd_app.gunicorn_errors import install as _json_errors  # noqa: E402

_json_errors()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
