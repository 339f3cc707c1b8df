"""The automated accessibility check of the browser tests: axe-core (pinned in package.json, installed by
`npm ci`) runs its WCAG 2 A and AA rules (2.0, 2.1, 2.2) in a page or a frame, and the test fails listing
every violation of impact serious or critical.

axe is injected by evaluating its source through Playwright (the DevTools protocol), not by a <script> tag:
the app's pages allow scripts from 'self' only, and an evaluation is not subject to the page's CSP, so the
page under test keeps its real policy (a CSP violation still fails the test, see conftest.Tab).

    assert_accessible(tab.panel_frame(), "goal list, light")
    assert_accessible_in_both_themes(tab, "goal list")   # the panel inside the sandbox's CRM page
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from playwright.sync_api import Frame, Page, expect

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
FAILING_IMPACTS = ("serious", "critical")

RUN_AXE = """async ({ include, tags }) => {
  const results = await window.axe.run(include ? { include: [include] } : document, {
    runOnly: { type: "tag", values: tags },
    resultTypes: ["violations"],
    iframes: false,
  });
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map(n => ({ target: n.target.join(" "), impact: n.impact, summary: n.failureSummary })),
  }));
}"""


@functools.cache
def axe_source() -> str:
    try:
        return AXE_JS.read_text(encoding="utf-8")
    except OSError:
        pytest.fail(f"axe-core is missing at {AXE_JS}: run `npm ci` (make deps)", pytrace=False)


def _inject(target: Page | Frame) -> None:
    if not target.evaluate("() => typeof window.axe === 'object'"):
        # The source ends in an expression statement: evaluated as is, it defines window.axe.
        target.evaluate(axe_source())


def violations(target: Page | Frame, include: str | None = None) -> list[dict]:
    """axe's serious and critical WCAG 2 A/AA violations in a page or frame (or one element of it)."""
    _inject(target)
    found = target.evaluate(RUN_AXE, {"include": include, "tags": WCAG_TAGS})
    return [v for v in found if v["impact"] in FAILING_IMPACTS]


def describe(found: list[dict]) -> str:
    lines = []
    for v in found:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']}  [{v['helpUrl']}]")
        for node in v["nodes"]:
            summary = " ".join((node["summary"] or "").split())
            lines.append(f"    {node['target']}: {summary}")
    return "\n".join(lines)


def assert_accessible(target: Page | Frame, context: str, *, include: str | None = None) -> None:
    """Fail with every serious or critical violation in the target: rule, impact, element and help."""
    found = violations(target, include)
    if found:
        count = f"{len(found)} serious or critical axe violation(s)"
        pytest.fail(f"accessibility ({context}): {count}\n{describe(found)}", pytrace=False)


def assert_accessible_in_both_themes(tab, context: str, *, host: bool = False) -> None:
    """Check the panel framed in the sandbox's CRM page in its current theme, switch the theme as Pipedrive
    does (the host's toggle sends USER_SETTINGS_CHANGE), check again, and switch back. With `host`, the CRM
    page around the panel (its dialogs and snackbars) is checked too."""
    html = tab.panel.locator("html")
    start = "dark" if "theme-dark" in (html.get_attribute("class") or "") else "light"
    other = "light" if start == "dark" else "dark"
    for theme in (start, other):
        if theme != start:
            tab.page.locator("#theme-toggle").dispatch_event("click")  # also behind a modal dialog
            expect(html).to_have_class(f"theme-{theme}")
        assert_accessible(tab.panel_frame(), f"panel, {context}, {theme}")
        if host:
            assert_accessible(tab.page, f"sandbox CRM page, {context}, {theme}")
    tab.page.locator("#theme-toggle").dispatch_event("click")  # also behind a modal dialog
    expect(html).to_have_class(f"theme-{start}")
