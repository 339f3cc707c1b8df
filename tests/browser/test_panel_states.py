"""Every state of the panel has a screen (not installed, reauthorization, rate limited, Pipedrive unreachable,
refused token, a script error), and a page on another origin cannot frame it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from playwright.sync_api import expect

from ..conftest import LiveServer
from .axe import assert_accessible, assert_accessible_in_both_themes
from .conftest import Demo, Tab


def test_not_installed_user_installs_from_the_panel(demo: Demo, tab: Tab):
    demo.install(2001)  # a colleague has installed; Sam has not
    tab.page.goto(demo.crm(user=2002))
    tab.wait_for_screen("install")
    panel = tab.panel
    expect(panel.get_by_role("heading")).to_have_text("Install Goals for your Pipedrive user")
    link = panel.get_by_role("link", name="Install Goals")
    expect(link).to_have_attribute("href", demo.url + "/oauth/install")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener")
    assert "initialize" in tab.commands()  # even this screen initializes, so Pipedrive keeps the frame
    tab.shoot("panel-not-installed")
    assert_accessible_in_both_themes(tab, "not installed")

    # The install runs in a top-level window: the sandbox's consent page, then back to the app.
    with tab.page.context.expect_page() as opened:
        link.click()
    popup = opened.value
    popup.wait_for_load_state()
    assert urlsplit(popup.url).path == "/sandbox/oauth/authorize"
    popup.select_option("#user_id", "2002")
    popup.get_by_role("button", name="Allow and install").click()
    expect(popup.get_by_role("heading")).to_have_text("Installed for Acme Sales Ltd as Sam Seller")
    popup.close()

    # Back in the panel: reload it with a fresh JWT from the SDK, and Sam's goals appear.
    panel.get_by_role("button", name="I've installed it: reload").click()
    tab.wait_for_progress()
    expect(panel.locator(".goal-title").first).to_have_text("Won revenue per month")
    assert "get_signed_token" in tab.commands()


def test_reauth_required_has_its_screen(demo: Demo, tab: Tab):
    demo.install(2001)
    demo.set_status(2001, "reauth_required")
    tab.page.goto(demo.crm())
    tab.wait_for_screen("reauth")
    expect(tab.panel.get_by_role("link", name="Reconnect")).to_have_attribute(
        "href", demo.url + "/oauth/install"
    )
    tab.shoot("panel-reauth-required")
    assert_accessible_in_both_themes(tab, "reconnect")


def test_rate_limited_says_when_it_retries_and_recovers(demo: Demo, tab: Tab):
    demo.install(2001)
    demo.sandbox.set_knobs(force_api_status={"status": 429, "count": 100, "retry_after": 30})
    tab.page.goto(demo.crm())
    tab.wait_for_screen("rate_limited")
    expect(tab.panel.locator(".countdown")).to_have_text(re.compile(r"^(30|29|28) seconds$"))
    tab.shoot("panel-rate-limited")
    assert_accessible_in_both_themes(tab, "rate limited")
    # Pipedrive's 429 holds: trying again now is answered by the app itself, and Pipedrive sees nothing.
    demo.sandbox.set_knobs(force_api_status=None)
    calls = demo.sandbox.count("/api/v1/goals")
    tab.panel.get_by_role("button", name="Try again now").click()
    tab.wait_for_screen("rate_limited")
    expect(tab.panel.locator(".countdown")).to_have_text(re.compile(r"^(30|29|28|27) seconds$"))
    assert demo.sandbox.count("/api/v1/goals") == calls
    # Once Pipedrive's reset has passed, the same button brings the goals back.
    demo.end_throttle()
    tab.panel.get_by_role("button", name="Try again now").click()
    tab.wait_for_progress()


def test_a_spent_daily_budget_has_its_screen(demo: Demo, tab: Tab):
    demo.install(2001)
    demo.spend_budget(1001)
    tab.page.goto(demo.crm())
    tab.wait_for_screen("budget_exhausted")
    expect(tab.panel.get_by_role("heading")).to_have_text("Today's Pipedrive budget for Goals is spent")
    expect(tab.panel.locator(".budget-reset")).to_contain_text("(midnight UTC)")
    assert demo.sandbox.count("/api/v1/goals") == 0
    tab.shoot("panel-budget-exhausted")
    assert_accessible_in_both_themes(tab, "budget spent")


def test_pipedrive_unreachable_has_its_screen(demo: Demo, tab: Tab):
    demo.install(2001)
    demo.sandbox.set_knobs(force_api_status={"status": 503, "count": 100, "retry_after": 5})
    tab.page.goto(demo.crm())
    tab.wait_for_screen("unreachable")
    expect(tab.panel.get_by_role("heading")).to_have_text("Pipedrive is not reachable right now")
    tab.shoot("panel-pipedrive-unreachable")
    assert_accessible_in_both_themes(tab, "Pipedrive unreachable")
    demo.sandbox.set_knobs(force_api_status=None)
    tab.panel.get_by_role("button", name="Try again").click()
    tab.wait_for_progress()


def test_a_refused_token_gets_a_readable_screen(demo: Demo, tab: Tab):
    response = tab.page.goto(f"{demo.url}/ui/panel?id=x&userId=2001&companyId=1001&token=forged.jwt.value")
    assert response is not None and response.status == 401
    expect(tab.page.locator("#app")).to_have_attribute("data-screen", "denied")
    expect(tab.page.get_by_role("heading", name="This panel could not confirm who you are")).to_be_visible()
    assert "token=" not in tab.page.url
    tab.page.set_viewport_size({"width": 360, "height": 260})  # the size of a sidebar panel
    tab.shoot("panel-token-refused")
    assert_accessible(tab.page, "token refused, light")
    tab.page.goto(tab.page.url + "&theme=dark")
    expect(tab.page.locator("html")).to_have_class("theme-dark")
    assert_accessible(tab.page, "token refused, dark")


def test_a_script_error_shows_a_friendly_screen_not_a_blank_frame(demo: Demo, tab: Tab):
    demo.install(2001)
    tab.page.goto(demo.crm())
    tab.wait_for_progress()
    tab.panel_frame().evaluate("setTimeout(() => { throw new Error('boom') })")
    tab.wait_for_screen("error")
    expect(tab.panel.get_by_role("heading", name="Something went wrong")).to_be_visible()
    assert_accessible_in_both_themes(tab, "script error")
    assert tab.errors == ["boom"]
    tab.errors.clear()


def test_a_page_on_another_origin_cannot_frame_the_panel(demo: Demo, tab: Tab):
    demo.install(2001)
    crm_html = tab.page.request.get(demo.crm()).text()
    src = re.search(r'id="panel-frame"[^>]* src="([^"]+)"', crm_html).group(1).replace("&amp;", "&")

    def framing_page(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return [f'<!doctype html><iframe id="f" src="{demo.url}{src}"></iframe>'.encode()]

    other = LiveServer(framing_page)  # 127.0.0.1 on another port: another origin
    try:
        refused = []
        tab.page.on("console", lambda m: "frame-ancestors" in m.text and refused.append(m.text))
        tab.page.goto(other.url)
        tab.page.wait_for_load_state("load")
        expect(tab.page.frame_locator("#f").locator("#app")).to_have_count(0)
        tab.page.wait_for_timeout(300)
        assert refused, "Chromium should report the frame-ancestors refusal"
        tab.csp_violations.clear()  # expected here, and only here
    finally:
        other.stop()
