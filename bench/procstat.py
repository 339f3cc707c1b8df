"""What the bench reads from /proc (Linux): CPU time, RSS and PSS of a set of processes, and the machine."""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: set[int]) -> float:
    """utime + stime of the processes (their own threads; children are counted by listing their pids)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def postgres_backends(database: str) -> set[int]:
    """The PostgreSQL server processes serving `database` (their title: `postgres: user db host ...`)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            parts = title.split()
            if len(parts) >= 2 and parts[0] == "postgres:" and parts[1].endswith(":"):
                del parts[1]  # Debian's cluster_name: `postgres: 15/main: postgres bench ...`
            if len(parts) >= 3 and parts[0] == "postgres:" and parts[2] == database:
                pids.add(int(entry.name))
    return pids


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, every process), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


def wait_for_quiet(threshold: float = 0.25, max_wait: float = 15.0, sample: float = 1.0) -> float:
    """Wait until the machine's busy CPU over `sample` seconds is under `threshold` cores (other work on a
    shared machine skews a run), at most `max_wait` seconds; returns the last busy figure seen."""
    deadline = time.monotonic() + max_wait
    while True:
        before = machine_busy_seconds()
        time.sleep(sample)
        busy = (machine_busy_seconds() - before) / sample
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def _kb(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pids: set[int]) -> int:
    return sum(_kb(f"/proc/{pid}/status", "VmRSS:") for pid in pids)


def pss_kb(pids: set[int]) -> int:
    return sum(_kb(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in pids)


@dataclass
class Usage:
    seconds: float = 0.0  # the window's length
    cpu: dict[str, float] | None = None  # CPU seconds per party over the window
    others: float = 0.0  # CPU seconds of everything else on the machine
    peak_rss_kb: int = 0  # most of the instance's summed VmRSS at any sample
    peak_pss_kb: int = 0  # most of the instance's summed Pss at any sample
    samples: int = 0

    def share(self, party: str) -> float:
        return (self.cpu or {}).get(party, 0.0) / self.seconds if self.seconds else 0.0


class Meter:
    """CPU per party between `start()` and `stop()`, and the instance's memory sampled every `interval` s.

    `parties` maps a name to a function listing its pids now (gunicorn's workers can change); `instance`
    names the party whose memory is sampled.
    """

    def __init__(
        self, parties: dict[str, Callable[[], set[int]]], instance: str | None, interval: float = 0.1
    ) -> None:
        self.parties = parties
        self.instance = instance
        self.interval = interval
        self.usage = Usage()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _cpu_now(self) -> dict[str, float]:
        return {name: cpu_seconds(find()) for name, find in self.parties.items()}

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._cpu0 = self._cpu_now()
        self._machine0 = machine_busy_seconds()
        if self.instance is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        find = self.parties[self.instance]  # type: ignore[index]
        while True:
            pids = find()
            self.usage.peak_rss_kb = max(self.usage.peak_rss_kb, rss_kb(pids))
            self.usage.peak_pss_kb = max(self.usage.peak_pss_kb, pss_kb(pids))
            self.usage.samples += 1
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        cpu = self._cpu_now()
        machine = machine_busy_seconds() - self._machine0
        self.usage.seconds = time.perf_counter() - self._t0
        self.usage.cpu = {name: cpu[name] - self._cpu0[name] for name in cpu}
        self.usage.others = max(0.0, machine - sum(self.usage.cpu.values()))
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)


def machine_facts() -> dict[str, str]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_gb = _kb("/proc/meminfo", "MemTotal:") / 1024 / 1024
    return {
        "cpus": str(os.cpu_count()),
        "cpu model": model,
        "memory": f"{mem_gb:.1f} GB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
