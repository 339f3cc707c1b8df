"""gunicorn settings for `gunicorn app:app` (the Procfile's web process).

A proxied request spends almost all its time waiting on Pipedrive (100-300 ms), not on the CPU. Threads
(`gthread`) let each worker keep many such requests in flight while the GIL is released during network I/O.
The default, 2 workers x 64 threads (128 requests in flight; WEB_CONCURRENCY and GUNICORN_THREADS change it),
was chosen by measurement (bench/RESULTS.md, "Worker models"): on 2 cores it served as many proxied reads
per second as 4 x 64 at 200 in flight, with as little added latency, and in about 235 MB instead of 410 MB
(each worker holds its own copy of the app). Fewer threads (2 x 32, 4 x 16) cap the requests in flight below
what 100 ms upstream calls need; more (2 x 128) spend the CPU on contention. gevent was no better here and
needs monkey-patching before anything imports ssl, which psycopg, SQLAlchemy's pool and `cryptography` do
not need under threads.
"""

import glob
import os
import shutil
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


def on_exit(server):  # gunicorn hook: the master, at shutdown
    private = os.environ.get(_PRIVATE_DIR_MARK)
    if private and private == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(private, ignore_errors=True)


bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '5000')}")
worker_class = "gthread"
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
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
