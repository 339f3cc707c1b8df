"""The goal form in headless Chromium: goals made by choosing names (pipelines, stages that follow them,
activity types, a person, a currency), cards that say in words what a goal counts, the plain id inputs a
missing scope falls back to, numbers and dates in the user's locale, the API's rules checked before sending
with the API's own words, and every flow by keyboard alone."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Locator, expect
from werkzeug.datastructures import MultiDict

from pd_app.goals import validation

from .axe import assert_accessible_in_both_themes
from .conftest import Demo, Tab


def _goals(demo: Demo, user_id: int = 2001, company_id: int = 1001) -> dict[str, dict]:
    found = demo.sandbox.find_goals(company_id, user_id, MultiDict({"is_active": "true"}))
    return {goal["title"]: goal for goal in found}


def _open_form(demo: Demo, tab: Tab, user: int = 2001) -> None:
    tab.page.goto(demo.crm(user=user))
    tab.wait_for_progress()
    tab.panel.get_by_role("button", name="+ Goal").click()
    tab.wait_for_screen("form")


def test_a_goal_made_by_choosing_names_is_described_in_words(demo: Demo, tab: Tab):
    demo.install(2001)
    _open_form(demo, tab)
    panel = tab.panel
    stage = panel.get_by_role("combobox", name="Stage")

    panel.get_by_label("Title").fill("Proposals from partners")
    panel.get_by_label("Goal type", exact=True).select_option(label="Deals progressed")
    # Stages follow the pipelines: all of them, grouped by pipeline, until some are chosen.
    expect(stage.locator("optgroup")).to_have_count(3)
    panel.get_by_role("checkbox", name="Partnerships").check()
    expect(panel.get_by_role("checkbox", name="All pipelines")).not_to_be_checked()
    expect(stage.locator("option")).to_have_text(["Any stage", "Lead in", "Discovery call", "Agreement sent"])
    stage.select_option(label="Agreement sent")
    panel.get_by_role("checkbox", name="Partnerships").uncheck()  # the last one: back to all pipelines
    expect(panel.get_by_role("checkbox", name="All pipelines")).to_be_checked()
    panel.get_by_role("checkbox", name="Sales pipeline").check()
    expect(stage.locator("option")).to_have_text(
        ["Any stage", "Qualified", "Contact made", "Proposal made", "Negotiations started"]
    )
    expect(stage).to_have_value("")  # Agreement sent is not a Sales pipeline stage: it was dropped
    stage.select_option(label="Proposal made")

    panel.get_by_label("Track by").select_option("sum")
    currency = panel.get_by_label("Currency", exact=True)
    # Pipedrive's currencies, the user's default (EUR) first and chosen, then by code.
    expect(currency.locator("option").first).to_have_text("EUR · Euro")
    expect(currency.locator("option").nth(1)).to_have_text("CHF · Swiss Franc")
    expect(currency).to_have_value("1")
    currency.select_option(label="USD · US Dollar")
    panel.get_by_label("Target").fill("5000")
    panel.get_by_label("Counted per").select_option("quarterly")
    tab.shoot("panel-form-pickers")
    assert_accessible_in_both_themes(tab, "goal form with pickers")
    panel.get_by_role("button", name="Save goal").click()

    tab.wait_for_progress()
    card = panel.locator(".goal", has_text="Proposals from partners")
    # Ada's Pipedrive is in British English (en_GB): dollars are "US$" there.
    expect(card.locator(".goal-meta")).to_have_text(
        "Deals progressed to Proposal made · Sales pipeline · per quarter · You"
    )
    expect(card.locator(".goal-value")).to_have_text(re.compile(r" of US\$5,000$"))
    created = _goals(demo)["Proposals from partners"]
    assert created["type"] == {"name": "deals_progressed", "params": {"pipeline_id": [1], "stage_id": 3}}
    assert created["assignee"] == {"id": 2001, "type": "person"}
    assert created["expected_outcome"] == {"target": 5000, "tracking_metric": "sum", "currency_id": 2}
    assert created["interval"] == "quarterly" and created["duration"]["end"] is None

    # A goal for a colleague, chosen by name: it goes to their panel, and the snackbar says so.
    panel.get_by_role("button", name="+ Goal").click()
    panel.get_by_label("Title").fill("Sam's wins")
    panel.get_by_label("Assigned to").select_option(label="Someone else")
    person = panel.get_by_label("Person")
    people = ["Choose a person", "Ada Admin (you)", "Sam Seller", "Rita Rep"]
    expect(person.locator("option")).to_have_text(people)
    panel.get_by_label("Target").fill("8")
    panel.get_by_role("button", name="Save goal").click()
    expect(panel.locator("#f-assignee-id-error")).to_have_text("Person is required.")
    expect(person).to_be_focused()
    person.select_option(label="Sam Seller")
    panel.get_by_role("button", name="Save goal").click()
    expect(tab.page.locator(".snackbar").last).to_have_text(
        "Goal created for Sam Seller: it shows in their panel, not in yours"
    )
    expect(panel.get_by_role("button", name="+ Goal")).to_be_focused()
    assert _goals(demo, user_id=2002)["Sam's wins"]["assignee"] == {"id": 2002, "type": "person"}


def test_editing_keeps_the_chosen_names(demo: Demo, tab: Tab):
    demo.install(2001)
    tab.page.goto(demo.crm())
    tab.wait_for_progress()
    panel = tab.panel
    card = panel.locator(".goal", has_text="Calls and meetings")
    expect(card.locator(".goal-meta")).to_have_text("Activities completed · Call, Meeting · per week · You")
    card.get_by_role("button", name="Edit Calls and meetings").click()
    tab.wait_for_screen("form")
    types = panel.get_by_role("group", name="Activity types")
    expect(types.get_by_role("checkbox", name="Call")).to_be_checked()
    expect(types.get_by_role("checkbox", name="Meeting")).to_be_checked()
    expect(types.get_by_role("checkbox", name="Email")).not_to_be_checked()
    expect(types.get_by_role("checkbox", name="All activity types")).not_to_be_checked()
    expect(panel.get_by_label("End date", exact=True)).to_be_enabled()
    expect(panel.get_by_label("No end date")).not_to_be_checked()
    types.get_by_role("checkbox", name="Email").check()
    panel.get_by_label("Target").fill("45")
    panel.get_by_role("button", name="Save goal").click()
    tab.wait_for_progress()
    expect(card.locator(".goal-meta")).to_have_text(
        "Activities completed · Call, Meeting, Email · per week · You"
    )
    saved = _goals(demo)["Calls and meetings"]
    assert saved["type"]["params"]["activity_type_id"] == [1, 2, 5]
    assert saved["expected_outcome"]["target"] == 45


def _api_words(body: dict, labels: dict[str, str]) -> dict[str, str]:
    """What the proxy answers for this body, written as the form writes it: the path replaced by the label."""
    try:
        validation.validate_add(body)
    except validation.ValidationFailed as exc:
        details = exc.details
    else:
        raise AssertionError("the API accepted the body")
    words = {}
    for detail in details:
        label = labels[detail["field"]]
        text = label + detail["message"][len(detail["field"]) :]
        words[label] = text.replace("duration.start", "the start date")
    return words


def test_every_invalid_field_at_once_in_the_apis_words(demo: Demo, tab: Tab):
    demo.install(2001)
    posts = []
    tab.page.on("request", lambda r: r.method == "POST" and "/api/v1/goals" in r.url and posts.append(r))
    _open_form(demo, tab)
    panel = tab.panel
    panel.get_by_label("Assigned to").select_option(label="A team")
    panel.get_by_label("Team ID").fill("0")
    panel.get_by_label("Target").fill("-5")
    panel.get_by_label("No end date").uncheck()
    panel.get_by_label("End date", exact=True).fill("2000-01-31")
    panel.get_by_role("button", name="Save goal").click()

    # The same mistakes sent to the API get these answers; the form says the same, before sending anything.
    api = _api_words(
        {
            "assignee": {"id": 0, "type": "team"},
            "type": {"name": "deals_won", "params": {"pipeline_id": None}},
            "expected_outcome": {"target": -5, "tracking_metric": "quantity"},
            "duration": {"start": "2026-01-01", "end": "2000-01-31"},
            "interval": "monthly",
        },
        {"assignee.id": "Team ID", "expected_outcome.target": "Target", "duration.end": "End date"},
    )
    assert api == {
        "Team ID": "Team ID must be at least 1.",
        "Target": "Target must be at least 0.",
        "End date": "End date must not be before the start date.",
    }
    expect(panel.locator("#f-assignee-id-error")).to_have_text(api["Team ID"])
    expect(panel.locator("#f-target-error")).to_have_text(api["Target"])
    expect(panel.locator("#f-end-error")).to_have_text(api["End date"])
    alert = panel.get_by_role("alert")
    expect(alert).to_have_text("3 fields need correcting: Team ID, Target, End date.")
    expect(panel.get_by_label("Team ID")).to_be_focused()
    for name, error in (("Team ID", "f-assignee-id-error"), ("Target", "f-target-error")):
        control = panel.get_by_label(name)
        expect(control).to_have_attribute("aria-invalid", "true")
        expect(control).to_have_attribute("aria-describedby", re.compile(rf"\b{error}\b"))
    tab.shoot("panel-validation-errors")
    assert_accessible_in_both_themes(tab, "goal form with errors")

    # Other mistakes, again all at once: missing values and text that is not a number.
    panel.get_by_label("Team ID").fill("")
    panel.get_by_label("Target").fill("lots")
    panel.get_by_label("Start date").fill("")
    panel.get_by_label("End date", exact=True).fill("")
    panel.get_by_role("button", name="Save goal").click()
    expect(alert).to_have_text("4 fields need correcting: Team ID, Target, Start date, End date.")
    expect(panel.locator(".field-error:visible")).to_have_text(
        [
            "Team ID is required.",
            "Target must be a number.",
            "Start date is required.",
            "End date is required.",
        ]
    )
    assert _api_words(
        {
            "assignee": {"type": "team"},
            "type": {"name": "deals_won"},
            "expected_outcome": {"target": "lots", "tracking_metric": "quantity"},
            "duration": {},
            "interval": "monthly",
        },
        {
            "assignee.id": "Team ID",
            "expected_outcome.target": "Target",
            "duration.start": "Start date",
            "duration.end": "End date",
        },
    ) == {
        "Team ID": "Team ID is required.",
        "Target": "Target must be a number.",
        "Start date": "Start date is required.",
        "End date": "End date is required.",
    }

    # Fixed: the errors go, the goal is saved, an open end explained as "No end date".
    panel.get_by_label("Assigned to").select_option(label="Me")
    panel.get_by_label("Target").fill("12,5")  # not en_GB's decimal mark: still not a number
    panel.get_by_label("Start date").fill("2026-01-01")
    panel.get_by_label("No end date").check()
    expect(panel.get_by_label("End date", exact=True)).to_be_disabled()
    expect(panel.get_by_text("An open-ended goal keeps counting, period after period.")).to_be_visible()
    panel.get_by_role("button", name="Save goal").click()
    expect(alert).to_have_text("1 field needs correcting: Target.")
    expect(panel.locator("#f-target-error")).to_have_text("Target must be a number.")
    assert posts == []
    panel.get_by_label("Target").fill("12.5")
    panel.get_by_label("Title").fill("Fixed")
    panel.get_by_role("button", name="Save goal").click()
    tab.wait_for_screen("list")
    assert len(posts) == 1
    assert _goals(demo)["Fixed"]["expected_outcome"]["target"] == 12.5


def test_what_the_api_still_refuses_is_shown_beside_the_fields(demo: Demo, tab: Tab):
    demo.install(2001)
    refusal = {
        "success": False,
        "error": "The request is not valid.",
        "code": "validation_failed",
        "details": [
            {
                "field": "expected_outcome.target",
                "message": "expected_outcome.target must be at most 1000000000000000.",
                "code": "too_large",
            },
            {
                "field": "duration.end",
                "message": "duration.end must not be before duration.start.",
                "code": "invalid_range",
            },
            {
                "field": "body",
                "message": "body has 1 more problem(s) not listed.",
                "code": "too_many_problems",
            },
        ],
    }
    # Pipedrive-compatible refusals the form's own checks would not have let through: as if the rules changed.
    tab.page.route(
        "**/api/v1/goals",
        lambda route: (
            route.fulfill(status=400, content_type="application/json", body=json.dumps(refusal))
            if route.request.method == "POST"
            else route.fallback()
        ),
    )
    _open_form(demo, tab)
    panel = tab.panel
    panel.get_by_label("Target").fill("10")
    panel.get_by_role("button", name="Save goal").click()
    expect(panel.locator("#f-target-error")).to_have_text("Target must be at most 1000000000000000.")
    expect(panel.locator("#f-end-error")).to_have_text("End date must not be before the start date.")
    expect(panel.get_by_role("alert")).to_have_text(
        "2 fields need correcting: Target, End date. body has 1 more problem(s) not listed."
    )
    expect(panel.get_by_label("Target")).to_be_focused()


def test_a_missing_scope_falls_back_to_id_inputs_with_a_hint(demo: Demo, tab: Tab):
    # An installation without deals:read, activities:read and users:read (Pipedrive answers 403 for those).
    demo.sandbox.set_knobs(granted_scopes=["goals:full"])
    demo.install(2001)
    tab.page.goto(demo.crm())
    tab.wait_for_progress()
    panel = tab.panel
    # Cards still say what they count, with ids where the names cannot be read; currencies need no scope.
    expect(panel.locator(".goal", has_text="Calls and meetings").locator(".goal-meta")).to_have_text(
        "Activities completed · Activity types 1, 2 · per week · You"
    )
    expect(panel.locator(".goal", has_text="Revenue forecast this year").locator(".goal-value")).to_have_text(
        re.compile(r"of €1,200,000$")
    )
    panel.get_by_role("button", name="+ Goal").click()
    tab.wait_for_screen("form")
    hint = "Ask an admin to grant access to {} to pick them by name."
    expect(panel.get_by_text(hint.format("pipelines"))).to_be_visible()
    pipelines = panel.get_by_label("Pipeline IDs")
    expect(pipelines).to_have_attribute("aria-describedby", "f-pipelines-hint")
    panel.get_by_label("Goal type", exact=True).select_option(label="Deals progressed")
    expect(panel.get_by_text(hint.format("stages"))).to_be_visible()
    panel.get_by_label("Assigned to").select_option(label="Someone else")
    expect(panel.get_by_text(hint.format("users"))).to_be_visible()
    panel.get_by_label("Track by").select_option("sum")
    expect(panel.get_by_label("Currency", exact=True)).to_be_visible()  # GET /currencies needs only `base`
    tab.shoot("panel-scope-fallback")
    assert_accessible_in_both_themes(tab, "form with id inputs")

    panel.get_by_label("Title").fill("By ids")
    panel.get_by_label("User ID").fill("2002")
    pipelines.fill("1, x")
    panel.get_by_label("Stage ID").fill("3")
    panel.get_by_label("Target").fill("5")
    panel.get_by_role("button", name="Save goal").click()
    expect(panel.locator("#f-pipelines-error")).to_have_text("Pipeline IDs must be an integer.")
    pipelines.fill("1, 2")
    panel.get_by_role("button", name="Save goal").click()
    expect(tab.page.locator(".snackbar").last).to_have_text(
        "Goal created for User 2002: it shows in their panel, not in yours"
    )
    goal = _goals(demo, user_id=2002)["By ids"]
    assert goal["type"] == {"name": "deals_progressed", "params": {"pipeline_id": [1, 2], "stage_id": 3}}


def test_numbers_dates_and_money_in_the_users_locale(demo: Demo, tab: Tab):
    demo.install(2003)  # Rita Rep uses Pipedrive in German (de_DE); the browser itself is en-US
    tab.page.goto(demo.crm(user=2003))
    tab.wait_for_progress()
    panel = tab.panel
    # The words are the app's (English); numbers, money and dates are written as in Germany.
    company = panel.locator(".goal", has_text="Revenue forecast this year")
    expect(company.locator(".goal-value")).to_have_text(re.compile(r"^\d{3}\.\d{3}\s€ of 1\.200\.000\s€$"))
    expect(company.locator(".goal-period")).to_have_text(re.compile(r"^1\. Jan\. – 31\. Dez\. \d{4} · "))
    mine = panel.locator(".goal", has_text="New deals every week")
    expect(mine.locator(".goal-value")).to_have_text(re.compile(r"^\d+ of 15$"))
    # The form reads a number written the German way, and shows it back so when editing.
    panel.get_by_role("button", name="+ Goal").click()
    panel.get_by_label("Title").fill("Halbe Sachen")
    panel.get_by_label("Track by").select_option("sum")
    panel.get_by_label("Target").fill("2.500,5")
    panel.get_by_role("button", name="Save goal").click()
    tab.wait_for_progress()
    card = panel.locator(".goal", has_text="Halbe Sachen")
    expect(card.locator(".goal-value")).to_have_text(re.compile(r"of 2\.501\s€$"))
    assert _goals(demo, user_id=2003)["Halbe Sachen"]["expected_outcome"]["target"] == 2500.5
    card.get_by_role("button", name="Edit Halbe Sachen").click()
    expect(panel.get_by_label("Target")).to_have_value("2500,5")


def _is_focused(target: Locator) -> bool:
    return target.evaluate("el => el === el.ownerDocument.activeElement && el.ownerDocument.hasFocus()")


def _tab_to(tab: Tab, target: Locator, *, back: bool = False, limit: int = 60) -> None:
    """Press Tab (Shift+Tab) until the target has the focus, as a keyboard user would; fail if it never
    does."""
    for _ in range(limit):
        if _is_focused(target):
            return
        tab.page.keyboard.press("Shift+Tab" if back else "Tab")
    raise AssertionError(f"{target} is not reachable with the Tab key")


def test_create_edit_delete_and_filter_by_keyboard_alone(demo: Demo, tab: Tab):
    demo.install(2001)
    tab.page.goto(demo.crm())
    tab.wait_for_progress()
    panel = tab.panel
    keyboard = tab.page.keyboard
    new_goal = panel.get_by_role("button", name="+ Goal")

    # Into the panel from Pipedrive's page, open the form: focus moves to it; Escape goes back to "+ Goal".
    _tab_to(tab, new_goal)
    keyboard.press("Enter")
    tab.wait_for_screen("form")
    expect(panel.get_by_label("Title")).to_be_focused()
    keyboard.press("Escape")
    tab.wait_for_screen("list")
    expect(new_goal).to_be_focused()

    # Create: type, choose from selects with the arrow keys, tick a pipeline with Space, submit with Enter.
    keyboard.press("Enter")
    keyboard.type("Keyboard deals")
    _tab_to(tab, panel.get_by_role("checkbox", name="Renewals"))
    keyboard.press("Space")
    _tab_to(tab, panel.get_by_label("Track by"))
    keyboard.press("ArrowDown")  # Count -> Value
    expect(panel.get_by_label("Track by")).to_have_value("sum")
    _tab_to(tab, panel.get_by_label("Target"))
    keyboard.type("-1")
    keyboard.press("Enter")
    expect(panel.get_by_role("alert")).to_have_text("1 field needs correcting: Target.")
    expect(panel.get_by_label("Target")).to_be_focused()  # the error is where the keyboard is
    keyboard.press("Control+A")
    keyboard.type("900")
    keyboard.press("Enter")
    tab.wait_for_progress()
    card = panel.locator(".goal", has_text="Keyboard deals")
    expect(card.locator(".goal-meta")).to_have_text("Deals won · Renewals · per month · You")
    expect(panel.locator(".announcer")).to_have_text("Goal created")  # said to screen readers too
    edit = card.get_by_role("button", name="Edit Keyboard deals")
    expect(edit).to_be_focused()  # focus lands on the new goal's card

    # Edit: Enter on the card's edit button, change the target, save; focus comes back to the same button.
    keyboard.press("Enter")
    tab.wait_for_screen("form")
    expect(panel.get_by_role("checkbox", name="Renewals")).to_be_checked()
    _tab_to(tab, panel.get_by_label("Target"))
    keyboard.press("Control+A")
    keyboard.type("950")
    keyboard.press("Enter")
    tab.wait_for_progress()
    expect(card.locator(".goal-value")).to_have_text(re.compile(r"of €950(\.00)?$"))
    expect(edit).to_be_focused()
    assert _goals(demo)["Keyboard deals"]["expected_outcome"]["target"] == 950

    # Delete: the next button, Pipedrive's confirmation (Cancel is focused first), Tab to Delete, Enter.
    keyboard.press("Tab")
    expect(card.get_by_role("button", name="Delete Keyboard deals")).to_be_focused()
    keyboard.press("Enter")
    dialog = tab.page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    keyboard.press("Escape")  # first cancelled: focus goes back to the delete button
    expect(dialog).to_be_hidden()
    expect(card.get_by_role("button", name="Delete Keyboard deals")).to_be_focused()
    keyboard.press("Enter")
    expect(dialog).to_be_visible()
    keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Delete")).to_be_focused()
    keyboard.press("Enter")
    expect(panel.locator(".goal", has_text="Keyboard deals")).to_have_count(0)
    expect(new_goal).to_be_focused()
    assert "Keyboard deals" not in _goals(demo)

    # Filters: the Active/Inactive radios with the arrow keys, the type filter with the arrow keys.
    _tab_to(tab, panel.get_by_role("radio", name="Active", exact=True), back=True)
    keyboard.press("ArrowRight")
    tab.wait_for_progress()
    expect(panel.locator(".goal-title")).to_have_text(["Deals won last year"])
    keyboard.press("ArrowLeft")
    tab.wait_for_progress()
    _tab_to(tab, panel.get_by_label("Filter by goal type"))
    for _ in range(4):
        keyboard.press("ArrowDown")  # All types -> Deals won -> ... -> Revenue forecast
    expect(panel.locator(".goal-title")).to_have_text(["Revenue forecast this year"])
