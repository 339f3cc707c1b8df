"""gunicorn settings for `gunicorn app:app` (the Procfile's web process).

A proxied request spends almost all its time waiting on Pipedrive (100-300 ms), not on the CPU. Threads
(`gthread`) let each worker keep many such requests in flight while the GIL is released during network I/O:
4 workers x 64 threads = 256 concurrent requests on 2 cores. Threads rather than gevent because psycopg,
SQLAlchemy's pool and the cryptography bindings work under threads without monkey-patching.
"""

import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '5000')}")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
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
