"""The app's own pages in Chromium, as a newcomer meets them: the start page, the sandbox's consent page, the
installed page with what to do next, the neutral page of a stale link, and an error page. Each has the app's
favicon and no serious or critical axe violation, in the light and the dark colour scheme; links have one
colour on every page (the panel's)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from playwright.sync_api import Page, expect

from .axe import assert_accessible
from .conftest import Demo, Tab

FAVICON = Path(__file__).resolve().parents[2] / "pd_app" / "static" / "favicon.svg"
LINK = {"light": "rgb(26, 102, 210)", "dark": "rgb(110, 168, 255)"}  # #1a66d2, #6ea8ff


def assert_favicon(page: Page, frame_url: str | None = None) -> None:
    """The document's icon is the app's SVG, served from its own origin."""
    href = page.locator('link[rel="icon"]').get_attribute("href")
    assert href and not href.startswith("data:"), href
    url = urljoin(frame_url or page.url, href)
    assert urlsplit(url).netloc == urlsplit(page.url).netloc
    icon = page.request.get(url)
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.body() == FAVICON.read_bytes()


def check_page(page: Page, context: str) -> None:
    """Favicon, and axe in both colour schemes (the pages follow the system's)."""
    assert_favicon(page)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert_accessible(page, f"{context}, {scheme}")
        links = page.locator("main a:not(.button)")
        if links.count():
            expect(links.first).to_have_css("color", LINK[scheme])
    page.emulate_media(color_scheme="light")


def test_a_newcomer_installs_and_is_told_what_to_do_next(demo: Demo, tab: Tab):
    page = tab.page
    page.goto(demo.url + "/")
    expect(page.get_by_role("heading", name="Goals for Pipedrive")).to_be_visible()
    check_page(page, "start page")
    tab.shoot("start-page", full_page=True)

    page.get_by_role("link", name="Install").click()
    expect(page.get_by_role("heading", name="Goals for Pipedrive")).to_be_visible()  # the sandbox's consent
    assert urlsplit(page.url).path == "/sandbox/oauth/authorize"
    check_page(page, "sandbox consent page")
    page.select_option("#user_id", "2002")
    page.get_by_role("button", name="Allow and install").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Installed for Acme Sales Ltd as Sam Seller")
    assert urlsplit(page.url).path == "/installed" and "code=" not in page.url
    expect(page.get_by_role("heading", name="What to do next")).to_be_visible()
    check_page(page, "installed page")
    tab.shoot("installed-page", full_page=True)
    expect(page.get_by_role("link", name="API documentation")).to_have_attribute("href", "/api/docs")
    # The next step, in the sandbox: its deal page, as the user who just installed, with the panel in it.
    page.get_by_role("link", name="Open a deal in the sandbox").click()
    assert urlsplit(page.url).path == "/sandbox/crm/deal/1" and "user=2002" in page.url
    tab.wait_for_progress()
    assert_favicon(page)
    frame = tab.panel_frame()
    href = frame.locator('link[rel="icon"]').get_attribute("href")
    icon = page.request.get(urljoin(frame.url, href or ""))
    assert icon.status == 200 and icon.body() == FAVICON.read_bytes()


@pytest.mark.parametrize("ticket", [None, "forged.ticket"])
def test_the_installed_page_without_a_valid_ticket_claims_nothing(demo: Demo, tab: Tab, ticket):
    demo.install(2001)
    response = tab.page.goto(demo.url + "/installed" + (f"?ticket={ticket}" if ticket else ""))
    assert response is not None and response.status == (400 if ticket else 200)
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Nothing to confirm here")
    expect(tab.page.get_by_text("Installed for")).to_have_count(0)
    expect(tab.page.get_by_role("link", name="Install Goals for Pipedrive")).to_have_attribute(
        "href", "/oauth/install"
    )
    check_page(tab.page, "installed page without a ticket")


def test_an_error_page_is_readable(demo: Demo, tab: Tab):
    response = tab.page.goto(demo.url + "/oauth/callback")  # no code: "Nothing to install"
    assert response is not None and response.status == 400
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Nothing to install")
    check_page(tab.page, "error page")


def test_links_have_the_same_colour_in_the_panel_and_the_api_docs(demo: Demo, tab: Tab):
    demo.install(2001)
    tab.page.goto(demo.crm(user=2002, theme="light"))  # Sam has not installed: the install screen's links
    tab.wait_for_screen("install")
    reload_link = tab.panel.get_by_role("button", name="I've installed it: reload")
    expect(reload_link).to_have_css("color", LINK["light"])
    tab.page.locator("#theme-toggle").click()
    expect(tab.panel.locator("html")).to_have_class("theme-dark")
    expect(reload_link).to_have_css("color", LINK["dark"])
    tab.page.goto(demo.url + "/api/docs")
    expect(tab.page.locator(".docs-intro a").last).to_have_css("color", LINK["light"])
    assert_favicon(tab.page)
