"""Each goal card's trend: its progress over the card's period as an inline SVG line, from the app's own
snapshots (GET /api/v1/goals/{id}/history), and a "reached" badge at or over the target, in both themes. A
goal without history, or whose history cannot be read, keeps its card and shows no line and no error."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Route, expect
from werkzeug.datastructures import MultiDict

from .axe import assert_accessible, assert_accessible_in_both_themes
from .conftest import Demo, Tab

PAD = 3  # panel-trend.js: the y of the chart's top value


def _goal(demo: Demo, title: str) -> dict:
    # As the panel asks: the user's goals, then the company's.
    for query in (MultiDict(), MultiDict({"assignee.type": "company"})):
        for goal in demo.sandbox.find_goals(1001, 2001, query):
            if goal["title"] == title:
                return goal
    raise AssertionError(f"no seeded goal {title!r}")


def _short(day: date) -> str:
    return f"{day.day} {day:%b}"  # as the panel says it in the seed users' en_GB: "3 Nov"


def _coords(points: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in points.split())]


def _end_last_week(demo: Demo, goal: dict, today: date) -> tuple[date, date]:
    """Make the goal end last Sunday, so the panel shows its last week, whole and over."""
    sunday = today - timedelta(days=today.weekday() + 1)
    demo.sandbox.update_goal(1001, goal["id"], {"duration": {"end": sunday.isoformat()}})
    return sunday - timedelta(days=6), sunday


def test_trend_lines_and_the_reached_badge_in_both_themes(demo: Demo, tab: Tab):
    today = date.today()
    year_start = date(today.year, 1, 1)
    if today == year_start:
        pytest.skip("on January 1 every goal's current period is one day old: no line to draw yet")
    demo.install(2001)

    # The company's yearly goal: six snapshots from January 1 to today, rising from 5% to 70%.
    revenue = _goal(demo, "Revenue forecast this year")
    elapsed = (today - year_start).days
    days = sorted({year_start + timedelta(days=round(k * elapsed / 5)) for k in range(6)})
    shares = [0.05, 0.2, 0.35, 0.5, 0.62, 0.7][-len(days) :]
    year = (year_start, date(today.year, 12, 31))
    for day, share in zip(days, shares, strict=True):
        demo.snapshot(revenue["id"], day, share * 1_200_000, 1_200_000, period=year)

    # The user's weekly goal, over since last Sunday: a whole week of snapshots ending past its target (43 of
    # 40), which is also what Pipedrive's results say for that week (the sandbox's deterministic 107.9%).
    calls = _goal(demo, "Calls and meetings")
    week = _end_last_week(demo, calls, today)
    done = [4, 10, 17, 24, 31, 38, 43]
    for offset, actual in enumerate(done):
        demo.snapshot(calls["id"], week[0] + timedelta(days=offset), actual, 40, period=week)

    tab.page.goto(demo.crm(theme="light"))
    tab.wait_for_progress()
    panel = tab.panel

    revenue_card = panel.locator(".goal", has_text="Revenue forecast this year")
    chart = revenue_card.get_by_role("img")
    words = f"Progress this year: {round(shares[0] * 100)}% on {_short(days[0])} to 70% today"
    expect(chart).to_have_attribute("aria-label", words)
    expect(chart).to_have_attribute("data-points", str(len(days)))
    expect(chart.locator("title")).to_have_text(words)
    line = _coords(revenue_card.locator(".trend-line").get_attribute("points") or "")
    assert len(line) == len(days)
    xs, ys = [x for x, _ in line], [y for _, y in line]
    assert xs == sorted(xs) and len(set(xs)) == len(xs), "one point per day, left to right"
    assert ys == sorted(ys, reverse=True), "rising progress is a rising line"
    # 0..100% fills the height: the target is the top, and the line stops where the year is (not at the end).
    assert float(revenue_card.locator(".trend-target").get_attribute("y1") or "") == PAD
    width = float((chart.get_attribute("viewBox") or "").split()[2])
    assert xs[-1] < width - PAD or today == date(today.year, 12, 31)
    expect(revenue_card.locator(".reached-badge")).to_be_hidden()
    expect(revenue_card).not_to_have_class(re.compile(r"\breached\b"))

    calls_card = panel.locator(".goal", has_text="Calls and meetings")
    chart = calls_card.get_by_role("img")
    first, last = _short(week[0]), _short(week[1])
    words = f"Progress in the week from {first}: 10% on {first} to 108% on {last}"
    expect(chart).to_have_attribute("aria-label", words)
    expect(chart).to_have_attribute("data-points", "7")
    line = _coords(calls_card.locator(".trend-line").get_attribute("points") or "")
    assert len(line) == 7
    # Past 100% the scale grows to the highest point, so the target line drops below the top.
    target_y = float(calls_card.locator(".trend-target").get_attribute("y1") or "")
    assert PAD < target_y and min(y for _, y in line) == PAD
    badge = calls_card.locator(".reached-badge")
    expect(badge).to_be_visible()
    expect(badge).to_have_text("Reached")
    expect(badge.locator("svg")).to_have_attribute("aria-hidden", "true")  # the word carries it, not the icon
    expect(calls_card.locator(".chip")).to_be_hidden()
    expect(calls_card).to_have_class(re.compile(r"\breached\b"))
    expect(badge).to_have_css("background-color", "rgb(8, 130, 63)")  # --success, white text (4.9:1)
    expect(badge).to_have_css("color", "rgb(255, 255, 255)")
    expect(calls_card.locator(".trend-target")).to_have_css("stroke", "rgb(101, 107, 119)")
    tab.shoot("panel-trend-light")
    assert_accessible(tab.panel_frame(), "trends and reached badge, light")
    tab.shoot("panel-goal-reached", element=calls_card)

    tab.page.locator("#theme-toggle").click()
    expect(panel.locator("html")).to_have_class("theme-dark")
    expect(badge).to_have_css("background-color", "rgb(76, 201, 124)")
    expect(badge).to_have_css("color", "rgb(44, 49, 58)")
    expect(calls_card.locator(".trend-target")).to_have_css("stroke", "rgb(162, 168, 179)")
    expect(calls_card.locator(".trend-dot")).to_have_css("stroke", "rgb(44, 49, 58)")
    tab.shoot("panel-trend-dark")
    assert_accessible(tab.panel_frame(), "trends and reached badge, dark")
    tab.shoot("panel-goal-reached-dark", element=calls_card)
    tab.wait_for_screen("list")


def test_no_history_no_line_and_no_error(demo: Demo, tab: Tab):
    today = date.today()
    demo.install(2001)
    calls = _goal(demo, "Calls and meetings")
    revenue = _goal(demo, "Revenue forecast this year")
    demo.snapshot(revenue["id"], today, 120_000, 1_200_000)  # one point of a forecast is not a line yet
    asked = []
    tab.page.on("request", lambda r: "/history" in r.url and asked.append(r.url))

    tab.page.goto(demo.crm())
    tab.wait_for_progress()
    panel = tab.panel
    cards = panel.locator(".goal")
    expect(cards.locator(".trend-empty")).to_have_count(cards.count())
    expect(cards.locator(".trend-empty").first).to_have_text("No history yet")
    expect(panel.locator("svg.trend")).to_have_count(0)
    expect(panel.locator(".reached-badge:visible")).to_have_count(0)
    assert_accessible_in_both_themes(tab, "no history yet")
    tab.wait_for_screen("list")

    # One history read per card, for the days of the period it shows so far.
    windows = {urlsplit(url).path.split("/")[-2]: parse_qs(urlsplit(url).query) for url in asked}
    assert windows[revenue["id"]] == {"from": [f"{today.year}-01-01"], "to": [today.isoformat()]}
    monday = today - timedelta(days=today.weekday())
    assert windows[calls["id"]] == {"from": [monday.isoformat()], "to": [today.isoformat()]}
    assert len(asked) == cards.count()


def test_a_counting_goal_draws_from_zero_at_its_period_start_after_one_snapshot(demo: Demo, tab: Tab):
    """Deals won, activities completed...: every period starts at zero, so the first snapshot already gives a
    line (what `snapshots take` leaves on its first run). A forecast does not (the test above)."""
    today = date.today()
    demo.install(2001)
    calls = _goal(demo, "Calls and meetings")  # activities completed
    quarter = date(today.year, (today.month - 1) // 3 * 3 + 1, 1)
    starts = {
        "weekly": today - timedelta(days=today.weekday()),
        "monthly": today.replace(day=1),
        "quarterly": quarter,
    }
    begins = date.fromisoformat(calls["duration"]["start"])  # a period never starts before its goal
    starts = {name: max(start, begins) for name, start in starts.items()}
    # A period that began before today (on a Monday that is the 1st of a quarter's month, none did).
    interval = next((name for name, start in starts.items() if start < today), "weekly")
    start = starts[interval]
    demo.sandbox.update_goal(1001, calls["id"], {"interval": interval})
    demo.snapshot(calls["id"], today, 12, 40, period=(start, today))
    tab.page.goto(demo.crm())
    tab.wait_for_progress()
    card = tab.panel.locator(".goal", has_text="Calls and meetings")
    if start == today:  # the period starts today: its one snapshot is its start, nothing to join yet
        expect(card.locator(".trend-empty")).to_have_text("No history yet")
        return
    chart = card.get_by_role("img")
    unit = {"weekly": "week", "monthly": "month", "quarterly": "quarter"}[interval]
    expect(chart).to_have_attribute("data-points", "2")
    expect(chart).to_have_attribute("aria-label", f"Progress this {unit}: 0% on {_short(start)} to 30% today")


def test_a_failing_history_or_result_never_breaks_a_card(demo: Demo, tab: Tab):
    today = date.today()
    demo.install(2001)
    revenue = _goal(demo, "Revenue forecast this year")
    calls = _goal(demo, "Calls and meetings")
    for day in (today - timedelta(days=1), today):
        demo.snapshot(revenue["id"], day, 600_000, 1_200_000)
    demo.snapshot(calls["id"], today, 42, 40)  # the latest snapshot is over the target

    def history_fails(route: Route) -> None:
        if revenue["id"] in route.request.url:
            route.fulfill(status=500, content_type="text/html", body="<h1>Internal Server Error</h1>")
        else:
            route.continue_()

    def result_fails(route: Route) -> None:
        if calls["id"] in route.request.url:
            body = {"success": False, "error": "Pipedrive failed", "code": "upstream_error"}
            route.fulfill(status=502, content_type="application/json", body=json.dumps(body))
        else:
            route.continue_()

    tab.page.context.route(re.compile(r"/api/v1/goals/[^/]+/history"), history_fails)
    tab.page.context.route(re.compile(r"/api/v1/goals/[^/]+/results"), result_fails)
    tab.page.goto(demo.crm())
    tab.wait_for_progress()
    panel = tab.panel

    # The history failed: the card has its progress, and no line, no "no history", no error.
    revenue_card = panel.locator(".goal", has_text="Revenue forecast this year")
    expect(revenue_card.locator(".goal-percent")).to_have_text(re.compile(r"^\d+%$"))
    expect(revenue_card.locator(".goal-trend")).to_be_hidden()
    # The result failed: the latest snapshot still says the target is reached.
    calls_card = panel.locator(".goal", has_text="Calls and meetings")
    expect(calls_card.locator(".goal-value")).to_have_text("Progress not available right now")
    expect(calls_card.locator(".reached-badge")).to_be_visible()
    expect(calls_card.locator(".trend-empty")).to_have_text("No history yet")
    tab.wait_for_screen("list")
