"""Summarize a py-spy `--format raw` profile (folded stacks, `frame;frame;... count`) into short tables.

    python bench/pyspy_summary.py profile.txt [--top 15]

Own time: samples whose innermost frame is the function. Total time: samples with the function anywhere on
the stack. Both in % of all samples (py-spy leaves idle threads out by default, so these are the samples of
threads that were running or runnable). Frames are named `function (file)`, line numbers dropped, and
py-spy's `process ...` / `thread ...` pseudo-frames are left out.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
SCAFFOLDING = {"threading", "concurrent", "<frozen runpy>"}
_PACKAGE = re.compile(r"(?:site-packages|python3\.\d+)/(?P<pkg>[^/]+)")


def _frame(raw: str) -> str | None:
    raw = raw.strip()
    if raw.startswith(("process ", "thread ")) or not raw:
        return None
    match = _FRAME.match(raw)
    if not match:
        return raw
    file = match["file"]
    short = "/".join(file.split("/")[-2:])
    return f"{match['func']} ({short})"


def package(raw: str) -> str:
    """Who owns a frame: pd_app, a site-package (sqlalchemy, requests...), or the stdlib module."""
    match = _FRAME.match(raw.strip())
    file = match["file"] if match else raw
    if "/pd_app/" in file or file.startswith("pd_app/"):
        return "pd_app"
    found = _PACKAGE.search(file)
    if found:
        return found["pkg"].removesuffix(".py")
    return file.split("/")[0].removesuffix(".py") or "?"


def summarize(
    text: str, top: int = 15
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]], Counter]:
    own: Counter = Counter()
    total: Counter = Counter()
    ours: Counter = Counter()  # pd_app's own functions, anywhere on the stack
    by_package: Counter = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        raw_frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        frames = [f for f in (_frame(f) for f in raw_frames) if f]
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        by_package[package(raw_frames[-1])] += n
        # Total time leaves out the threads' scaffolding (threading, concurrent.futures), on every stack.
        for frame in {_frame(r) for r in raw_frames if package(r) not in SCAFFOLDING}:
            total[frame] += n
        for raw in {r for r in raw_frames if package(r) == "pd_app"}:
            ours[_frame(raw)] += n
    return samples, own.most_common(top), total.most_common(top), ours.most_common(top), by_package


def markdown(text: str, top: int = 15) -> str:
    samples, own, total, ours, by_package = summarize(text, top)
    if not samples:
        return "(no samples)\n"
    pct = lambda n: f"{100 * n / samples:.1f}"  # noqa: E731
    out = [f"{samples} samples.", "", "| own % | function (innermost frame) |", "|---:|---|"]
    out += [f"| {pct(n)} | `{name}` |" for name, n in own]
    out += ["", "| total % | function (anywhere on the stack; thread scaffolding left out) |", "|---:|---|"]
    out += [f"| {pct(n)} | `{name}` |" for name, n in total]
    out += ["", "| total % | pd_app function (anywhere on the stack) |", "|---:|---|"]
    out += [f"| {pct(n)} | `{name}` |" for name, n in ours]
    out += ["", "Own time by package: " + ", ".join(f"{p} {pct(n)}%" for p, n in by_package.most_common(12))]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    print(markdown(args.profile.read_text(), args.top), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
