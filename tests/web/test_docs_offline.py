"""/docs (Swagger UI) and /redoc (ReDoc) work offline, under their Content-Security-Policy.

A real ``vin-gateway serve`` process and Debian's chromium driven by Playwright (never a
downloaded browser). Every request to a host other than the gateway is aborted and recorded:
the pages must render their operations from the gateway's own files alone, with no CSP
violation. Without chromium or playwright the browser tests skip, except under CI=true, where
they fail (see ``require_browser``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.procs import FAST_ENV, running
from tests.web.browser import CHROMIUM, CHROMIUM_ARGS, require_browser

pytestmark = pytest.mark.slow

OPERATIONS = ("/v1/lookups", "/v1/vins/decode", "/v1/attestations")
#: ReDoc 2.x always shows the "API docs by Redocly" logo from its CDN: the page's img-src
#: refuses it (the image hides itself) and no request leaves. The only refusal allowed.
KNOWN_REFUSAL = "Loading the image 'https://cdn.redoc.ly/redoc/logo-mini.svg'"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**FAST_ENV, "VINGW_DATA_DIR": str(tmp_path_factory.mktemp("docs") / "var")}
    with running(["serve"], env) as (base, _):
        yield base


def test_docs_pages_reference_only_the_gateway(gateway: str) -> None:
    with httpx.Client(base_url=gateway) as client:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            r = client.get(path)
            assert r.status_code == 200, path
            assert "http://" not in r.text and "https://" not in r.text, path
            csp = r.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
            script_src = csp.split("script-src ")[1].split(";")[0]
            assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
            assert r.headers["x-content-type-options"] == "nosniff"
        assert "fonts.googleapis" not in client.get("/redoc").text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            r = client.get(f"/docs/assets/{asset}")
            assert r.status_code == 200 and len(r.content) > 100_000, asset
            assert r.headers["x-content-type-options"] == "nosniff"


def _open(base: str, path: str, check: Any) -> None:
    """Open ``path`` with everything off the gateway aborted; run ``check(page)``; then
    assert nothing left the gateway and the CSP refused nothing."""
    from playwright.sync_api import sync_playwright

    foreign: list[str] = []
    console: list[str] = []
    page_errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)

        def gate(route: Any) -> None:
            url = route.request.url
            if url.startswith((base + "/", "blob:" + base + "/", "data:")):
                route.continue_()
            else:
                foreign.append(url)
                route.abort()

        context.route("**/*", gate)
        page = context.new_page()
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(base + path)
        check(page)
        context.close()
        browser.close()
    assert foreign == [], foreign
    refused = [m for m in console if "Content Security Policy" in m]
    assert [m for m in refused if KNOWN_REFUSAL not in m] == [], console
    assert page_errors == [], page_errors


def test_swagger_ui_offline(gateway: str) -> None:
    require_browser()
    from playwright.sync_api import expect

    def check(page: Any) -> None:
        for op in OPERATIONS:
            expect(page.locator(".opblock-summary-path", has_text=op).first).to_be_visible()
        expect(page.get_by_text("/v1/lookups", exact=True).first).to_be_visible()
        # the problems are listed: open the lookup operation and find its 403 codes
        page.locator(".opblock-summary-path", has_text="/v1/lookups").first.click()
        expect(page.get_by_text("attestation_missing").first).to_be_attached()
        expect(page.get_by_text("VIN-Attestation").first).to_be_visible()

    _open(gateway, "/docs", check)


def test_redoc_offline(gateway: str) -> None:
    require_browser()
    from playwright.sync_api import expect

    def check(page: Any) -> None:
        expect(page.get_by_text("vin-gateway", exact=False).first).to_be_visible()
        for op in OPERATIONS:
            expect(page.get_by_text(op, exact=True).first).to_be_attached()
        expect(page.get_by_text("/v1/lookups", exact=True).first).to_be_visible()

    _open(gateway, "/redoc", check)


def test_assets_are_the_vendored_files() -> None:
    """The vendored files are byte for byte the upstream ones recorded in VENDORED.md."""
    import hashlib
    import re

    import gateway.apidocs

    assets = gateway.apidocs.ASSETS_DIR
    recorded = dict(
        (name, digest)
        for digest, name in re.findall(
            r"^\| `([0-9a-f]{64})` \| `([^`]+)` \|", (assets / "VENDORED.md").read_text(), re.M
        )
    )
    files = {p.name for p in Path(assets).iterdir() if p.name != "VENDORED.md"}
    assert set(recorded) == files
    for name, digest in recorded.items():
        assert hashlib.sha256((assets / name).read_bytes()).hexdigest() == digest, name
