"""The hashed locks agree with the pins people edit (requirements*.txt), and lock every file by hash."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)", re.MULTILINE)


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()  # PEP 503


def pins(path: Path) -> dict[str, str]:
    found = {_name(n): v for n, v in PIN.findall(path.read_text())}
    for include in re.findall(r"^-r\s+(\S+)", path.read_text(), re.MULTILINE):
        found.update(pins(path.parent / include))
    return found


def locked(path: Path) -> dict[str, str]:
    return {_name(n): v for n, v in PIN.findall(path.read_text())}


@pytest.mark.parametrize(
    ("source", "lock"),
    [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")],
)
def test_every_pin_is_locked_at_the_same_version(source, lock):
    wanted, have = pins(ROOT / source), locked(ROOT / lock)
    assert wanted, source
    drift = {name: (version, have.get(name)) for name, version in wanted.items() if have.get(name) != version}
    assert drift == {}, f"run `make lock`: {lock} differs from {source} (wanted, locked): {drift}"


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_locked_package_has_hashes(lock):
    # One entry per package: `name==version \` then its `--hash=sha256:…` lines, as pip-compile writes them.
    entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text().strip())
    assert len(entries) > 20
    for entry in entries:
        assert PIN.match(entry), entry.splitlines()[0]
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), entry.splitlines()[0]


def test_runtime_lock_is_within_the_dev_lock():
    # The tests run on exactly the versions production installs.
    runtime, dev = locked(ROOT / "requirements.lock"), locked(ROOT / "requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime
