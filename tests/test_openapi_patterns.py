"""Every `pattern` in /api/openapi.json means the same in ECMA-262, the regular-expression dialect of JSON
Schema (what ajv and other JavaScript validators compile, with the `u` flag), as in Python's `re`, which the
app's own tests and schemathesis use. A Python-only escape (`\\U0001XXXX`) is a syntax error there, or matches
something else: the document would then refuse what the app accepts, for every JavaScript client."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from .conftest import app_environ, close_app

SAMPLES = [
    "",
    " ",
    "Bob",
    "Acme dashboard",
    "partner 2024",
    "Zürich Café",
    "a\u200bb",  # zero-width space (Cf)
    "a\U000e0001b",  # language tag (Cf, above U+FFFF)
    "a\U0001f600b",  # an emoji (So, above U+FFFF)
    "a\nb",
    "0",
    "1",
    "007",
    "2147483647",
    "2147483648",
    "-1",
    "1.5",
    "2.5e-05",
    "2026-01-01",
    "2026-13-01",
    "https://example.com",
    "https://dash.example.com:8443",
    "http://localhost:5173",
    "HTTPS://EXAMPLE.COM",
    "https://example.com/path",
    "deals_won",
    "x" * 300,
]

CHECK = """
const {patterns, samples} = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {};
for (const [where, pattern] of patterns) {
  try {
    const rx = new RegExp(pattern, "u");
    out[where] = samples.map((s) => rx.test(s));
  } catch (e) {
    out[where] = String(e);
  }
}
process.stdout.write(JSON.stringify(out));
"""


def patterns_in(node: object, where: str = "#") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                found.append((where, value))
            else:
                found += patterns_in(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += patterns_in(value, f"{where}/{i}")
    return found


@pytest.fixture
def document(clean_db, sandbox_server):
    from pd_app import create_app

    app = create_app(environ=app_environ(clean_db, sandbox_server.url))
    try:
        yield app.test_client().get("/api/openapi.json").get_json()
    finally:
        close_app(app)


def test_every_pattern_means_the_same_in_ecma_262_as_in_python(document):
    import re

    node = shutil.which("node")
    assert node, "node is not on PATH: install Node.js (Debian's nodejs)"
    patterns = patterns_in(document)
    assert len(patterns) >= 5, patterns  # ids, origins, key names, dates...
    done = subprocess.run(
        [node, "-e", CHECK],
        input=json.dumps({"patterns": patterns, "samples": SAMPLES}),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    in_ecma = json.loads(done.stdout)
    for where, pattern in patterns:
        in_python = [re.search(pattern, s) is not None for s in SAMPLES]
        assert in_ecma[where] == in_python, (where, pattern[:200], in_ecma[where])
