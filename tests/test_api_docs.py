"""/api/docs: Swagger UI from the app's own origin (swagger-ui-dist in node_modules) under a strict CSP, and
its files served with caching headers. The browser test (browser/test_api_docs.py) checks what it shows."""

from __future__ import annotations

import json
import re

import pytest

from pd_app.proxy.docs import package_dir


def test_the_page_loads_the_viewer_from_this_origin_under_a_strict_csp(client):
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert scripts == ["/api/docs/vendor/swagger-ui-bundle.js", "/static/api_docs.js"]
    assert styles == ["/api/docs/vendor/swagger-ui.css", "/static/api_docs.css"]
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert 'data-spec-url="/api/openapi.json"' in html
    csp = dict(part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["connect-src"] == "'self'" and csp["font-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert "unsafe" not in page.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("name", "mimetype"),
    [("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css")],
)
def test_vendor_files_are_the_installed_package_with_caching_headers(app, client, name, mimetype):
    resp = client.get(f"/api/docs/vendor/{name}")
    assert resp.status_code == 200 and resp.mimetype == mimetype
    assert resp.get_data() == (package_dir(app) / name).read_bytes()
    assert "public" in resp.headers["Cache-Control"] and "max-age=3600" in resp.headers["Cache-Control"]
    again = client.get(f"/api/docs/vendor/{name}", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""


@pytest.mark.parametrize("name", ["index.html", "package.json", "..%2Fpackage.json", "swagger-ui.js", "x"])
def test_only_the_viewers_files_are_served(client, name):
    assert client.get(f"/api/docs/vendor/{name}").status_code == 404


def test_the_installed_version_is_the_pinned_one(app):
    pinned = json.loads((package_dir(app).parents[1] / "package.json").read_text())["dependencies"]
    installed = json.loads((package_dir(app) / "package.json").read_text())["version"]
    assert pinned["swagger-ui-dist"] == installed
