"""The benchmarks import what they measure from the app: a rename in pd_app must not break `make bench`
silently (they are not run by the suite, only imported and asked for their help text)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "script", ["proxy_bench.py", "token_lookup.py", "cpu_per_request.py", "dashboard.py", "faults.py"]
)
def test_bench_script_starts(script):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


@pytest.mark.slow
def test_dashboard_counts_add_up():
    """The dashboard scenario in a tiny configuration (5 screens, 1 goal, 2 polls), for real: gunicorn, the
    stand-in, the screens. Its figures must be the stand-in's counts priced by the cost table, the screens'
    requests all answered, and the second poll answered from the cache (GOALS_CACHE_TTL is 30 s)."""
    screens, goals, polls = 5, 1, 2
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "dashboard.py"),
            "--screens",
            str(screens),
            "--goals",
            str(goals),
        ]
        + ["--poll", "2", "--duration", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    sent = {"find": screens * polls, "results": screens * polls * goals}
    assert report["config"]["polls_per_screen"] == polls
    assert report["screen_requests"] == sent
    assert report["answers"] == {"200": sum(sent.values())}
    assert report["errors_by_status"] == {} and report["no_answer"] == {}
    assert report["unfinished_screens"] == 0 and report["app_error_log_lines"] == 0

    calls = report["upstream_calls"]
    assert set(calls) == {"find", "results"}  # nothing else went upstream (no token refresh, no /users/me)
    # Each screen's first find and results missed at most once; the second poll came from the cache.
    assert 1 <= calls["find"] <= screens and 1 <= calls["results"] <= screens * goals
    assert report["first_wave"]["upstream_calls"] == calls
    assert report["first_wave"]["screens_answered"] == screens

    tokens = report["tokens"]
    assert tokens["pd_app"] == 20 * (calls["find"] + calls["results"])
    assert tokens["pass_through"] == 20 * sum(sent.values())
    assert tokens["ratio"] == tokens["pd_app"] / tokens["pass_through"]
    assert report["first_wave"]["tokens_pass_through"] == 20 * screens * (1 + goals)
