"""Schemathesis against the app's own contract: every operation of /api/openapi.json, fuzzed from the document
over real HTTP (gunicorn, the sandbox in its own process, an installed company), each answer checked against
the document: no 5xx, every status, media type, header and body as documented, data the document calls valid
accepted and data it calls invalid refused.

It runs schemathesis's engine, the phases `st run` runs (the document's examples, coverage of each
constraint's boundaries and violations, fuzzing, stateful sequences along inferred links), bounded and
repeatable: a fixed seed, Hypothesis derandomized, no example database, `PD_FUZZ_EXAMPLES` examples per
operation and phase (default 10). `PD_FUZZ_EXAMPLES=200 .venv/bin/pytest tests/test_fuzz.py` explores further.

Two credentials, two runs: a partner key (scope full) for every operation a key may call, and a Pipedrive
admin's panel JWT for the settings page's endpoints (`/api/v1/app/settings`, `/api/v1/app/keys...`), which
refuse every key. Whether each documented status is reached at all: tests/test_contract_statuses.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import schemathesis
import schemathesis.engine
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.engine import Status, events
from schemathesis.specs.openapi.checks import RejectedPositiveData

from .conftest import app_environ
from .procs import AppDatabase, GunicornProcess, SandboxProcess, empty_tables

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("PD_FUZZ_EXAMPLES", "10"))
SEED = 11
COMPANY, ADMIN = 1001, 2001
JWT_SECRET = "fuzz-jwt-secret-0123456789abcdefghijklmnop"
# The settings page's endpoints: a Pipedrive admin's JWT only (a partner key gets 403 there, by design).
ADMIN_ONLY = ("getAppSettings", "listKeys", "createKey", "revokeKey")

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",  # the document calls it invalid: refused
    "positive_data_acceptance",  # the document calls it valid: accepted (less OUTSIDE_THE_SCHEMA below)
    "missing_required_header",
    "unsupported_method",  # 405 for a method the path does not take
    "allow_header_conformance",  # ... with an Allow header naming the ones it does
    "ignored_auth",  # no credential or a wrong one: 401
)
REFUSALS = [400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 428, 429, 431]
# Left out: checks of resources' life cycles across calls (use_after_free, ensure_resource_availability) and
# object_level_authorization, which need a second tenant's credentials to mean anything; test_settings_api.py,
# test_key_binding.py and test_webhooks.py test tenant isolation directly.
LEFT_OUT = (
    "use_after_free",
    "ensure_resource_availability",
    "object_level_authorization",
)

# Refusals of data the document calls valid that the document cannot express as JSON Schema, each stated in
# words in the operation's description: (detail code, field) -> why. Anything else a positive case gets back
# as 400 is a disagreement between the document and the validator, and fails.
OUTSIDE_THE_SCHEMA = {
    ("upstream_rejected", "body"): "Pipedrive refused it (no such assignee, a cursor it did not issue, a "
    "period outside the goal): its own rules, which pd_app passes on",
    ("required", "period.start"): "both ends of a period or neither (two query parameters)",
    ("required", "period.end"): "both ends of a period or neither (two query parameters)",
    ("invalid_range", "period.end"): "period.end not before period.start (two query parameters)",
    ("invalid_range", "duration.end"): "duration.end not before duration.start",
    ("not_allowed", "expected_outcome.currency_id"): "currency_id only with tracking_metric sum",
    ("not_allowed", "type.params.stage_id"): "stage_id only for deals_progressed",
    ("not_allowed", "type.params.activity_type_id"): "activity_type_id only for activities_* goals",
    ("invalid_range", "from"): "history: `from` not after `to` (two query parameters)",
    ("too_long", "from"): "history: at most 3660 days between `from` and `to` (default `to`: today)",
    ("too_many", "url"): "at most 20 webhooks per company (state, not shape)",
}
# The Idempotency-Key rules are about what was sent before with the same key, not about this request's shape.
STATEFUL_CODES = {"idempotency_key_reused", "idempotency_key_in_progress"}


def _refused_outside_the_schema(response: Any) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    if body.get("code") in STATEFUL_CODES:
        return True
    details = body.get("details") or []
    return (
        response.status_code == 400
        and bool(details)
        and all((d.get("code"), d.get("field")) in OUTSIDE_THE_SCHEMA for d in details)
    )


# -- the stack ---------------------------------------------------------------------------------------------
@dataclass
class Stack:
    url: str
    key: str = field(repr=False)
    pd: SandboxProcess = field(repr=False)

    def admin_jwt(self) -> str:
        now = int(time.time())
        claims = {"userId": ADMIN, "companyId": COMPANY, "iat": now, "exp": now + 3600}
        return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def stack(
    database_url: str,
    sandbox_process: SandboxProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """gunicorn as the Procfile runs it, on the sandbox, with Acme installed by its admin and a company-wide
    key of scope full. The fuzz must meet the document, not the limits: the key's request limit and the
    company's daily cap are lifted (they have tests of their own), and so are the sandbox's budget and burst
    limit."""
    pd = sandbox_process
    pd.reset()
    pd.knobs(burst_limit=1_000_000, daily_budget=10**12)
    empty_tables(database_url)
    environ = app_environ(
        database_url,
        pd.url,
        KEY_RATE_LIMIT="1000000/minute",
        COMPANY_DAILY_TOKEN_CAP="0",
        PIPEDRIVE_JWT_SECRET=JWT_SECRET,
    )
    db = AppDatabase(environ)
    server = None
    # Hypothesis keeps a cache of constants under .hypothesis/ in the working directory: elsewhere.
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    try:
        db.install(pd.install(COMPANY, ADMIN), COMPANY, ADMIN)
        key = db.create_key(COMPANY)
        log = tmp_path_factory.mktemp("fuzz") / "gunicorn.log"
        server = GunicornProcess(log, environ, workers=1, threads=8)
        yield Stack(server.url, key, pd)
    finally:
        set_hypothesis_home_dir(None)
        if server is not None:
            server.stop()
        db.close()
        pd.reset()


# -- the run -----------------------------------------------------------------------------------------------
@dataclass
class Report:
    cases: int = 0
    statuses: dict[str, set[int]] = field(default_factory=dict)  # operation label -> statuses answered
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def problems(self) -> str:
        return "\n\n".join(self.failures + self.errors)


def fuzz(
    stack: Stack,
    auth: dict[str, Any],
    credential: str,
    include: dict[str, Any] | None = None,
    exclude: dict[str, Any] | None = None,
) -> Report:
    """Run schemathesis's engine over the document and collect what it found."""
    config = schemathesis.Config.from_dict(
        {
            "base-url": stack.url,  # the document's `servers` is PUBLIC_URL, which the test cannot reach
            "seed": SEED,
            "workers": 1,
            "cache": {"enabled": False},  # nothing written into the working tree (.schemathesis/)
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
            "request-timeout": 30,
            "auth": {"openapi": auth},
            "checks": {
                **{name: {"enabled": name in CHECKS} for name in CHECKS + LEFT_OUT},
                # A refusal is any 4xx the document lists, the server's own 413/414/431 included.
                "negative_data_rejection": {"enabled": True, "expected-statuses": [*REFUSALS, "5xx"]},
            },
        }
    )
    schema = schemathesis.openapi.from_url(stack.url + "/api/openapi.json", config=config, timeout=10)
    schema = schema.include(**include) if include else schema.exclude(**exclude)

    @schema.hook("filter_failure")
    def _only_disagreements(context, failure, case, response) -> bool:
        return not (isinstance(failure, RejectedPositiveData) and _refused_outside_the_schema(response))

    def hide(text: str) -> str:
        return text.replace(credential, "[credential]")

    report = Report()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.FatalError):
            raise AssertionError(f"schemathesis could not run: {hide(repr(event.exception))}")
        if isinstance(event, events.NonFatalError):
            report.errors.append(f"{event.label}: error {hide(str(event.value))[:500]}")
        if not isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            continue
        recorder = event.recorder
        for case_id, interaction in recorder.interactions.items():
            report.cases += 1
            if interaction.response is not None:
                label = recorder.cases[case_id].value.operation.label
                report.statuses.setdefault(label, set()).add(interaction.response.status_code)
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.status is Status.FAILURE and check.failure_info is not None:
                    failure = check.failure_info.failure
                    interaction = recorder.interactions.get(case_id)
                    answer = interaction.response if interaction is not None else None
                    said = "-" if answer is None else str(answer.status_code)
                    if answer is not None and answer.status_code >= 400:  # no secret in an error
                        said += f" {answer.content[:400]!r}"
                    report.failures.append(
                        f"{failure.operation}: {failure.title}\n{hide(failure.message)[:800]}\n"
                        f"{hide(check.failure_info.code_sample)[:800]}\nanswered: {said}"
                    )
    return report


def test_every_operation_a_partner_key_may_call_answers_as_documented(stack: Stack):
    report = fuzz(
        stack,
        {"partnerKey": {"api_key": stack.key}},
        stack.key,
        exclude={"operation_id": list(ADMIN_ONLY)},
    )
    assert not (report.failures or report.errors), report.problems()
    assert report.cases > 100
    print(f"fuzz (partner key): {report.cases} cases, statuses {report.statuses}")


def test_the_settings_page_endpoints_answer_an_admin_as_documented(stack: Stack):
    token = stack.admin_jwt()
    report = fuzz(stack, {"bearer": {"bearer": token}}, token, include={"operation_id": list(ADMIN_ONLY)})
    assert not (report.failures or report.errors), report.problems()
    assert len(report.statuses) == len(ADMIN_ONLY)
