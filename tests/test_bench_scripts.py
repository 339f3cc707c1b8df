"""The benchmarks import what they measure from the app: a rename in pd_app must not break `make bench`
silently (they are not run by the suite, only imported and asked for their help text)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script", ["proxy_bench.py", "token_lookup.py", "cpu_per_request.py"])
def test_bench_script_starts(script):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
