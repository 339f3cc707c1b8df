"""/api/docs in Chromium: Swagger UI, served from the app's own origin, renders the whole OpenAPI document (an
operation's parameters, its responses with their schemas and examples) under the page's strict CSP, with no
console error, no request to another origin, and no serious or critical axe violation."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from .axe import assert_accessible
from .conftest import Demo, Tab


def test_api_docs_render_the_whole_openapi_document(demo: Demo, tab: Tab):
    elsewhere, console_errors = [], []
    tab.page.on("request", lambda r: r.url.startswith(demo.url) or elsewhere.append(r.url))
    tab.page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))

    response = tab.page.goto(demo.url + "/api/docs")
    assert response is not None and response.status == 200
    page = tab.page
    expect(page.get_by_role("heading", name="API documentation")).to_be_visible()
    # Every operation of the document is listed, grouped by tag.
    spec = demo.http.get(demo.url + "/api/openapi.json", timeout=10).json()
    methods = {"get", "post", "put", "patch", "delete"}
    operation_ids = [
        op["operationId"] for item in spec["paths"].values() for m, op in item.items() if m in methods
    ]
    expect(page.locator(".opblock")).to_have_count(len(operation_ids))
    for operation_id in ("getGoals", "addGoal", "getGoalResult"):
        expect(page.locator(".opblock-summary-operation-id", has_text=operation_id)).to_have_count(1)
    assert_accessible(page, "API docs, operations listed")

    # One operation opened: its query parameters with their descriptions, and its responses with a schema.
    find = page.locator(".opblock", has=page.locator(".opblock-summary-operation-id", has_text="getGoals"))
    find.locator(".opblock-summary-control").click()
    parameters = find.locator(".parameters tbody > tr")
    expect(parameters.first).to_be_visible()
    names = [name.strip().split()[0] for name in find.locator(".parameter__name").all_inner_texts()]
    documented = [p["name"] for p in spec["paths"]["/api/v1/goals/find"]["get"]["parameters"] if "name" in p]
    assert names and set(documented) <= set(names), (names, documented)
    expect(find.locator(".parameter__name", has_text="is_active")).to_have_count(1)
    responses = find.locator(".responses-table .response")
    expect(responses.first).to_be_visible()
    codes = [code.strip() for code in find.locator(".responses-table .response-col_status").all_inner_texts()]
    assert {"200", "400", "401", "429"} <= set(codes), codes
    ok = find.locator(
        ".responses-table .response", has=page.locator(".response-col_status", has_text=re.compile("^200"))
    )
    expect(ok.locator(".example, .highlight-code").first).to_contain_text('"success"')
    ok.get_by_role("tab", name="Schema").click()
    expect(ok.locator(".model-box, .json-schema-2020-12").first).to_contain_text("GoalsResponse")
    page.evaluate("window.scrollTo(0, 0)")
    tab.shoot("api-docs", full_page=True)
    ok.evaluate("el => el.scrollIntoView({block: 'start'})")
    tab.shoot("api-docs-response", full_page=True)
    assert_accessible(page, "API docs, getGoals opened")

    # A request body with its schema and example.
    add = page.locator(".opblock", has=page.locator(".opblock-summary-operation-id", has_text="addGoal"))
    add.locator(".opblock-summary-control").click()
    expect(add.locator(".opblock-section-request-body")).to_be_visible()
    expect(add.locator(".opblock-section-request-body")).to_contain_text("application/json")
    assert_accessible(page, "API docs, addGoal opened")

    assert elsewhere == [], f"requests to other origins: {elsewhere}"
    assert console_errors == [], console_errors
