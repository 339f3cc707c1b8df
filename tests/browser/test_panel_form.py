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
    expect(person.locator("option")).to_have_text(["Choose a person", "Ada Admin (you)", "Sam Seller", "Rita Rep"])
    person.select_option(label="Sam Seller")
    panel.get_by_label("Target").fill("8")
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
