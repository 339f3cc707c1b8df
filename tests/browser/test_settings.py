"""The app's settings page inside the sandbox's "Pipedrive" (its deep link frames /ui/settings), in headless
Chromium: an admin sees installations, keys, webhooks, budget and limits in both themes; a non-admin sees an
explanation and no data; a key made on the page works through the proxy and stops once revoked through
Pipedrive's confirmation; webhooks are added and removed; the budget chart says what it shows."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import requests
from playwright.sync_api import Frame, FrameLocator, expect

from pd_app.config import SANDBOX_CLIENT_ID
from pd_app.db import get_session
from pd_app.models import BudgetDay, Webhook, WebhookAttempt, utcnow

from .axe import assert_accessible
from .conftest import Demo, Tab

FIND = "/api/v1/goals/find"


def settings_url(demo: Demo, user: int = 2001, theme: str = "light") -> str:
    query = urlencode({"user": user, "theme": theme})
    return f"{demo.url}/sandbox/crm/settings/marketplace/app/{SANDBOX_CLIENT_ID}/app-settings?{query}"


def page_of(tab: Tab) -> FrameLocator:
    return tab.page.frame_locator("#settings-frame")


def open_settings(demo: Demo, tab: Tab, user: int = 2001, theme: str = "light") -> FrameLocator:
    tab.page.goto(settings_url(demo, user, theme))
    return page_of(tab)


def wait_for(frame: FrameLocator, screen: str) -> None:
    expect(frame.locator("#app")).to_have_attribute("data-screen", screen)


def shoot_settings(tab: Tab, name: str) -> None:
    tab.shoot(name, element=tab.page.locator(".app-settings-box"))


def settings_frame(tab: Tab) -> Frame:
    frame = tab.page.locator("#settings-frame").element_handle().content_frame()
    assert frame is not None
    return frame


def accessible_in_both_themes(tab: Tab, context: str, *, host: bool = False) -> None:
    """axe's WCAG A/AA check of the settings page in its theme, then in the other one (switched as Pipedrive
    does, USER_SETTINGS_CHANGE), then back; with `host`, the sandbox page around it (its dialog) too."""
    html = page_of(tab).locator("html")
    start = "dark" if "theme-dark" in (html.get_attribute("class") or "") else "light"
    for theme in (start, "light" if start == "dark" else "dark"):
        if theme != start:
            tab.page.locator("#theme-toggle").dispatch_event("click")  # also behind a modal dialog
            expect(html).to_have_class(f"theme-{theme}")
        assert_accessible(settings_frame(tab), f"settings page, {context}, {theme}")
        if host:
            assert_accessible(tab.page, f"sandbox settings page, {context}, {theme}")
    tab.page.locator("#theme-toggle").dispatch_event("click")
    expect(html).to_have_class(f"theme-{start}")


def furnish(demo: Demo) -> None:
    """A company that has used the app a while: a key, a webhook with deliveries, two weeks of spending."""
    runner = demo.app.test_cli_runner()
    made = runner.invoke(
        args=[
            "keys",
            "create",
            "--company-id",
            "1001",
            "--name",
            "Sales dashboard",
            "--origin",
            "https://dash.example.com",
        ]
    )
    assert made.exit_code == 0, made.output
    hooked = runner.invoke(
        args=[
            "webhooks",
            "add",
            "--company-id",
            "1001",
            "--url",
            "https://hooks.example.com/pd",
            "--event",
            "goal.reached",
        ]
    )
    assert hooked.exit_code == 0, hooked.output
    today = utcnow().date()
    with demo.app.app_context():
        session = get_session()
        hook = session.query(Webhook).one()
        for n, status in enumerate((200, 503, 200)):
            session.add(
                WebhookAttempt(webhook_id=hook.id, event_id=f"evt_{n}", status=status, duration_ms=40 + n)
            )
        for back in range(1, 14):
            spent = (back * 137) % 900 + (400 if back % 7 == 2 else 0)
            day = today - timedelta(days=back)
            session.merge(BudgetDay(company_id=1001, day=day, reserved=spent, spent=spent))
        session.commit()


def test_an_admin_sees_the_apps_settings_in_the_light_theme(demo: Demo, tab: Tab):
    demo.install(2001)
    demo.install(2002)
    demo.set_status(2002, "reauth_required")
    furnish(demo)
    api_requests = []
    tab.page.on("request", lambda r: "/api/v1/" in r.url and api_requests.append(r))
    frame = open_settings(demo, tab)
    wait_for(frame, "admin")

    log = tab.host("window.sandboxHost.log")
    assert (log[0]["type"], log[0]["command"]) == ("command", "initialize")
    expect(frame.locator("html")).to_have_class("theme-light")
    expect(frame.locator("[data-company-name]")).to_contain_text("Acme Sales Ltd")
    ada = frame.locator("table.installations tr", has_text="Ada Admin")
    expect(ada.locator(".chip.role")).to_have_text("Admin")
    expect(ada).to_contain_text("Active")
    sam = frame.locator("table.installations tr", has_text="Sam Seller")
    expect(sam).to_contain_text("Needs reconnecting")
    expect(sam.get_by_role("link", name=re.compile("Reconnect link for Sam Seller"))).to_have_attribute(
        "href", f"{demo.url}/oauth/install"
    )
    key = frame.locator("table.keys tbody tr", has_text="Sales dashboard")
    expect(key).to_contain_text("https://dash.example.com")
    expect(key).to_contain_text("Read")
    hook = frame.locator("li.webhook", has_text="https://hooks.example.com/pd")
    expect(hook.locator("table.attempts tbody tr")).to_have_count(3)
    expect(hook.locator("table.attempts tbody tr").nth(1)).to_contain_text("Failed: answered 503")
    expect(frame.locator(".budget-svg rect.day")).to_have_count(14)
    limits = frame.locator("dl.limits")
    expect(limits.locator("dt")).to_contain_text(
        ["GOALS_CACHE_TTL", "KEY_RATE_LIMIT", "COMPANY_DAILY_TOKEN_CAP"]
    )
    expect(limits).to_contain_text("600/minute")
    expect(frame.locator(".budget-today")).to_have_text(re.compile(r"^Today: [\d,]+ of 10,000 tokens spent"))

    # The frame grows with the page (RESIZE), beyond a sidebar panel's 750 px.
    assert "resize" in tab.commands()
    expect(tab.page.locator("#settings-frame")).to_have_js_property(
        "offsetHeight", tab.host("window.sandboxHost.height")
    )
    assert tab.host("window.sandboxHost.height") > 750
    # No cookies: every call carries the SDK's JWT.
    assert {urlsplit(r.url).path for r in api_requests} >= {"/api/v1/app/settings", "/api/v1/app/keys"}
    for request in api_requests:
        headers = request.all_headers()
        assert headers["authorization"].startswith("Bearer ey") and "cookie" not in headers
    # The JWT left the address bar; Pipedrive's other parameters stayed.
    url = tab.page.locator("#settings-frame").element_handle().content_frame().url
    assert "token=" not in url and "id=" in url and "theme=light" in url
    shoot_settings(tab, "settings-admin-light")
    accessible_in_both_themes(tab, "admin", host=True)


def test_an_admin_sees_them_in_the_dark_theme_and_the_theme_follows_pipedrive(demo: Demo, tab: Tab):
    demo.install(2001)
    furnish(demo)
    frame = open_settings(demo, tab, theme="dark")
    wait_for(frame, "admin")
    expect(frame.locator("html")).to_have_class("theme-dark")
    expect(frame.locator("body")).to_have_css("background-color", "rgb(31, 34, 41)")
    shoot_settings(tab, "settings-admin-dark")
    tab.page.locator("#theme-toggle").click()  # Pipedrive's USER_SETTINGS_CHANGE event
    expect(frame.locator("html")).to_have_class("theme-light")


def test_a_user_who_is_not_an_admin_sees_why_and_no_data(demo: Demo, tab: Tab):
    demo.install(2001)
    demo.install(2002)
    frame = open_settings(demo, tab)
    wait_for(frame, "admin")
    # Pipedrive's user picker (the sandbox's "Logged in as"): now Sam, who is not an admin.
    api_requests = []
    tab.page.on("request", lambda r: "/api/v1/" in r.url and api_requests.append(r.url))
    tab.page.get_by_label("Logged in as").select_option("2002")
    tab.page.wait_for_url(re.compile(r"/app-settings\?user=2002&theme=light$"))
    frame = page_of(tab)
    wait_for(frame, "not_admin")
    expect(frame.get_by_role("heading", name="Only admins can open these settings")).to_be_visible()
    expect(frame.locator('[data-screen-name="admin"]')).to_be_hidden()
    expect(frame.locator("table.installations tbody tr")).to_have_count(0)
    assert api_requests == []  # the page asks for nothing it may not see
    assert "initialize" in tab.commands()
    shoot_settings(tab, "settings-non-admin")
    accessible_in_both_themes(tab, "not an admin", host=True)


def test_a_key_created_on_the_page_works_through_the_proxy_until_revoked(demo: Demo, tab: Tab):
    demo.install(2001)
    frame = open_settings(demo, tab)
    wait_for(frame, "admin")
    form = frame.locator('form[data-form="key"]')

    # Every problem at once, in the API's words, before anything is made.
    form.get_by_label("Browser origins").fill("dash.example.com")
    form.get_by_role("button", name="Create key").click()
    expect(form.locator(".form-alert")).to_have_text("Nothing was saved: 2 problems to fix below.")
    expect(form.locator("#key-name-error")).to_have_text("name must be 1-200 characters.")
    expect(form.locator("#key-origins-error")).to_contain_text("is not an origin like")
    expect(form.get_by_label("Name")).to_be_focused()
    accessible_in_both_themes(tab, "key form with errors")

    form.get_by_label("Name").fill("Sales dashboard")
    form.get_by_label("Browser origins").fill("")
    form.get_by_label("Scope").select_option("full")
    form.get_by_label("Name").press("Enter")  # the keyboard submits too
    shown = frame.locator('[data-secret="key"]')
    expect(shown).to_be_visible()
    expect(shown).to_be_focused()
    key = shown.locator(".secret-value").input_value()
    assert re.fullmatch(r"pdk_[0-9a-f]{8}\.[\w-]{43}", key)
    expect(tab.page.locator(".snackbar").last).to_have_text("Key “Sales dashboard” created")
    row = frame.locator("table.keys tbody tr", has_text="Sales dashboard")
    expect(row).to_contain_text("Read and change")
    expect(row).to_contain_text("Servers only")
    expect(row.locator("code")).to_have_text(key.partition(".")[0] + "…")
    tab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=demo.url)
    shown.get_by_role("button", name="Copy").click()
    expect(shown.locator(".copied")).to_have_text("Copied to the clipboard.")
    tab.page.locator("#snackbars").evaluate("box => box.replaceChildren()")
    tab.shoot("key-shown-once", element=frame.locator('[data-section="keys"]'))
    accessible_in_both_themes(tab, "key shown once")

    # The key serves at once.
    proxy = requests.get(demo.url + FIND, headers={"x-api-token": key}, timeout=10)
    assert proxy.status_code == 200 and proxy.json()["success"] is True

    # Revoking goes through Pipedrive's confirmation: cancelled first, nothing changes.
    dialog = tab.page.locator("dialog#confirm")
    row.get_by_role("button", name="Revoke the key Sales dashboard").click()
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Revoke the key “Sales dashboard”?")
    expect(dialog.locator("#confirm-ok")).to_have_text("Revoke")
    accessible_in_both_themes(tab, "revoke confirmation", host=True)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert requests.get(demo.url + FIND, headers={"x-api-token": key}, timeout=10).status_code == 200

    row.get_by_role("button", name="Revoke the key Sales dashboard").click()
    dialog.get_by_role("button", name="Revoke").click()
    expect(tab.page.locator(".snackbar").last).to_have_text("Key “Sales dashboard” revoked")
    expect(row).to_contain_text("Revoked")
    expect(row.get_by_role("button")).to_have_count(0)
    refused = requests.get(demo.url + FIND, headers={"x-api-token": key}, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"] == "The partner key has been revoked."
    assert tab.commands().count("show_confirmation") == 2

    shown.get_by_role("button", name="I've stored it: hide the key").click()
    expect(shown).to_be_hidden()
    assert shown.locator(".secret-value").input_value() == ""


def test_webhooks_are_added_shown_with_their_deliveries_and_removed(demo: Demo, tab: Tab):
    demo.install(2001)
    frame = open_settings(demo, tab)
    wait_for(frame, "admin")
    form = frame.locator('form[data-form="webhook"]')
    form.get_by_label("URL").fill("http://127.0.0.1:9/pd-hooks")
    form.get_by_label(re.compile("goal.progress")).uncheck()
    form.get_by_role("button", name="Add webhook").click()
    secret = frame.locator('[data-secret="webhook"]')
    expect(secret).to_be_visible()
    assert secret.locator(".secret-value").input_value().startswith("whsec_")
    hook = frame.locator("li.webhook", has_text="http://127.0.0.1:9/pd-hooks")
    expect(hook.locator(".chip")).to_have_text("Healthy")
    expect(hook).to_contain_text("No deliveries yet.")
    expect(hook).to_contain_text(
        "Events: goal.reached, installation.reauth_required, installation.uninstalled"
    )

    # Its delivery log and failing state, as the worker leaves them.
    with demo.app.app_context():
        session = get_session()
        row = session.query(Webhook).one()
        row.failing_since = utcnow() - timedelta(hours=25)
        session.add(WebhookAttempt(webhook_id=row.id, event_id="evt_1", status=500, duration_ms=12))
        session.add(
            WebhookAttempt(webhook_id=row.id, event_id="evt_2", status=None, error="connection refused")
        )
        session.commit()
    tab.page.reload()
    frame = page_of(tab)
    wait_for(frame, "admin")
    hook = frame.locator("li.webhook", has_text="http://127.0.0.1:9/pd-hooks")
    expect(hook.locator(".chip")).to_have_text(re.compile("^Failing since "))
    expect(hook.locator("table.attempts tbody tr")).to_have_count(2)
    expect(hook.locator("table.attempts tbody tr").first).to_contain_text("Failed: connection refused")
    expect(hook.locator("table.attempts tbody tr").last).to_contain_text("Failed: answered 500")
    accessible_in_both_themes(tab, "a failing webhook")

    # A bad URL is refused with the API's words.
    form = frame.locator('form[data-form="webhook"]')
    form.get_by_label("URL").fill("ftp://example.com/x")
    form.get_by_role("button", name="Add webhook").click()
    expect(form.locator("#hook-url-error")).to_contain_text("url")
    accessible_in_both_themes(tab, "webhook form with errors")

    dialog = tab.page.locator("dialog#confirm")
    hook.get_by_role("button", name="Remove the webhook http://127.0.0.1:9/pd-hooks").click()
    expect(dialog.locator("h2")).to_have_text("Remove this webhook?")
    dialog.get_by_role("button", name="Remove").click()
    expect(tab.page.locator(".snackbar").last).to_have_text("Webhook removed")
    expect(frame.locator("li.webhook")).to_have_count(0)
    expect(frame.locator('[data-empty="webhooks"]')).to_be_visible()
    with demo.app.app_context():
        assert get_session().query(Webhook).count() == 0


def test_the_budget_chart_draws_14_days_and_says_what_it_shows(demo: Demo, tab: Tab):
    demo.install(2001)
    today = utcnow().date()
    with demo.app.app_context():
        session = get_session()
        for back, spent in ((1, 4200), (5, 900), (12, 60)):
            day = today - timedelta(days=back)
            session.merge(BudgetDay(company_id=1001, day=day, reserved=spent, spent=spent))
        session.commit()
    frame = open_settings(demo, tab)
    wait_for(frame, "admin")
    chart = frame.locator(".budget-svg")
    expect(chart.locator("rect.day")).to_have_count(14)
    expect(chart.locator("rect.day.today")).to_have_count(1)
    yesterday = (today - timedelta(days=1)).strftime("%A, %B %-d")
    summary = chart.locator("title#budget-chart-desc")
    expect(summary).to_have_text(
        re.compile(
            rf"^Tokens spent per day over the last 14 days: [\d,]+ in all, most on {yesterday} \(4,200\)"
        )
    )
    assert (
        chart.get_attribute("role") == "img" and chart.get_attribute("aria-labelledby") == "budget-chart-desc"
    )
    heights = [
        float(h)
        for h in chart.locator("rect.day").evaluate_all("rs => rs.map(r => r.getAttribute('height'))")
    ]
    assert heights[12] == max(heights) and heights[0] == 0 and heights[1] > 0  # 13 days back spent nothing
    frame.get_by_text("Show as a table").click()
    rows = frame.locator(".chart-table tbody tr")
    expect(rows).to_have_count(14)
    expect(rows.nth(12)).to_have_text(re.compile(rf"{yesterday}\s*4,200$"))
    bar = frame.locator(".budget-bar")
    expect(bar).to_have_attribute("aria-valuetext", re.compile(r"^[\d,]+ of 10,000 tokens$"))
    accessible_in_both_themes(tab, "budget as a table")


def test_every_other_screen_says_what_to_do_and_is_accessible(demo: Demo, tab: Tab, monkeypatch):
    # Loading: the settings read held back until it has been checked.
    demo.install(2001)
    held = []
    tab.page.route("**/api/v1/app/settings", lambda route: held.append(route))
    frame = open_settings(demo, tab)
    wait_for(frame, "loading")
    expect(frame.get_by_text("Loading the app's settings…")).to_be_visible()
    accessible_in_both_themes(tab, "loading")
    wait_for(frame, "loading")
    held[0].continue_()
    wait_for(frame, "admin")
    tab.page.unroute("**/api/v1/app/settings")

    # Not installed (Gil, Globex's admin, has not installed the app).
    frame = open_settings(demo, tab, user=2101)
    wait_for(frame, "install")
    expect(frame.get_by_role("link", name="Install Goals")).to_have_attribute(
        "href", f"{demo.url}/oauth/install"
    )
    accessible_in_both_themes(tab, "not installed")

    # Pipedrive cannot confirm the admin: the reason, and nothing else.
    demo.sandbox.set_knobs(force_api_status={"status": 503, "count": 20})
    demo.app.extensions["pd_admin_checks"].clock = lambda: 10.0**9  # what it remembered is stale
    frame = open_settings(demo, tab)
    wait_for(frame, "unavailable")
    expect(frame.locator(".unavailable-text")).to_contain_text("Pipedrive")
    accessible_in_both_themes(tab, "Pipedrive unreachable")
    demo.sandbox.set_knobs(force_api_status=None)

    # The page's own failure: a screen, never a blank frame.
    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("pd_app.settings_page.api.overview", broken)
    demo.app.extensions["pd_admin_checks"].clock = lambda: 2 * 10.0**9
    frame = open_settings(demo, tab)
    wait_for(frame, "error")
    expect(frame.locator(".error-text")).to_have_text("Something went wrong on our side. It has been logged.")
    accessible_in_both_themes(tab, "error")

    # Reconnect: Pipedrive refused this user's authorization.
    demo.set_status(2001, "reauth_required")
    frame = open_settings(demo, tab)
    wait_for(frame, "reauth")
    accessible_in_both_themes(tab, "reconnect")

    # A refused token, opened outside Pipedrive.
    for theme in ("light", "dark"):
        tab.page.goto(f"{demo.url}/ui/settings?token=not-a-jwt&theme={theme}")
        expect(tab.page.locator("#app")).to_have_attribute("data-screen", "denied")
        assert_accessible(tab.page, f"settings page, token refused, {theme}")
