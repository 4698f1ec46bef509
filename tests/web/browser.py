"""Debian's chromium driven by Playwright for Python (never a downloaded browser), axe-core,
the frontend's texts, and the screenshots the browser tests leave in a temp dir (not committed).

Without chromium or playwright the browser tests skip, except under CI=true, where they fail:
CI must never pass by skipping.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "gateway" / "web"
LANGS = ("en", "zh-CN")
#: axe-core, vendored from the npm registry (tests/web/vendor/VENDORED.md)
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
#: the same-origin path the tests serve axe-core at (Playwright route), so that the page's
#: Content-Security-Policy (script-src 'self') stays in force while axe runs
AXE_PATH = "/__test__/axe.min.js"
SHOTS = Path(tempfile.gettempdir()) / "vin-gateway-web"  # screenshots, not committed
VIEWPORTS = {"wide": {"width": 1366, "height": 900}, "tablet": {"width": 820, "height": 1180}}


def require_browser() -> None:
    """Skip without playwright or chromium; fail instead under CI=true."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        missing = f"playwright is not installed ({exc}); pip install -e '.[dev]'"
    else:
        missing = "" if CHROMIUM.exists() else f"{CHROMIUM} is missing; apt-get install chromium"
    if missing:
        if IN_CI:
            pytest.fail(missing + " and CI=true: a skipped browser test would hide a failure")
        pytest.skip(missing)


def texts(lang: str) -> dict[str, Any]:
    return dict(json.loads((WEB / "i18n" / f"{lang}.json").read_text(encoding="utf-8")))


TEXTS = {lang: texts(lang) for lang in LANGS}


def tx(lang: str, key: str, **params: Any) -> str:
    """The frontend's text ``key`` in ``lang`` with its placeholders filled (as i18n.js does)."""
    value = TEXTS[lang][key]
    if isinstance(value, dict):
        n = params.get("n", 0)
        value = value.get("one") if lang == "en" and n == 1 and "one" in value else value["other"]
    return re.sub(
        r"\{(\w+)\}",
        lambda m: str(params[m.group(1)]) if m.group(1) in params else m.group(0),
        value,
    )


def serve_axe(context: Any, base: str) -> None:
    """Answer AXE_PATH on the gateway's origin with the vendored axe-core file."""
    body = AXE.read_bytes()
    context.route(
        base + AXE_PATH,
        lambda route: route.fulfill(
            status=200, body=body, headers={"content-type": "application/javascript"}
        ),
    )


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is (hidden content is skipped by axe) and return its
    violations, each with the selectors of up to five nodes."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=AXE_PATH)
    return list(
        page.evaluate(
            """async () => {
              const r = await window.axe.run(document, {resultTypes: ["violations"]});
              return r.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
              }));
            }"""
        )
    )


def assert_accessible(page: Any, view: str) -> None:
    found = axe_violations(page)
    assert found == [], f"axe-core violations on {view}: {json.dumps(found, indent=1)}"


def shoot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
