"""A closed-loop HTTP/1.1 load generator on stdlib asyncio: N keep-alive connections, each sending its next
request as soon as the previous answer has arrived, a warm-up, then a measured window.

    python bench/load.py http://127.0.0.1:PORT/api/v1/goals/find -c 50 -d 5 -H 'Authorization: Bearer x'

A request counts in the window when its answer arrives inside it; its latency is from the moment it was
written to the moment the last byte of the answer was read. One event loop, raw asyncio.Protocol parsing
(status line, Content-Length): it drives well over 2,000 requests/s on one core, so it is not what limits a
run (the bench prints that calibration).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    concurrency: int
    duration: float  # measured seconds
    latencies: list[float] = field(default_factory=list)  # seconds, answers with status 200 in the window
    statuses: Counter = field(default_factory=Counter)  # every answer in the window, by status
    errors: Counter = field(default_factory=Counter)  # no answer: timeout, reset, refused...
    peak_in_flight: int = 0  # requests written and not yet answered, most at once, in the window

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.ok / self.duration

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + sum(self.errors.values())

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the 200 answers' latencies, in seconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
        return ordered[int(min(rank, len(ordered))) - 1]


class ClientConnection(asyncio.Protocol):
    """One keep-alive connection: `request()` writes a request and resolves to (status, closing) with the
    whole answer read. With `keep_body` (a subclass's class attribute) the answer's body is left in `body`."""

    keep_body = False

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.body = b""
        self.waiter: asyncio.Future | None = None
        self.status = 0
        self.need = -1  # bytes of the answer still to read (head parsed), or -1 before the head
        self.closing = False
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("connection closed before the answer"))
        if not self.lost.done():
            self.lost.set_result(None)

    def request(self, data: bytes) -> asyncio.Future:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.need = -1
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.need < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            del self.buffer[: end + 4]
            self.status = int(head[9:12])
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else None])
            self.closing = b"\r\nconnection: close" in head
            self.need = length
        if len(self.buffer) >= self.need:
            if self.keep_body:
                self.body = bytes(self.buffer[: self.need])
            del self.buffer[: self.need]
            self.need = -1
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((self.status, self.closing))


async def run_load(
    url: str,
    concurrency: int,
    duration: float,
    warmup: float,
    *,
    path: Callable[[int], str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> LoadResult:
    """Drive `url` (or `path(n)` for the n-th request, on url's host) with `concurrency` closed-loop
    connections for `warmup` + `duration` seconds. `on_start`/`on_stop` run at the window's edges."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    fixed = parts.path + (f"?{parts.query}" if parts.query else "")
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    prefix, suffix = "GET ", f" HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n"
    fixed_request = (prefix + fixed + suffix).encode()
    loop = asyncio.get_running_loop()
    result = LoadResult(concurrency, duration)
    counter = [0]
    in_flight = [0]
    now = time.perf_counter()
    measure_from, stop_at = now + warmup, now + warmup + duration
    measuring = [False]

    def start() -> None:
        measuring[0] = True
        result.peak_in_flight = in_flight[0]
        if on_start:
            on_start()

    def stop() -> None:
        measuring[0] = False
        if on_stop:
            on_stop()

    loop.call_at(loop.time() + warmup, start)
    loop.call_at(loop.time() + warmup + duration, stop)

    async def connect() -> ClientConnection:
        _transport, conn = await loop.create_connection(ClientConnection, host, port)
        return conn

    async def client() -> None:
        conn: ClientConnection | None = None
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                break
            if conn is None or conn.transport is None:
                try:
                    conn = await asyncio.wait_for(connect(), timeout)
                except (OSError, TimeoutError) as exc:
                    if measure_from <= time.perf_counter() <= stop_at:
                        result.errors[f"connect: {type(exc).__name__}"] += 1
                    conn = None
                    await asyncio.sleep(0.05)
                    continue
                started = time.perf_counter()
            if path is None:
                data = fixed_request
            else:
                counter[0] += 1
                data = (prefix + path(counter[0]) + suffix).encode()
            in_flight[0] += 1
            if measuring[0] and in_flight[0] > result.peak_in_flight:
                result.peak_in_flight = in_flight[0]
            timer = None
            try:
                waiter = conn.request(data)
                timer = loop.call_later(timeout, _expire, waiter)
                status, closing = await waiter
                error = None
            except (OSError, TimeoutError) as exc:
                error, status, closing = type(exc).__name__, 0, True
            finally:
                in_flight[0] -= 1
                if timer is not None:
                    timer.cancel()
            ended = time.perf_counter()
            if measure_from <= ended <= stop_at:
                if error is not None:
                    result.errors[error] += 1
                else:
                    result.statuses[status] += 1
                    if status == 200:
                        result.latencies.append(ended - started)
            if closing and conn.transport is not None:
                conn.transport.close()
                conn = None
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    tasks = [asyncio.ensure_future(client()) for _ in range(concurrency)]
    # Answers still outstanding at the window's end do not count; give them a moment, then drop them.
    done, pending = await asyncio.wait(tasks, timeout=warmup + duration + min(timeout, 10.0))
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def summary(result: LoadResult) -> str:
    ms = lambda p: result.percentile(p) * 1000  # noqa: E731
    return (
        f"c={result.concurrency}: {result.rate:.0f} req/s, p50 {ms(50):.2f} ms, p99 {ms(99):.2f} ms, "
        f"statuses {dict(result.statuses)}, errors {dict(result.errors)}, "
        f"peak in flight {result.peak_in_flight}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("-c", "--concurrency", type=int, default=50)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("-w", "--warmup", type=float, default=1.0)
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    result = asyncio.run(run_load(args.url, args.concurrency, args.duration, args.warmup, headers=headers))
    print(summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
