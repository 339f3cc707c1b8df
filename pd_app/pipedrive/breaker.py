"""A circuit breaker per Pipedrive host, in this process's memory.

After `threshold` consecutive failures of calls to one host (no answer, or a 5xx), the host's breaker opens:
calls to it are refused at once, with the cool-off left, and nothing is sent. Once the cool-off is over, one
call (the probe) goes through while every other one is still refused; its success closes the breaker, its
failure opens it again for another cool-off. Any answer below 500 (4xx and 429 included) is a success: the
host is up and answering.

Per process on purpose: each worker learns for itself that a host is down within `threshold` calls, and a
breaker needs no store that could itself be down. The lock is held only to read and change a few fields,
never across a call, so it never blocks on I/O (and gevent's patched lock is as safe here as a thread's).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

log = logging.getLogger(__name__)

# What a refused call is told while the probe is out: the probe's answer is due within one call's time.
PROBING_RETRY_AFTER_S = 1


class Verdict(NamedTuple):
    """`admit`'s answer: whether the call may go, whether it is the probe, and else the whole seconds to wait
    (the cool-off left, rounded up, as Retry-After gives it)."""

    go: bool
    probe: bool = False
    retry_after: int = 0


GO = Verdict(True)
PROBE = Verdict(True, probe=True)


@dataclass(slots=True)
class _Circuit:
    failures: int = 0  # consecutive, while closed
    opened_at: float | None = None  # None: closed
    probing: bool = False  # the one probe is out (only when open and cooled off)


class Breakers:
    """The breakers of the hosts this process calls: a host has one from its first failure until a success
    (or a successful probe) forgets it, so only failing hosts take room.

    `on_change(open_count)` is called whenever a breaker opens or closes, under the lock: it must be quick
    (setting a gauge)."""

    def __init__(
        self,
        threshold: int = 5,
        cool_off_s: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.threshold = max(1, threshold)
        self.cool_off_s = cool_off_s
        self.clock = clock
        self.on_change = on_change
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()

    def admit(self, host: str) -> Verdict:
        """Whether a call to `host` may go now. An admitted call must pass its outcome to `record`."""
        circuit = self._circuits.get(host)
        if circuit is None or circuit.opened_at is None:
            # Closed: no lock. A stale read lets at most the calls already on their way through.
            return GO
        with self._lock:
            if circuit.opened_at is None:
                return GO
            left = circuit.opened_at + self.cool_off_s - self.clock()
            if left > 0:
                return Verdict(False, retry_after=max(1, math.ceil(left)))
            if circuit.probing:
                return Verdict(False, retry_after=PROBING_RETRY_AFTER_S)
            circuit.probing = True
            return PROBE

    def record(self, host: str, *, failed: bool, probe: bool = False) -> None:
        """The outcome of an admitted call. While a breaker is open only its probe's outcome counts: a call
        admitted before it opened and answered late says nothing the probe will not say."""
        circuit = self._circuits.get(host)
        if not failed and (circuit is None or (circuit.failures == 0 and circuit.opened_at is None)):
            return  # the steady state: nothing to change, no lock
        change = None
        with self._lock:
            circuit = self._circuits.setdefault(host, _Circuit())
            if circuit.opened_at is None:
                if not failed:
                    del self._circuits[host]
                else:
                    circuit.failures += 1
                    if circuit.failures >= self.threshold:
                        circuit.opened_at = self.clock()
                        change = "opened"
            elif probe:
                circuit.probing = False
                if failed:
                    circuit.opened_at = self.clock()
                    change = "reopened"
                else:
                    circuit.opened_at = None  # for an `admit` that fetched it before this
                    del self._circuits[host]
                    change = "closed"
            failures = circuit.failures
            open_count = self._open_count()
            if change is not None and self.on_change is not None:
                self.on_change(open_count)  # under the lock, so that the last figure set is the latest
        if change is not None:
            self._announce(host, change, failures, open_count)

    def open_count(self) -> int:
        with self._lock:
            return self._open_count()

    def state(self, host: str) -> str:
        """`closed`, `open` (cooling off) or `half_open` (cooled off: the next call, or the one out, is the
        probe)."""
        with self._lock:
            circuit = self._circuits.get(host)
            if circuit is None or circuit.opened_at is None:
                return "closed"
            return "open" if self.clock() < circuit.opened_at + self.cool_off_s else "half_open"

    def _open_count(self) -> int:
        return sum(1 for c in self._circuits.values() if c.opened_at is not None)

    def _announce(self, host: str, change: str, failures: int, open_count: int) -> None:
        fields = {"host": host, "breakers_open": open_count}
        if change == "opened":
            message = "circuit breaker opened: calls to this Pipedrive host are refused for a while"
            fields |= {"consecutive_failures": failures, "cool_off_s": self.cool_off_s}
        elif change == "reopened":
            message = "circuit breaker opened again: the probe failed"
            fields |= {"cool_off_s": self.cool_off_s}
        else:
            message = "circuit breaker closed: the probe succeeded"
        log.log(logging.INFO if change == "closed" else logging.WARNING, message, extra={"fields": fields})
