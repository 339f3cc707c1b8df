"""The request schemas of the five Goals operations: validation (no HTTP) and the OpenAPI document."""

import copy
import json
import re

import pytest
from werkzeug.datastructures import MultiDict

from pd_app.goals import (
    ASSIGNEE_TYPES,
    DETAIL_CODES,
    GOAL_TYPES,
    INTERVALS,
    TRACKING_METRICS,
    ValidationFailed,
    fields,
    openapi_document,
    validate_add,
    validate_find,
    validate_goal_id,
    validate_results,
    validate_update,
)
from pd_app.sandbox import goals as sandbox_goals

DROP = object()  # as a value in `changed`: remove the key

GOAL = {
    "title": "Deals won in Q1",
    "assignee": {"id": 7, "type": "person"},
    "type": {"name": "deals_won", "params": {"pipeline_id": [1, 2]}},
    "expected_outcome": {"target": 50, "tracking_metric": "sum", "currency_id": 1},
    "duration": {"start": "2025-01-01", "end": "2025-03-31"},
    "interval": "monthly",
}


def changed(changes: dict, base: dict = GOAL) -> dict:
    """A deep copy of ``base`` with dotted paths set (or removed with DROP)."""
    body = copy.deepcopy(base)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = body
        for key in parents:
            node = node[key]
        if value is DROP:
            del node[last]
        else:
            node[last] = value
    return body


def run(op: str, payload):
    if op == "find":
        return validate_find(MultiDict(payload))
    if op == "results":
        goal_id, pairs = payload
        return validate_results(goal_id, MultiDict(pairs))
    if op == "add":
        return validate_add(payload)
    if op == "update":
        goal_id, body = payload
        return validate_update(goal_id, body)
    assert op == "delete"
    return validate_goal_id(payload)


PERIOD = [("period.start", "2025-01-01"), ("period.end", "2025-01-31")]

BAD_REQUESTS = [
    # addGoal: the body itself
    ("add", None, "body", "required"),
    ("add", [GOAL], "body", "invalid_type"),
    ("add", "a goal", "body", "invalid_type"),
    # addGoal: required and unknown fields
    ("add", changed({"assignee": DROP}), "assignee", "required"),
    ("add", changed({"type": DROP}), "type", "required"),
    ("add", changed({"expected_outcome": DROP}), "expected_outcome", "required"),
    ("add", changed({"duration": DROP}), "duration", "required"),
    ("add", changed({"interval": DROP}), "interval", "required"),
    ("add", changed({"owner_id": 5}), "owner_id", "unknown_field"),
    ("add", changed({"intervall": "monthly"}), "intervall", "unknown_field"),
    # addGoal: assignee
    ("add", changed({"assignee": "7"}), "assignee", "invalid_type"),
    ("add", changed({"assignee.id": True}), "assignee.id", "invalid_type"),
    ("add", changed({"assignee.id": 0}), "assignee.id", "too_small"),
    ("add", changed({"assignee.id": "-1"}), "assignee.id", "invalid_type"),
    ("add", changed({"assignee.id": "seven"}), "assignee.id", "invalid_type"),
    ("add", changed({"assignee.id": 2**31}), "assignee.id", "too_large"),
    ("add", changed({"assignee.id": 7.5}), "assignee.id", "invalid_type"),
    ("add", changed({"assignee.id": "0"}), "assignee.id", "invalid_type"),
    ("add", changed({"assignee.id": "07"}), "assignee.id", "invalid_type"),
    ("add", changed({"assignee.id": "2147483648"}), "assignee.id", "invalid_type"),
    ("add", changed({"assignee.type": "user"}), "assignee.type", "invalid_choice"),
    ("add", changed({"assignee.type": DROP}), "assignee.type", "required"),
    # addGoal: type and its params
    ("add", changed({"type.name": "deals_lost"}), "type.name", "invalid_choice"),
    ("add", changed({"type.name": "Deals won"}), "type.name", "invalid_choice"),
    ("add", changed({"type.params": None}), "type.params", "invalid_type"),
    ("add", changed({"type.params.stage_id": 3}), "type.params.stage_id", "not_allowed"),
    ("add", changed({"type.params.activity_type_id": [9]}), "type.params.activity_type_id", "not_allowed"),
    ("add", changed({"type.params.pipeline_id": "1,2"}), "type.params.pipeline_id", "invalid_type"),
    ("add", changed({"type.params.pipeline_id": [1, True]}), "type.params.pipeline_id[1]", "invalid_type"),
    ("add", changed({"type.params.pipeline_id": [0]}), "type.params.pipeline_id[0]", "too_small"),
    (
        "add",
        changed({"type.params.pipeline_id": list(range(1, 102))}),
        "type.params.pipeline_id",
        "too_many_items",
    ),
    ("add", changed({"type.params.pipeline": [1]}), "type.params.pipeline", "unknown_field"),
    (
        "add",
        changed({"type.name": "deals_progressed", "type.params.stage_id": "3"}),
        "type.params.stage_id",
        "invalid_type",
    ),
    # addGoal: expected_outcome
    ("add", changed({"expected_outcome.target": -1}), "expected_outcome.target", "too_small"),
    ("add", changed({"expected_outcome.target": "-1"}), "expected_outcome.target", "invalid_type"),
    ("add", changed({"expected_outcome.target": "fifty"}), "expected_outcome.target", "invalid_type"),
    ("add", changed({"expected_outcome.target": "1e3"}), "expected_outcome.target", "invalid_type"),
    ("add", changed({"expected_outcome.target": "1" + "0" * 15}), "expected_outcome.target", "invalid_type"),
    ("add", changed({"expected_outcome.target": 1e16}), "expected_outcome.target", "too_large"),
    ("add", changed({"expected_outcome.target": True}), "expected_outcome.target", "invalid_type"),
    ("add", changed({"expected_outcome.target": float("nan")}), "expected_outcome.target", "invalid_type"),
    ("add", changed({"expected_outcome.target": DROP}), "expected_outcome.target", "required"),
    (
        "add",
        changed({"expected_outcome.tracking_metric": "count"}),
        "expected_outcome.tracking_metric",
        "invalid_choice",
    ),
    (
        "add",
        changed({"expected_outcome.tracking_metric": "quantity"}),
        "expected_outcome.currency_id",
        "not_allowed",
    ),
    ("add", changed({"expected_outcome.currency_id": 0}), "expected_outcome.currency_id", "too_small"),
    ("add", changed({"expected_outcome.currency_id": None}), "expected_outcome.currency_id", "invalid_type"),
    # addGoal: duration, interval, title
    ("add", changed({"duration.start": "2025-02-30"}), "duration.start", "invalid_date"),
    ("add", changed({"duration.start": "2025-1-5"}), "duration.start", "invalid_date"),
    ("add", changed({"duration.start": "2025-01-01T00:00:00Z"}), "duration.start", "invalid_date"),
    ("add", changed({"duration.start": 20250101}), "duration.start", "invalid_type"),
    ("add", changed({"duration.start": ""}), "duration.start", "invalid_date"),
    ("add", changed({"duration.end": "2024-12-31"}), "duration.end", "invalid_range"),
    ("add", changed({"duration.end": DROP}), "duration.end", "required"),
    ("add", changed({"interval": "daily"}), "interval", "invalid_choice"),
    ("add", changed({"title": ""}), "title", "empty"),
    ("add", changed({"title": "   "}), "title", "empty"),
    ("add", changed({"title": "x" * 256}), "title", "too_long"),
    ("add", changed({"title": None}), "title", "invalid_type"),
    # updateGoal
    ("update", ("g1", {}), "body", "empty"),
    ("update", ("g1", None), "body", "required"),
    ("update", ("g1", [1]), "body", "invalid_type"),
    ("update", ("a/b", {"title": "x"}), "id", "invalid_format"),
    ("update", ("g1", {"title": None}), "title", "invalid_type"),
    ("update", ("g1", {"is_active": False}), "is_active", "unknown_field"),
    ("update", ("g1", {"expected_outcome": {"target": 5}}), "expected_outcome.tracking_metric", "required"),
    ("update", ("g1", {"duration": {"start": "2025-01-01"}}), "duration.end", "required"),
    (
        "update",
        ("g1", {"type": {"name": "deals_won", "params": {"stage_id": 1}}}),
        "type.params.stage_id",
        "not_allowed",
    ),
    ("update", ("g1", {"interval": None}), "interval", "invalid_choice"),
    # deleteGoal: the id alone
    ("delete", "", "id", "invalid_format"),
    ("delete", "../users", "id", "invalid_format"),
    ("delete", "ab cd", "id", "invalid_format"),
    ("delete", "goal\n", "id", "invalid_format"),
    ("delete", "é1", "id", "invalid_format"),
    ("delete", "x" * 65, "id", "invalid_format"),
    ("delete", 12, "id", "invalid_type"),
    # getGoalResult
    ("results", ("g1", []), "period.start", "required"),
    ("results", ("g1", [("period.start", "2025-01-01")]), "period.end", "required"),
    (
        "results",
        ("g1", [("period.start", "2025-02-01"), ("period.end", "2025-01-31")]),
        "period.end",
        "invalid_range",
    ),
    (
        "results",
        ("g1", [("period.start", "2025-13-01"), ("period.end", "2025-12-31")]),
        "period.start",
        "invalid_date",
    ),
    ("results", ("g1", [*PERIOD, ("period.start", "2025-01-02")]), "period.start", "duplicate"),
    ("results", ("g1", [*PERIOD, ("from", "2025-01-01")]), "from", "unknown_field"),
    ("results", ("g 1", PERIOD), "id", "invalid_format"),
    # getGoals
    ("find", [("type.name", "deals_lost")], "type.name", "invalid_choice"),
    ("find", [("is_active", "yes")], "is_active", "invalid_type"),
    ("find", [("assignee.id", "abc")], "assignee.id", "invalid_type"),
    ("find", [("assignee.id", "0")], "assignee.id", "too_small"),
    ("find", [("assignee.id", "1"), ("assignee.id", "2")], "assignee.id", "duplicate"),
    ("find", [("assignee.type", "user")], "assignee.type", "invalid_choice"),
    ("find", [("expected_outcome.target", "-5")], "expected_outcome.target", "too_small"),
    (
        "find",
        [("expected_outcome.tracking_metric", "count")],
        "expected_outcome.tracking_metric",
        "invalid_choice",
    ),
    ("find", [("expected_outcome.currency_id", "1.5")], "expected_outcome.currency_id", "invalid_type"),
    (
        "find",
        [("type.params.pipeline_id", "1"), ("type.params.pipeline_id", "x")],
        "type.params.pipeline_id[1]",
        "invalid_type",
    ),
    ("find", [("type.params.pipeline_id", "")], "type.params.pipeline_id[0]", "invalid_type"),
    (
        "find",
        [("type.params.stage_id", "1"), ("type.params.stage_id", "2")],
        "type.params.stage_id",
        "duplicate",
    ),
    (
        "find",
        [("type.params.activity_type_id", str(n)) for n in range(1, 102)],
        "type.params.activity_type_id",
        "too_many_items",
    ),
    ("find", [("period.start", "2025-01-01")], "period.end", "required"),
    ("find", [("period.end", "2025-01-01")], "period.start", "required"),
    ("find", [("period.start", "2025-02-01"), ("period.end", "2025-01-01")], "period.end", "invalid_range"),
    ("find", [("period.start", "yesterday"), ("period.end", "2025-01-01")], "period.start", "invalid_date"),
    ("find", [("owner_id", "1")], "owner_id", "unknown_field"),
    ("find", [("title", "")], "title", "empty"),
    ("find", [("title", "a"), ("title", "b")], "title", "duplicate"),
]


@pytest.mark.parametrize(
    ("op", "payload", "field", "code"),
    BAD_REQUESTS,
    ids=[f"{op}-{field}-{code}-{n}" for n, (op, _, field, code) in enumerate(BAD_REQUESTS)],
)
def test_bad_request_is_rejected_with_a_detail_for_the_field(op, payload, field, code):
    with pytest.raises(ValidationFailed) as caught:
        run(op, payload)
    found = [(detail["field"], detail["code"]) for detail in caught.value.details]
    assert (field, code) in found


def test_the_table_covers_every_operation():
    assert {op for op, *_ in BAD_REQUESTS} == {"find", "results", "add", "update", "delete"}
    assert len(BAD_REQUESTS) >= 40


def test_details_are_field_message_code_sentences():
    with pytest.raises(ValidationFailed) as caught:
        validate_add(changed({"expected_outcome.tracking_metric": "quantity", "interval": "daily"}))
    for detail in caught.value.details:
        assert set(detail) == {"field", "message", "code"}
        assert detail["code"] in DETAIL_CODES
        assert detail["message"].startswith(detail["field"]) and detail["message"].endswith(".")
    messages = {d["field"]: d["message"] for d in caught.value.details}
    assert messages["expected_outcome.currency_id"] == (
        "expected_outcome.currency_id is only allowed when tracking_metric is 'sum'."
    )
    assert "'weekly'" in messages["interval"]


def test_every_problem_is_reported_at_once_cross_field_rules_included():
    body = changed(
        {
            "assignee.id": True,
            "type.params.stage_id": 4,  # not for deals_won
            "type.params.activity_type_id": [9],  # not for deals_won
            "expected_outcome.tracking_metric": "quantity",  # makes currency_id not allowed
            "duration.end": "2024-01-01",  # before the start
            "interval": "daily",
            "colour": "red",
        }
    )
    with pytest.raises(ValidationFailed) as caught:
        validate_add(body)
    fields = [detail["field"] for detail in caught.value.details]
    assert sorted(fields) == sorted(
        [
            "assignee.id",
            "type.params.stage_id",
            "type.params.activity_type_id",
            "expected_outcome.currency_id",
            "duration.end",
            "interval",
            "colour",
        ]
    )


def test_field_errors_keep_their_codes_beside_a_cross_field_rule():
    body = changed(
        {
            "type.params.stage_id": 0,  # too small, and not allowed for deals_won
            "type.params.pipeline_id": list(range(1, 201)),
            "type.params.activity_type_id": [0],
        }
    )
    with pytest.raises(ValidationFailed) as caught:
        validate_add(body)
    assert sorted((detail["field"], detail["code"]) for detail in caught.value.details) == [
        ("type.params.activity_type_id", "not_allowed"),
        ("type.params.activity_type_id[0]", "too_small"),
        ("type.params.pipeline_id", "too_many_items"),
        ("type.params.stage_id", "not_allowed"),
        ("type.params.stage_id", "too_small"),
    ]


def test_an_update_reports_the_id_and_the_body_together():
    with pytest.raises(ValidationFailed) as caught:
        validate_update("not an id", {"title": ""})
    assert [detail["field"] for detail in caught.value.details] == ["id", "title"]


def test_results_report_the_id_and_the_query_together():
    with pytest.raises(ValidationFailed) as caught:
        validate_results("not an id", MultiDict())
    assert [detail["field"] for detail in caught.value.details] == ["id", "period.start", "period.end"]


def test_a_flood_of_problems_is_cut_short():
    with pytest.raises(ValidationFailed) as caught:
        validate_find(MultiDict([(f"key{n}", "1") for n in range(80)]))
    details = caught.value.details
    assert len(details) == 51
    assert details[-1]["code"] == "too_many_problems" and "30 more" in details[-1]["message"]


def test_a_long_unknown_key_is_not_echoed_whole():
    with pytest.raises(ValidationFailed) as caught:
        validate_add(changed({"k" * 5000: 1}))
    assert max(len(detail["field"]) for detail in caught.value.details) <= 101


def test_add_normalizes_strings_the_spec_shows_into_numbers():
    body = changed({"assignee.id": "1", "expected_outcome.target": "50"})
    assert validate_add(body) == changed({"assignee.id": 1, "expected_outcome.target": 50})


# Found by tests/test_fuzz.py: JSON Schema's integer includes 7.0, and a string id's documented pattern now
# says exactly which strings are taken (1 to 2**31 - 1, no leading zero), as the string target's does.
def test_ids_are_integers_as_json_schema_counts_them():
    body = changed(
        {
            "assignee.id": 7.0,
            "type.name": "deals_progressed",
            "type.params.stage_id": 3.0,
            "type.params.pipeline_id": [1.0, 2],
            "expected_outcome.currency_id": 2.0,
        }
    )
    normalized = validate_add(body)
    assert normalized["assignee"]["id"] == 7 and type(normalized["assignee"]["id"]) is int
    assert normalized["type"]["params"] == {"stage_id": 3, "pipeline_id": [1, 2]}
    assert type(normalized["expected_outcome"]["currency_id"]) is int


@pytest.mark.parametrize(
    "given", ["1", "9", "10", "1999999999", "2147483647", "0", "01", "2147483648", "-1", "1.0"]
)
def test_a_string_id_is_taken_exactly_when_the_documented_pattern_matches(given):
    pattern = re.compile(fields.ID_STRING_PATTERN)
    try:
        validate_add(changed({"assignee.id": given}))
        accepted = True
    except ValidationFailed:
        accepted = False
    assert (
        accepted
        is bool(pattern.search(given))
        is (given.isdigit() and given[0] != "0" and int(given) < 2**31)
    )


@pytest.mark.parametrize(
    ("target", "sent"),
    [
        ("50", 50),
        ("12.50", 12.5),
        (50.0, 50),
        (0, 0),
        (12.25, 12.25),
        (10**15, 10**15),
        ("999999999999999.5", 999999999999999.5),
    ],
)
def test_targets_become_json_numbers(target, sent):
    normalized = validate_add(changed({"expected_outcome.target": target}))
    assert normalized["expected_outcome"]["target"] == sent
    assert type(normalized["expected_outcome"]["target"]) is type(sent)


def test_add_keeps_what_was_given_and_nothing_else():
    body = changed({"title": DROP, "type.params": DROP, "duration.end": None})
    normalized = validate_add(body)
    assert "title" not in normalized
    assert normalized["type"] == {"name": "deals_won", "params": {}}  # Pipedrive wants params
    assert normalized["duration"] == {"start": "2025-01-01", "end": None}  # null: open-ended
    assert body == changed({"title": DROP, "type.params": DROP, "duration.end": None})  # input untouched


@pytest.mark.parametrize(
    ("goal_type", "params"),
    [
        ("deals_won", {"pipeline_id": None}),
        ("deals_progressed", {"pipeline_id": [3], "stage_id": 12}),
        ("deals_started", {}),
        ("revenue_forecast", {"pipeline_id": [1]}),
        ("activities_completed", {"activity_type_id": [9, 10]}),
        ("activities_added", {"activity_type_id": None}),
    ],
)
def test_each_goal_type_takes_its_own_params(goal_type, params):
    normalized = validate_add(changed({"type": {"name": goal_type, "params": params}}))
    assert normalized["type"] == {"name": goal_type, "params": params}


# Which type.params keys each goal type takes, as openapi-v1.yaml says (addGoal and updateGoal, `type`):
# stage_id only deals_progressed, activity_type_id only the activities_* types, pipeline_id every type (the
# spec ties it to none). Written out here, not imported, so that the app and the sandbox are each held to it.
SPEC_PARAMS = {
    "deals_won": {"pipeline_id"},
    "deals_progressed": {"pipeline_id", "stage_id"},
    "deals_started": {"pipeline_id"},
    "revenue_forecast": {"pipeline_id"},
    "activities_completed": {"pipeline_id", "activity_type_id"},
    "activities_added": {"pipeline_id", "activity_type_id"},
}
PARAM_VALUES = {"pipeline_id": [1, 2], "stage_id": 3, "activity_type_id": [9]}


def anyone(_id: int, _type: str) -> bool:
    return True


def test_the_params_table_names_every_goal_type_of_the_app_and_the_sandbox():
    assert set(SPEC_PARAMS) == set(GOAL_TYPES) == set(sandbox_goals.GOAL_TYPES)


@pytest.mark.parametrize("key", PARAM_VALUES)
@pytest.mark.parametrize("goal_type", SPEC_PARAMS)
def test_app_and_sandbox_take_the_params_the_spec_gives_each_goal_type(goal_type, key):
    goal_type_body = {"name": goal_type, "params": {key: PARAM_VALUES[key]}}
    stored = sandbox_goals.new_goal_fields(GOAL, anyone)
    app_calls = {
        "add": lambda: validate_add(changed({"type": goal_type_body}))["type"],
        "update": lambda: validate_update("g1", {"type": goal_type_body})["type"],
    }
    sandbox_calls = {
        "add": lambda: sandbox_goals.new_goal_fields(changed({"type": goal_type_body}), anyone)["type"],
        "update": lambda: sandbox_goals.updated_goal_fields(stored, {"type": goal_type_body}, anyone)["type"],
    }
    if key in SPEC_PARAMS[goal_type]:
        for op in ("add", "update"):
            assert app_calls[op]() == goal_type_body, op
            assert sandbox_calls[op]()["params"][key] == PARAM_VALUES[key], op
    else:
        for op in ("add", "update"):
            with pytest.raises(ValidationFailed) as caught:
                app_calls[op]()
            assert [(d["field"], d["code"]) for d in caught.value.details] == [
                (f"type.params.{key}", "not_allowed")
            ], op
            with pytest.raises(sandbox_goals.GoalError, match=f"^type.params.{key} is not applicable"):
                sandbox_calls[op]()


def test_quantity_goals_need_no_currency():
    body = changed({"expected_outcome": {"target": 10, "tracking_metric": "quantity"}})
    assert validate_add(body)["expected_outcome"] == {"target": 10, "tracking_metric": "quantity"}


def test_sum_goals_may_leave_the_currency_out():
    body = changed({"expected_outcome": {"target": 10, "tracking_metric": "sum"}})
    assert validate_add(body)["expected_outcome"] == {"target": 10, "tracking_metric": "sum"}


def test_a_goal_may_start_and_end_on_the_same_day():
    assert validate_add(changed({"duration.end": "2025-01-01"}))["duration"]["end"] == "2025-01-01"


def test_update_sends_only_the_given_fields():
    assert validate_update("5665cef556ddff22606fc8f6c0004807", {"title": "Renamed"}) == {"title": "Renamed"}
    assert validate_update("g_1-A", {"type": {"name": "deals_started"}, "interval": "weekly"}) == {
        "type": {"name": "deals_started", "params": {}},
        "interval": "weekly",
    }


def test_update_accepts_a_whole_goal_body():
    assert validate_update("g1", changed({"assignee.id": "3"}))["assignee"] == {"id": 3, "type": "person"}


def test_find_normalizes_the_query():
    args = MultiDict(
        [
            ("type.params.pipeline_id", "3"),
            ("is_active", "1"),
            ("type.params.pipeline_id", "1"),
            ("expected_outcome.target", "12.50"),
            ("type.name", "revenue_forecast"),
            ("assignee.id", "42"),
            ("period.start", "2025-01-01"),
            ("period.end", "2025-01-01"),
        ]
    )
    assert validate_find(args) == [
        ("type.name", "revenue_forecast"),
        ("is_active", "true"),
        ("assignee.id", "42"),
        ("expected_outcome.target", "12.5"),
        ("type.params.pipeline_id", "3"),
        ("type.params.pipeline_id", "1"),
        ("period.start", "2025-01-01"),
        ("period.end", "2025-01-01"),
    ]


# Found by tests/test_fuzz.py: a number in a query string may come in a float's own notation.
@pytest.mark.parametrize(
    ("given", "sent"), [("2.5e-05", "0.000025"), ("1e3", "1000"), ("1E+2", "100"), ("7", "7"), ("0.0", "0")]
)
def test_find_takes_a_target_in_any_json_number_notation(given, sent):
    assert validate_find(MultiDict([("expected_outcome.target", given)])) == [
        ("expected_outcome.target", sent)
    ]


@pytest.mark.parametrize("given", ["1e16", "-1", "1e", ".5", "0x10", "inf", "1e1000"])
def test_find_refuses_a_target_that_is_no_number_or_out_of_range(given):
    with pytest.raises(ValidationFailed) as caught:
        validate_find(MultiDict([("expected_outcome.target", given)]))
    assert [d["field"] for d in caught.value.details] == ["expected_outcome.target"]


@pytest.mark.parametrize(
    ("given", "sent"), [("1", "true"), ("0", "false"), ("true", "true"), ("FALSE", "false")]
)
def test_find_is_active_becomes_true_or_false(given, sent):
    assert validate_find(MultiDict([("is_active", given)])) == [("is_active", sent)]


@pytest.mark.parametrize("goal_type", GOAL_TYPES)
def test_find_accepts_every_goal_type(goal_type):
    assert validate_find(MultiDict([("type.name", goal_type)])) == [("type.name", goal_type)]


def test_find_without_a_query_sends_none():
    assert validate_find(MultiDict()) == []


def test_results_normalizes_the_period():
    args = MultiDict([("period.end", "2025-03-31"), ("period.start", "2025-01-01")])
    assert validate_results("g1", args) == [("period.start", "2025-01-01"), ("period.end", "2025-03-31")]


@pytest.mark.parametrize("goal_id", ["1", "5665cef556ddff22606fc8f6c0004807", "a_b-C", "x" * 64])
def test_goal_ids_pipedrive_uses_are_accepted(goal_id):
    assert validate_goal_id(goal_id) == goal_id


def test_the_enums_are_the_documented_ones():
    assert ASSIGNEE_TYPES == ("person", "company", "team")
    assert TRACKING_METRICS == ("quantity", "sum")
    assert INTERVALS == ("weekly", "monthly", "quarterly", "yearly")
    assert len(GOAL_TYPES) == 6 and "revenue_forecast" in GOAL_TYPES


# --- the OpenAPI document ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def document():
    return openapi_document("https://goals.example.com")


def resolve(document, ref: str):
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs_in(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs_in(item)


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in {"get", "put", "post", "delete", "patch"}:
                yield path, method, operation


def test_document_is_openapi_3_1_for_the_public_url(document):
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "https://goals.example.com"}]
    assert document["info"]["title"] and document["info"]["version"]
    json.dumps(document)  # serializable as is


def test_every_ref_resolves_inside_the_document(document):
    refs = set(refs_in(document))
    assert refs
    for ref in refs:
        assert isinstance(resolve(document, ref), dict), ref
    assert "$defs" not in json.dumps(document)


def test_every_path_is_under_api_and_has_the_expected_operations(document):
    found = {(method, path): op["operationId"] for path, method, op in operations(document)}
    assert all(path.startswith("/api/") for _, path in found)
    assert found == {
        ("get", "/api/v1/goals/find"): "getGoals",
        ("get", "/api/v1/goals/{id}/results"): "getGoalResult",
        ("post", "/api/v1/goals"): "addGoal",
        ("put", "/api/v1/goals/{id}"): "updateGoal",
        ("delete", "/api/v1/goals/{id}"): "deleteGoal",
        ("get", "/api/v1/app/installation"): "getInstallation",
        ("get", "/api/v1/goals/{id}/history"): "getGoalHistory",
        ("post", "/api/v1/app/webhooks"): "addWebhook",
        ("get", "/api/v1/app/webhooks"): "listWebhooks",
        ("delete", "/api/v1/app/webhooks/{id}"): "deleteWebhook",
        ("get", "/api/v1/app/settings"): "getAppSettings",
        ("get", "/api/v1/app/keys"): "listKeys",
        ("post", "/api/v1/app/keys"): "createKey",
        ("delete", "/api/v1/app/keys/{id}"): "revokeKey",
        ("get", "/api/openapi.json"): "getOpenApi",
        ("get", "/api/v2/pipelines"): "getPipelines",
        ("get", "/api/v2/stages"): "getStages",
        ("get", "/api/v1/activityTypes"): "getActivityTypes",
        ("get", "/api/v1/users"): "getUsers",
        ("get", "/api/v1/currencies"): "getCurrencies",
    }


def test_path_templates_have_their_parameters(document):
    for path, item in document["paths"].items():
        if "{id}" in path:
            names = [resolve(document, p["$ref"]) if "$ref" in p else p for p in item["parameters"]]
            assert [(p["in"], p["name"], p["required"]) for p in names] == [("path", "id", True)]


def request_schema(document, path, method):
    content = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    return resolve(document, content["schema"]["$ref"])


def test_request_bodies_come_from_the_models(document):
    add = request_schema(document, "/api/v1/goals", "post")
    assert sorted(add["required"]) == sorted(["assignee", "type", "expected_outcome", "duration", "interval"])
    assert add["additionalProperties"] is False
    update = request_schema(document, "/api/v1/goals/{id}", "put")
    assert "required" not in update and update["minProperties"] == 1
    assert set(update["properties"]) == set(add["properties"])
    goal_type = resolve(document, add["properties"]["type"]["$ref"])
    assert goal_type["properties"]["name"]["enum"] == list(GOAL_TYPES)
    outcome = resolve(document, add["properties"]["expected_outcome"]["$ref"])
    assert outcome["properties"]["tracking_metric"]["enum"] == list(TRACKING_METRICS)
    assert add["properties"]["interval"]["enum"] == list(INTERVALS)


def test_the_documented_example_body_is_valid(document):
    content = document["paths"]["/api/v1/goals"]["post"]["requestBody"]["content"]["application/json"]
    assert validate_add(content["example"]) == content["example"]


def query_parameters(operation: dict) -> list[dict]:
    return [p for p in operation["parameters"] if p["in"] == "query"]


def test_find_parameters_come_from_the_query_model(document):
    parameters = {p["name"]: p for p in query_parameters(document["paths"]["/api/v1/goals/find"]["get"])}
    assert set(parameters) == {
        "type.name",
        "title",
        "is_active",
        "assignee.id",
        "assignee.type",
        "expected_outcome.target",
        "expected_outcome.tracking_metric",
        "expected_outcome.currency_id",
        "type.params.pipeline_id",
        "type.params.stage_id",
        "type.params.activity_type_id",
        "period.start",
        "period.end",
    }
    assert not any(p["required"] for p in parameters.values())
    assert parameters["type.params.pipeline_id"]["explode"] is True
    assert parameters["type.params.pipeline_id"]["schema"]["items"]["type"] == "integer"
    assert parameters["assignee.id"]["schema"]["type"] == "integer"
    assert parameters["is_active"]["schema"]["type"] == "boolean"
    assert parameters["period.start"]["schema"]["format"] == "date"
    assert all(p["in"] == "query" and p["description"] for p in parameters.values())


def test_results_parameters_are_required(document):
    parameters = query_parameters(document["paths"]["/api/v1/goals/{id}/results"]["get"])
    assert [(p["name"], p["required"]) for p in parameters] == [("period.start", True), ("period.end", True)]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/goals/find",
        "/api/v1/goals/{id}/results",
        "/api/v2/pipelines",
        "/api/v2/stages",
        "/api/v1/activityTypes",
        "/api/v1/users",
        "/api/v1/currencies",
    ],
)
def test_reads_document_their_caching_headers_and_304(document, path):
    operation = document["paths"][path]["get"]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"If-None-Match", "Cache-Control"}
    assert set(operation["responses"]["200"]["headers"]) == {
        "ETag",
        "X-Cache",
        "Cache-Control",
        "Server-Timing",
    }
    assert "content" not in operation["responses"]["304"]


def test_errors_use_the_one_envelope(document):
    error = document["components"]["schemas"]["Error"]
    assert set(error["properties"]["code"]["enum"]) >= {
        "unauthorized",
        "forbidden",
        "not_installed",
        "reauth_required",
        "validation_failed",
        "rate_limited",
        "upstream_unavailable",
        "upstream_error",
        "outcome_unknown",
        "not_found",
        "payload_too_large",
        "unsupported_media_type",
    }
    assert {"success", "error", "error_info", "code", "details"} <= set(error["properties"])
    for _, _, operation in operations(document):
        assert {"200", "201"} & set(operation["responses"])
    add_responses = document["paths"]["/api/v1/goals"]["post"]["responses"]
    assert {"400", "401", "403", "409", "413", "415", "429", "502", "503", "504"} <= set(add_responses)
    rate_limited = resolve(document, add_responses["429"]["$ref"])
    assert "Retry-After" in rate_limited["headers"]


def test_security_schemes_are_the_partner_key_and_bearer(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["partnerKey"] == {
        **schemes["partnerKey"],
        "type": "apiKey",
        "in": "header",
        "name": "x-api-token",
    }
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"partnerKey": []}, {"bearer": []}]
    assert document["paths"]["/api/openapi.json"]["get"]["security"] == []


def test_the_installation_never_documents_a_token(document):
    installation = document["components"]["schemas"]["Installation"]
    assert "access_token_expires_at" in installation["properties"]
    assert not any(name in installation["properties"] for name in ("access_token", "refresh_token", "token"))
