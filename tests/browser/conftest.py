"""Browser fixtures: one headless Chromium per session (Debian's, driven by Playwright), and per test the app
as `make run` starts it (PD_SANDBOX=1, the sandbox mounted at /sandbox) over real HTTP, so the sandbox's CRM
deal page frames the panel from the same origin, exactly as a developer sees it.

There is no skip: without a browser these tests fail and say how to get one (`make test` installs it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from playwright.sync_api import Browser, Frame, FrameLocator, Locator, Page, expect, sync_playwright
from sqlalchemy import update

from pd_app import create_app
from pd_app.db import get_session
from pd_app.models import BudgetDay, Installation, utcnow

from ..conftest import ENCRYPTION_KEY, LiveServer, close_app, store_snapshot

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("PD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
# The checked-in screenshots change only on purpose: PD_UPDATE_SCREENSHOTS=1 .venv/bin/pytest tests/browser
UPDATE_DOCS = os.environ.get("PD_UPDATE_SCREENSHOTS") == "1"

expect.set_options(timeout=10_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test under tests/browser drives Chromium; `make test-fast` deselects them with -m "not browser".
    # pytest hands this hook every collected item, not just this directory's, hence the path check.
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run `make test` (installs Debian's chromium when run as root), "
            "or `apt-get install chromium`, or set PD_CHROMIUM to a Chromium binary",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Demo:
    """The running app with its mounted sandbox, and what a test does to them."""

    def __init__(self, url: str, app) -> None:
        self.url = url
        self.app = app
        self.http = requests.Session()

    @property
    def sandbox(self):
        return self.app.extensions["pd_sandbox_app"].extensions["pd_sandbox"]

    def install(self, user_id: int = 2001) -> None:
        """The install a person does: /oauth/install, then the sandbox's consent page, Allow."""
        start = self.http.get(self.url + "/oauth/install", allow_redirects=False, timeout=10)
        query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
        done = self.http.post(
            self.url + "/sandbox/oauth/authorize",
            data={**query, "user_id": str(user_id), "action": "allow"},
            timeout=10,
        )
        assert urlsplit(done.url).path == "/installed", done.text

    def set_status(self, user_id: int, status: str) -> None:
        with self.app.app_context():
            session = get_session()
            session.execute(update(Installation).where(Installation.user_id == user_id).values(status=status))
            session.commit()

    def end_throttle(self) -> None:
        """Move every installation's Pipedrive throttle into the past (as if its reset had come)."""
        with self.app.app_context():
            session = get_session()
            session.execute(update(Installation).values(throttled_until=utcnow() - timedelta(seconds=1)))
            session.commit()

    def spend_budget(self, company_id: int) -> None:
        """Mark the company's whole daily budget as spent (as other calls today would have)."""
        cap = self.app.config["SETTINGS"].company_daily_token_cap
        with self.app.app_context():
            session = get_session()
            session.merge(BudgetDay(company_id=company_id, day=utcnow().date(), reserved=cap, spent=cap))
            session.commit()

    def snapshot(
        self,
        goal_id: str,
        day: date,
        actual: float,
        target: float,
        *,
        company_id: int = 1001,
        period: tuple[date, date] | None = None,
    ) -> None:
        """Store a goal's snapshot for one day, as the worker would have taken it (the same day replaces)."""
        store_snapshot(self.app, goal_id, day, actual, target, company_id=company_id, period=period)

    def crm(self, user: int = 2001, theme: str = "light", deal: int = 1) -> str:
        return f"{self.url}/sandbox/crm/deal/{deal}?{urlencode({'user': user, 'theme': theme})}"


@pytest.fixture
def demo(clean_db: str) -> Iterator[Demo]:
    holder = {}
    server = LiveServer(lambda environ, start_response: holder["app"](environ, start_response))
    app = create_app(
        environ={
            "PD_APP_ENV": "development",
            "PD_SANDBOX": "1",
            "PUBLIC_URL": server.url,
            "SECRET_KEY": "browser-tests-secret-key",
            "TOKEN_ENCRYPTION_KEYS": ENCRYPTION_KEY,
            "DATABASE_URL": clean_db,
        }
    )
    holder["app"] = app.wsgi_app
    demo = Demo(server.url, app)
    yield demo
    demo.http.close()
    server.stop()
    close_app(app)


@dataclass
class Tab:
    """A page in its own browser context, with what went wrong in it."""

    page: Page
    errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    @property
    def panel(self) -> FrameLocator:
        return self.page.frame_locator("#panel-frame")

    def panel_frame(self) -> Frame:
        frame = self.page.locator("#panel-frame").element_handle().content_frame()
        assert frame is not None
        return frame

    def host(self, expression: str = "window.sandboxHost"):
        """Read the sandbox host's state (what the panel asked of "Pipedrive")."""
        return self.page.evaluate(expression)

    def commands(self) -> list[str]:
        return self.host("window.sandboxHost.log.filter(e => e.type === 'command').map(e => e.command)")

    def wait_for_screen(self, name: str) -> None:
        expect(self.panel.locator("#app")).to_have_attribute("data-screen", name)

    def wait_for_progress(self) -> None:
        self.wait_for_screen("list")
        expect(self.panel.locator(".goal.pending")).to_have_count(0)

    def shoot(self, name: str, *, full_page: bool = False, element: Locator | None = None) -> None:
        """A screenshot of the panel as it sits in the deal page (or the whole page, or one element of it),
        kept as an artifact and, when asked for, as the documentation's picture."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        target = ARTIFACTS / f"{name}.png"
        self.page.wait_for_timeout(450)  # let the progress bars finish their transition
        if element is not None:
            element.screenshot(path=str(target))
        elif full_page or not self.page.locator("#app-panel").count():
            self.page.screenshot(path=str(target))
        else:
            self.page.locator("#app-panel").screenshot(path=str(target))
        if UPDATE_DOCS:
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, DOCS_SCREENSHOTS / target.name)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1100, "height": 900}, locale="en-US")
    page = context.new_page()
    result = Tab(page)
    page.on("pageerror", lambda exc: result.errors.append(str(exc)))

    def console(message) -> None:
        if "Content Security Policy" in message.text:
            result.csp_violations.append(message.text)

    page.on("console", console)
    # Requests still running when a test ends would hold a database connection past the app's teardown
    # (closed engine, a ResourceWarning later): the tab is closed once the panel is done talking to the app.
    in_flight: set = set()
    page.on("request", lambda request: in_flight.add(request))
    page.on("requestfinished", lambda request: in_flight.discard(request))
    page.on("requestfailed", lambda request: in_flight.discard(request))
    yield result
    for _ in range(100):
        if not in_flight:
            break
        page.wait_for_timeout(50)
    context.close()
    assert result.errors == [], f"JavaScript errors: {result.errors}"
    assert result.csp_violations == [], f"CSP violations: {result.csp_violations}"
