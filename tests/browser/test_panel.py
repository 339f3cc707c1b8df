"""The panel inside the sandbox's CRM deal page, in headless Chromium: it initializes through the SDK, lists
goals with progress, creates, edits and deletes a goal, follows the theme, and never uses a cookie."""

from __future__ import annotations

import math
import re
import time

from playwright.sync_api import expect
from werkzeug.datastructures import MultiDict

from .axe import assert_accessible_in_both_themes
from .conftest import Demo, Tab


def _goals(demo: Demo, user_id: int = 2001) -> dict[str, dict]:
    found = demo.sandbox.find_goals(1001, user_id, MultiDict({"assignee.id": str(user_id)}))
    return {goal["title"]: goal for goal in found}


def test_panel_initializes_and_lists_goals_with_progress(demo: Demo, tab: Tab):
    demo.install(2001)
    api_requests = []
    tab.page.on("request", lambda request: "/api/v1/" in request.url and api_requests.append(request))
    # A first-party cookie the panel must never send: its calls use the JWT alone (credentials: "omit").
    tab.page.context.add_cookies([{"name": "probe", "value": "must-not-be-sent", "url": demo.url}])

    tab.page.goto(demo.crm(user=2001))
    tab.wait_for_progress()

    # The SDK handshake: initialize first and well within Pipedrive's 10 s, then the event listeners.
    log = tab.host("window.sandboxHost.log")
    assert (log[0]["type"], log[0]["command"]) == ("command", "initialize")
    assert log[0]["at"] - tab.host("performance.timeOrigin") < 10_000
    assert {e["event"] for e in log if e["type"] == "listener"} >= {"user_settings_change", "visibility"}

    panel = tab.panel
    expect(panel.locator(".group-title")).to_have_text(
        [re.compile("^Your goals"), re.compile("^Company goals")]
    )
    mine = panel.locator(".goal", has_text="Calls and meetings")
    expect(mine.locator(".goal-value")).to_have_text(re.compile(r"^\d+ of 40$"))
    expect(mine.locator(".goal-percent")).to_have_text(re.compile(r"^\d+%$"))
    expect(mine.locator(".chip")).to_have_text(re.compile("^(On track|Behind|Achieved)$"))
    expect(mine.locator(".goal-period")).to_have_text(re.compile(r"\d{4} · (\d+ days? left|last day)$"))
    expect(mine.locator(".goal-meta")).to_have_text("Activities completed · Call, Meeting · per week · You")
    assert float(mine.locator(".bar-fill").evaluate("el => parseFloat(el.style.width)")) > 0
    company = panel.locator(".goal", has_text="Revenue forecast this year")
    expect(company.locator(".goal-value")).to_have_text(re.compile(r"^€[\d,.]+ of €1,200,000$"))
    # Other people's goals are not "yours", and another company's never show.
    expect(panel.locator(".goal", has_text="New deals every week")).to_have_count(0)
    expect(panel.locator(".goal", has_text="Globex")).to_have_count(0)

    # RESIZE: the frame is as tall as the panel's content, within 100-750 px.
    frame = tab.panel_frame()
    content = frame.evaluate("document.getElementById('app').getBoundingClientRect().height")
    expect(tab.page.locator("#panel-frame")).to_have_js_property(
        "offsetHeight", tab.host("window.sandboxHost.height")
    )
    assert abs(tab.host("window.sandboxHost.height") - min(750, max(100, math.ceil(content)))) <= 1
    assert "resize" in tab.commands()

    # The JWT left the address bar; Pipedrive's other parameters stayed (the SDK reads `id` and `theme`).
    assert "token=" not in frame.url and "id=" in frame.url and "theme=light" in frame.url

    # No cookies: API calls carry only the bearer JWT, and nothing sets a cookie.
    assert api_requests
    for request in api_requests:
        headers = request.all_headers()
        assert headers["authorization"].startswith("Bearer ey")
        assert "cookie" not in headers, request.url
        assert "set-cookie" not in request.response().all_headers()
    assert [cookie["name"] for cookie in tab.page.context.cookies()] == ["probe"]
    tab.shoot("panel-goals-light")
    tab.shoot("crm-deal-page", full_page=True)
    assert_accessible_in_both_themes(tab, "goal list", host=True)


def test_filters_switch_between_active_inactive_and_types(demo: Demo, tab: Tab):
    demo.install(2001)
    tab.page.goto(demo.crm())
    tab.wait_for_progress()
    panel = tab.panel
    panel.get_by_label("Filter by goal type").select_option("revenue_forecast")
    expect(panel.locator(".goal-title")).to_have_text(["Revenue forecast this year"])
    panel.get_by_label("Filter by goal type").select_option("deals_started")
    expect(panel.locator(".empty-title")).to_have_text("No goals of this type")
    panel.get_by_label("Filter by goal type").select_option("")
    panel.get_by_text("Inactive").click()
    tab.wait_for_progress()
    expect(panel.locator(".goal-title")).to_have_text(["Deals won last year"])
    expect(panel.locator(".goal .chip")).to_have_text(re.compile("^(Missed|Achieved)$"))
    assert_accessible_in_both_themes(tab, "inactive goals")


def test_loading_then_an_empty_state_that_invites_the_first_goal(demo: Demo, tab: Tab):
    demo.install(2101)  # Gil, at Globex: one goal of his own, none for the company
    for goal in demo.sandbox.find_goals(1002, 2101, MultiDict()):
        demo.sandbox.delete_goal(1002, goal["id"])
    demo.sandbox.set_knobs(api_delay_s=5)  # a slow Pipedrive, to see (and check) the loading screen
    tab.page.goto(demo.crm(user=2101))
    tab.wait_for_screen("loading")
    expect(tab.panel.get_by_text("Loading your goals…")).to_be_visible()
    tab.shoot("panel-loading")
    assert_accessible_in_both_themes(tab, "loading")
    tab.wait_for_screen("loading")  # the check above saw the loading screen, not the list after it
    demo.sandbox.set_knobs(api_delay_s=0)
    tab.wait_for_screen("list")
    empty = tab.panel.locator(".empty")
    expect(empty.get_by_role("heading")).to_have_text("No goals yet")
    tab.shoot("panel-empty")
    assert_accessible_in_both_themes(tab, "no goals yet")
    # Keyboard only: Enter opens the form with the title focused, Escape goes back.
    empty.get_by_role("button", name="Create your first goal").focus()
    tab.page.keyboard.press("Enter")
    tab.wait_for_screen("form")
    expect(tab.panel.get_by_label("Title")).to_be_focused()
    tab.page.keyboard.press("Escape")
    tab.wait_for_screen("list")


def test_create_edit_and_delete_a_goal(demo: Demo, tab: Tab):
    demo.install(2001)
    tab.page.goto(demo.crm())
    tab.wait_for_progress()
    panel = tab.panel

    # Create: the form shows only what the chosen type allows (the deeper form tests: test_panel_form.py).
    panel.get_by_role("button", name="+ Goal").click()
    tab.wait_for_screen("form")
    panel.get_by_label("Goal type", exact=True).select_option("activities_added")
    expect(panel.get_by_role("group", name="Activity types")).to_be_visible()
    expect(panel.get_by_role("group", name="Pipelines")).to_be_hidden()
    expect(panel.get_by_label("Currency", exact=True)).to_be_hidden()
    panel.get_by_label("Goal type", exact=True).select_option("deals_won")
    panel.get_by_label("Track by").select_option("sum")
    expect(panel.get_by_label("Currency", exact=True)).to_be_visible()
    expect(panel.get_by_role("combobox", name="Stage")).to_have_count(0)
    tab.shoot("panel-goal-form")
    assert_accessible_in_both_themes(tab, "goal form")
    panel.get_by_label("Title").fill("Q4 wins")
    panel.get_by_label("Target").fill("25000")
    panel.get_by_role("checkbox", name="Sales pipeline").check()
    panel.get_by_role("checkbox", name="Partnerships").check()
    panel.get_by_role("button", name="Save goal").click()
    tab.wait_for_progress()
    expect(tab.page.locator(".snackbar").last).to_have_text("Goal created")
    card = panel.locator(".goal", has_text="Q4 wins")
    expect(card.locator(".goal-value")).to_have_text(re.compile(r"of €25,000$"))
    words = "Deals won · Sales pipeline, Partnerships · per month · You"
    expect(card.locator(".goal-meta")).to_have_text(words)
    created = _goals(demo)["Q4 wins"]
    assert created["assignee"] == {"id": 2001, "type": "person"}
    assert created["type"] == {"name": "deals_won", "params": {"pipeline_id": [1, 2]}}
    assert created["expected_outcome"] == {"target": 25000, "tracking_metric": "sum", "currency_id": 1}
    assert created["duration"]["end"] is None and created["interval"] == "monthly"

    # Edit.
    card.get_by_role("button", name="Edit Q4 wins").click()
    tab.wait_for_screen("form")
    expect(panel.locator(".form-title")).to_have_text("Edit goal")
    expect(panel.get_by_label("Target")).to_have_value("25000")
    panel.get_by_label("Title").fill("Q4 wins (stretch)")
    panel.get_by_label("Target").fill("30000")
    panel.get_by_role("button", name="Save goal").click()
    tab.wait_for_progress()
    expect(tab.page.locator(".snackbar").last).to_have_text("Goal saved")
    card = panel.locator(".goal", has_text="Q4 wins (stretch)")
    expect(card.locator(".goal-value")).to_have_text(re.compile(r"of €30,000$"))
    saved = _goals(demo)["Q4 wins (stretch)"]
    assert saved["expected_outcome"]["target"] == 30000
    assert saved["type"] == {"name": "deals_won", "params": {"pipeline_id": [1, 2]}}

    # Delete, confirmed through the host's SHOW_CONFIRMATION: first cancelled, then confirmed.
    dialog = tab.page.locator("dialog#confirm")
    card.get_by_role("button", name="Delete Q4 wins (stretch)").click()
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Delete this goal?")
    expect(dialog.locator("#confirm-ok")).to_have_text("Delete")
    tab.page.locator("#snackbars").evaluate("box => box.replaceChildren()")  # a cleaner picture
    tab.shoot("delete-confirmation", full_page=True)
    assert_accessible_in_both_themes(tab, "delete confirmation", host=True)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert "Q4 wins (stretch)" in _goals(demo)

    card.get_by_role("button", name="Delete Q4 wins (stretch)").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(tab.page.locator(".snackbar").last).to_have_text("Goal deleted")
    expect(panel.locator(".goal", has_text="Q4 wins")).to_have_count(0)
    assert "Q4 wins (stretch)" not in _goals(demo)
    commands = tab.commands()
    assert commands.count("show_confirmation") == 2 and commands.count("show_snackbar") == 3


def test_theme_follows_pipedrive(demo: Demo, tab: Tab):
    demo.install(2001)
    tab.page.goto(demo.crm(theme="light"))
    tab.wait_for_progress()
    html = tab.panel.locator("html")
    expect(html).to_have_class("theme-light")
    tab.page.locator("#theme-toggle").click()  # Pipedrive's USER_SETTINGS_CHANGE event
    expect(html).to_have_class("theme-dark")
    expect(tab.panel.locator("body")).to_have_css("background-color", "rgb(31, 34, 41)")
    assert any(
        e["type"] == "event" and e["event"] == "user_settings_change"
        for e in tab.host("window.sandboxHost.log")
    )
    tab.shoot("panel-goals-dark")
    # A panel loaded in the dark theme starts dark (the `theme` query parameter), without a light flash.
    tab.page.reload()
    expect(html).to_have_class("theme-dark")
    tab.wait_for_progress()


def test_the_jwt_is_renewed_through_the_sdk_before_it_expires(demo: Demo, tab: Tab):
    demo.install(2001)
    tokens = []
    tab.page.on(
        "request",
        lambda r: "/api/v1/goals/find" in r.url and tokens.append(r.all_headers()["authorization"]),
    )
    tab.page.clock.install(time=time.time())
    tab.page.goto(demo.crm())
    tab.wait_for_progress()
    assert "get_signed_token" not in tab.commands()  # the page's own JWT is still fresh
    first = tokens[-1]
    tab.page.wait_for_timeout(1100)  # real time: a JWT signed in the same second would be byte-identical
    tab.page.clock.fast_forward("04:10")  # within a minute of the 5-minute expiry
    tab.panel.get_by_text("Inactive").click()
    expect(tab.panel.locator(".goal-title")).to_have_text(["Deals won last year"])  # the new load is done
    assert "get_signed_token" in tab.commands()
    assert tokens[-1] != first
