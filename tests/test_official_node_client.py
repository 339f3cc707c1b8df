"""Pipedrive's official Node.js client, unchanged, against the app: "official SDKs work unchanged".

tests/node/goals_client.mjs configures npm's `pipedrive` (pinned in package.json, installed by `make deps`)
only with `basePath` (the app's /api/v1) and `apiKey` (a partner key), as the client's README shows for API
tokens, and runs the five Goals operations. Here the app runs under gunicorn as the Procfile starts it, in
front of the built-in sandbox in a process of its own; each test checks what the client returned and what
reached the sandbox. Node and the package are required: without them these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import app_environ
from .procs import ROOT, AppDatabase, GunicornProcess, SandboxProcess

pytestmark = pytest.mark.slow

COMPANY, USER = 1001, 2001
SCRIPT = ROOT / "tests" / "node" / "goals_client.mjs"
PACKAGE = ROOT / "node_modules" / "pipedrive" / "package.json"
NODE_TIMEOUT_S = 60


# -- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def node() -> str:
    """The node binary and the pinned client: CI has both (`make deps`), so their absence is a failure."""
    node = shutil.which("node")
    assert node, "node is not on PATH: install Node.js (Debian's nodejs) and run `make deps`"
    assert PACKAGE.is_file(), f"{PACKAGE.relative_to(ROOT)} is missing: run `make deps` (npm ci)"
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["pipedrive"]
    installed = json.loads(PACKAGE.read_text())["version"]
    assert installed == pinned, f"node_modules has pipedrive {installed}, package.json {pinned}: make deps"
    return node


@dataclass
class Stack:
    pd: SandboxProcess
    server: GunicornProcess
    key: str
    access_token: str  # the installation's token at the sandbox, to look at its goals directly


@pytest.fixture
def stack(clean_db: str, sandbox_process: SandboxProcess, tmp_path: Path) -> Iterator[Stack]:
    pd = sandbox_process
    pd.reset()
    # The goals cache at its default: the client's reads after its writes must see them.
    environ = app_environ(clean_db, pd.url, GOALS_CACHE_TTL="30")
    db = AppDatabase(environ)
    try:
        grant = pd.install(COMPANY, USER)
        db.install(grant, COMPANY, USER)
        key = db.create_key(COMPANY)
        server = GunicornProcess(tmp_path / "gunicorn.log", environ, workers=2, threads=4)
        try:
            pd.control("DELETE", "/calls")
            yield Stack(pd, server, key, grant["access_token"])
        finally:
            server.stop()
    finally:
        db.close()


# -- helpers -------------------------------------------------------------------------------------------------
@dataclass
class Run:
    returncode: int
    steps: list[dict[str, Any]]
    stderr: str

    def step(self, index: int, op: str) -> dict[str, Any]:
        step = self.steps[index]
        assert step["op"] == op, self.steps
        return step


def run_client(node: str, base_path: str, key: str, *options: str) -> Run:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PD_APP_BASE_PATH": base_path,
        "PD_APP_API_KEY": key,
        "PD_GOAL_ASSIGNEE_ID": str(USER),
    }
    done = subprocess.run(
        [node, str(SCRIPT), *options],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"the script printed nothing (exit {done.returncode}):\n{done.stderr}"
    summary = json.loads(lines[-1])
    assert summary["basePath"] == base_path
    return Run(done.returncode, summary["steps"], done.stderr)


def sandbox_goals(stack: Stack) -> list[dict[str, Any]]:
    """The installation user's active goals as the sandbox stores them, asked of the sandbox directly."""
    resp = requests.get(
        stack.pd.url + "/api/v1/goals/find",
        params={"is_active": "true"},
        headers={"Authorization": f"Bearer {stack.access_token}"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]["goals"]


def goal_calls(stack: Stack) -> list[tuple[str, str, int]]:
    return [(c["method"], c["path"], c["status"]) for c in stack.pd.calls("/api/v1/goals")]


# -- the five operations -------------------------------------------------------------------------------------
def test_the_official_client_runs_the_five_goals_operations(node: str, stack: Stack):
    run = run_client(node, stack.server.url + "/api/v1", stack.key)
    assert run.returncode == 0, f"{json.dumps(run.steps, indent=1)}\n{run.stderr}\n{stack.server.tail()}"
    assert [s["op"] for s in run.steps] == [
        "addGoal",
        "getGoals",
        "getGoalResult",
        "updateGoal",
        "deleteGoal",
        "getGoals",
    ]
    sent = run.step(0, "addGoal")["args"]["AddGoalRequest"]

    # addGoal: Pipedrive's envelope with the goal as stored, its fields as sent.
    added = run.step(0, "addGoal")["result"]
    assert added["success"] is True
    goal = added["data"]["goal"]
    goal_id = goal["id"]
    assert isinstance(goal_id, str) and goal_id
    assert goal["title"] == sent["title"]
    assert goal["type"] == sent["type"]
    assert goal["assignee"] == sent["assignee"]
    assert goal["expected_outcome"] == sent["expected_outcome"]
    assert goal["duration"] == sent["duration"]
    assert goal["interval"] == "monthly" and goal["is_active"] is True

    # getGoals lists it, as added.
    found = run.step(1, "getGoals")["result"]
    assert found["success"] is True
    listed = [g for g in found["data"]["goals"] if g["id"] == goal_id]
    assert listed == [goal]

    # getGoalResult: the goal and its progress over the period asked for.
    results_step = run.step(2, "getGoalResult")
    results = results_step["result"]
    assert results["success"] is True
    assert results["data"]["goal"]["id"] == goal_id
    progress = results["data"]["progress"]
    assert isinstance(progress, int) and progress > 0  # a whole year of a monthly target of 20

    # updateGoal: the new title, everything else kept.
    renamed = run.step(3, "updateGoal")["args"]["BasicGoalRequest"]["title"]
    updated = run.step(3, "updateGoal")["result"]
    assert updated["success"] is True
    assert updated["data"]["goal"] == {**goal, "title": renamed}

    # deleteGoal succeeds, and the next getGoals no longer lists it.
    assert run.step(4, "deleteGoal")["result"]["success"] is True
    after = run.step(5, "getGoals")["result"]
    assert after["success"] is True
    assert goal_id not in [g["id"] for g in after["data"]["goals"]]

    # What reached the sandbox: each operation once, in order, accepted; the goal is gone there too.
    path = f"/api/v1/goals/{goal_id}"
    assert goal_calls(stack) == [
        ("POST", "/api/v1/goals", 200),
        ("GET", "/api/v1/goals/find", 200),
        ("GET", path + "/results", 200),
        ("PUT", path, 200),
        ("DELETE", path, 200),
        ("GET", "/api/v1/goals/find", 200),
    ]
    query = stack.pd.calls(path + "/results")[0]["query"]
    assert query == {
        "period.start": [results_step["args"]["period_start"]],
        "period.end": [results_step["args"]["period_end"]],
    }
    assert goal_id not in [g["id"] for g in sandbox_goals(stack)]
    company = next(c for c in stack.pd.control("GET", "/state")["companies"] if c["id"] == COMPANY)
    assert company["goals"]["deleted"] == 1


def test_what_the_official_client_writes_is_what_the_sandbox_stores(node: str, stack: Stack):
    # Stopped before its delete (--keep): the sandbox holds the goal as the client added and renamed it.
    run = run_client(node, stack.server.url + "/api/v1", stack.key, "--keep")
    assert run.returncode == 0, f"{json.dumps(run.steps, indent=1)}\n{run.stderr}\n{stack.server.tail()}"
    assert [s["op"] for s in run.steps] == ["addGoal", "getGoals", "getGoalResult", "updateGoal"]
    sent = run.step(0, "addGoal")["args"]["AddGoalRequest"]
    renamed = run.step(3, "updateGoal")["args"]["BasicGoalRequest"]["title"]
    goal_id = run.step(0, "addGoal")["result"]["data"]["goal"]["id"]
    assert [(m, p) for m, p, _ in goal_calls(stack)] == [
        ("POST", "/api/v1/goals"),
        ("GET", "/api/v1/goals/find"),
        ("GET", f"/api/v1/goals/{goal_id}/results"),
        ("PUT", f"/api/v1/goals/{goal_id}"),
    ]

    stored = [g for g in sandbox_goals(stack) if g["id"] == goal_id]
    assert len(stored) == 1, sandbox_goals(stack)
    goal = stored[0]
    assert goal["title"] == renamed != sent["title"]
    for field in ("type", "assignee", "expected_outcome", "duration", "interval"):
        assert goal[field] == sent[field], field
    assert goal == run.step(3, "updateGoal")["result"]["data"]["goal"]


# -- a wrong key ---------------------------------------------------------------------------------------------
def test_a_wrong_api_key_gets_the_clients_401_as_from_pipedrive(node: str, stack: Stack):
    run = run_client(node, stack.server.url + "/api/v1", "pdk_00000000.not-a-key-of-this-app")
    assert run.returncode == 1, run.steps
    assert [s["op"] for s in run.steps] == ["addGoal"]
    error = run.steps[0]["error"]
    # The client rejects with the response body: Pipedrive's 401 envelope (with errorCode, the only place
    # the client's caller can read the status from).
    assert error["success"] is False
    assert error["errorCode"] == 401
    assert error["code"] == "unauthorized"
    assert isinstance(error["error"], str) and error["error"]
    assert isinstance(error["error_info"], str) and error["error_info"]
    assert goal_calls(stack) == [], "nothing may reach Pipedrive without a valid key"
