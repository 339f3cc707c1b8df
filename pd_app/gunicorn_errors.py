"""gunicorn's own error answers in the contract's JSON envelope.

A request gunicorn refuses before the app sees it (a request line over `limit_request_line`, too many or too
large headers, a malformed request line) gets gunicorn's small HTML page. gunicorn has no hook for those
answers, so `install()` (called from gunicorn.conf.py, in the master, before any worker is forked) replaces
the one function that writes them. The path is not known at that point (the line may not even have been
read), so every such answer is the envelope: API clients parse it, and a person sees a short JSON message.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util

CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 431: "headers_too_large"}
HINTS = {
    414: "Shorten the URL: Pipedrive ids and query strings never need more than a few hundred characters.",
    431: "Send fewer or smaller headers.",
}


def write_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """What gunicorn.util.write_error writes, as JSON. `mesg` may hold part of the raw request line (a JWT in
    a panel query, say), so only the reason goes out; gunicorn's own log line keeps its usual detail."""
    body = json.dumps(
        {
            "success": False,
            "error": reason,
            "errorCode": status_int,
            "error_info": HINTS.get(status_int, "Check the request against /api/openapi.json."),
            "code": CODES.get(status_int, "server_error" if status_int >= 500 else "bad_request"),
            "details": [],
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


def install() -> None:
    # gunicorn.workers.base calls `util.write_error(...)` through the module, so this one assignment is seen
    # by every worker class (gthread, gevent, sync).
    util.write_error = write_error
