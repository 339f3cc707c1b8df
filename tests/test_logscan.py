"""The log scan itself (tests/logscan.py): it finds a secret the run made, wherever the line comes from."""

from __future__ import annotations

import base64
import logging
import os
import secrets

import jwt

from . import logscan


def test_the_runs_scan_records_what_secrets_and_jwt_make():
    key_part = secrets.token_urlsafe(32)
    event_id = secrets.token_hex(12)  # 12 bytes: an id meant to be logged, not recorded
    signed = jwt.encode({"userId": 1}, "k" * 32, algorithm="HS256")
    assert key_part in logscan.SCAN.secrets_made
    assert event_id not in logscan.SCAN.secrets_made
    assert signed in logscan.SCAN.secrets_made


def test_a_scan_finds_a_planted_secret_in_a_record_and_in_a_process_output(tmp_path):
    # Made without the run's recording wrappers, so the run's own scan does not count these plants as leaks.
    token = "v1u:" + base64.urlsafe_b64encode(os.urandom(48)).decode()
    signed = jwt.PyJWT().encode({"companyId": 5}, "s" * 32, algorithm="HS256")
    scan = logscan.LogScan()
    scan.install()
    try:
        scan.remember(token)
        scan.remember(signed)
        logging.getLogger("pd_app.test").warning("calling with %s", token)
        logging.getLogger("pd_app.test").warning("harmless line")
        output = tmp_path / "proc.log"
        # Only the JWT's signature leaked, inside a larger word: still found.
        output.write_text("started\nheader x" + signed.rsplit(".", 1)[1] + "y\n")
        scan.add_file(output)
    finally:
        scan.uninstall()
    hits = scan.hits()
    assert len(hits) == 2
    assert hits[0].startswith("logging: ") and "calling with" in hits[0]
    assert hits[1].startswith("proc.log: header")
    # Undoing this scan's wrappers leaves the run's own in place.
    assert secrets.token_urlsafe(16) in logscan.SCAN.secrets_made
