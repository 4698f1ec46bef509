"""The frontend's texts are complete in both languages (no browser needed).

A new problem code (docs/problems.md, or a GatewayError the gateway can raise), a new limiter
policy, a new VIN problem code, a new catalogue category or a new text key used by the page
fails here until both gateway/web/i18n/en.json and zh-CN.json say it.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from typing import Any

import pytest

from tests.web.browser import LANGS, ROOT, TEXTS, WEB

PROBLEMS_DOC = ROOT / "docs" / "problems.md"
JS_FILES = ("app.js", "admin.js", "charts.js", "grants.js", "i18n.js", "policy.js")
CJK = re.compile(r"[\u3400-\u9fff]")


def documented_codes() -> set[str]:
    found = re.findall(r"^\| \d{3} \| `([a-z_]+)` \|", PROBLEMS_DOC.read_text(), re.M)
    assert len(found) > 40
    return set(found)


def gateway_codes() -> set[str]:
    from tests.gateway.test_problem_codes import all_errors

    return set(all_errors())


def placeholders(value: Any) -> set[str]:
    forms = value.values() if isinstance(value, dict) else [value]
    return {p for form in forms for p in re.findall(r"\{(\w+)\}", form)}


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    en, zh = TEXTS["en"], TEXTS["zh-CN"]
    assert set(en) == set(zh)
    for key, value in en.items():
        assert placeholders(value) == placeholders(zh[key]), key
        if isinstance(value, dict):  # counts: English has one/other, Chinese other
            assert set(value) == {"one", "other"}, key
            assert "other" in zh[key], key
        else:
            assert isinstance(zh[key], str), key


def test_chinese_is_chinese() -> None:
    """A Chinese text that is a copy of the English one is a forgotten translation."""
    allowed = re.compile(r"\{\w+\}|VIN|JSON|HTTP|UTC|RSA|EC P-256|vin-gateway|GET|PATCH|DELETE")
    for key, en in TEXTS["en"].items():
        words = re.findall(r"[A-Za-z]{3,}", allowed.sub("", str(en)))
        if words:
            assert CJK.search(str(TEXTS["zh-CN"][key])), key


@pytest.mark.parametrize("lang", LANGS)
def test_every_problem_code_has_a_message(lang: str) -> None:
    """What happened and what to do, for every documented code and every code the gateway
    can send (a new code cannot be forgotten)."""
    missing = [
        f"problem.{code}.{part}"
        for code in sorted(documented_codes() | gateway_codes() | {"network", "unknown"})
        for part in ("title", "action")
        if not TEXTS[lang].get(f"problem.{code}.{part}")
    ]
    assert missing == []


@pytest.mark.parametrize("lang", LANGS)
def test_every_limiter_policy_has_a_reason(lang: str) -> None:
    """Each policy a 429 can name (docs/api.md, gateway/limits) in plain words: its name, which
    behaviour triggered it, what to do."""
    from gateway.limits.consequences import FLAG_REASONS
    from gateway.limits.limiter import SHADOW_NAMES

    # the per-IP limit names its policy "ip" (its bucket's name); the others are the limiter's
    policies = set(FLAG_REASONS) | set(SHADOW_NAMES.values()) | {"ip"}
    assert {"flood", "ip", "guessing", "distinct_vins", "sequential"} <= policies
    for p in sorted(policies):
        for part in ("name", "reason", "action"):
            assert TEXTS[lang].get(f"policy.{p}.{part}"), f"policy.{p}.{part}"


@pytest.mark.parametrize("lang", LANGS)
def test_every_vin_problem_and_category_has_a_text(lang: str) -> None:
    from vin import errors

    codes = {
        getattr(errors, name)
        for name in ("LENGTH", "INVALID_CHARACTER", "CHECK_DIGIT_MISMATCH", "INVALID_MODEL_YEAR")
    }
    assert {c for c in codes if f"vinError.{c}" not in TEXTS[lang]} == set()
    con = sqlite3.connect(ROOT / "gateway" / "catalogue" / "sample.sqlite")
    try:
        categories = {row[0] for row in con.execute("SELECT id FROM categories")}
    finally:
        con.close()
    assert len(categories) >= 5
    assert {c for c in categories if f"category.{c}" not in TEXTS[lang]} == set()
    for value in ("parts_inquiry", "maintenance"):  # AttestationRequest.purpose
        assert f"purpose.{value}" in TEXTS[lang]
    for outcome in ("ok", "refused", "miss"):  # the search log's outcomes
        assert f"outcome.{outcome}" in TEXTS[lang]


def test_every_key_the_page_uses_exists() -> None:
    """Keys in index.html (data-i18n, data-i18n-attr) and every key literal in the scripts."""
    html = re.sub(r"<!--.*?-->", "", (WEB / "index.html").read_text(), flags=re.S)
    used = set(re.findall(r'data-i18n="([^"]+)"', html))
    for attrs in re.findall(r'data-i18n-attr="([^"]+)"', html):
        used |= {pair.split(":", 1)[1] for pair in attrs.split(";")}
    namespaces = {key.split(".", 1)[0] for key in TEXTS["en"]}
    for name in JS_FILES:
        for literal in re.findall(
            r'"([a-z][A-Za-z]*(?:\.[A-Za-z0-9_]+)+)"', (WEB / name).read_text()
        ):
            if literal.split(".", 1)[0] in namespaces:
                used.add(literal)
    assert len(used) > 150
    for lang in LANGS:
        assert sorted(used - set(TEXTS[lang])) == [], lang


def test_no_text_outside_the_language_files() -> None:
    """index.html carries keys, not words: every element with text is translated (the bilingual
    noscript and load-error lines aside)."""
    html = (WEB / "index.html").read_text()
    body = html.split("<body", 1)[1]
    body = re.sub(r"<noscript>.*?</noscript>", "", body, flags=re.S)
    body = re.sub(r'<p id="load-error".*?</p>', "", body, flags=re.S)
    body = re.sub(r"<!--.*?-->", "", body, flags=re.S)
    words = [
        w
        for w in re.findall(r">\s*([^<>]*?[A-Za-z\u3400-\u9fff][^<>]*?)\s*<", body)
        if w not in {"English", "简体中文", "vin-gateway"}
    ]
    assert words == []


def test_the_policy_page_states_the_history_bounds() -> None:
    """The privacy policy says, in both languages, what the page keeps and for how long."""
    app = (WEB / "app.js").read_text()
    entries = re.search(r"const HISTORY_MAX = (\d+);", app)
    days = re.search(r"const HISTORY_DAYS = (\d+);", app)
    assert entries and days
    page = (WEB / "privacy-policy.html").read_text()
    for lang in LANGS:
        article = page.split(f'data-policy-lang="{lang}"', 1)[1].split("</article>", 1)[0]
        assert f"{entries[1]} " in article and f"{days[1]} " in article, lang
        assert "2.2 B" in article and "24" in article, lang  # terms 2.2 B; PIPL article 24


def test_vendored_axe_is_the_recorded_file() -> None:
    vendor = ROOT / "tests" / "web" / "vendor"
    recorded = (vendor / "VENDORED.md").read_text()
    digest = hashlib.sha256((vendor / "axe.min.js").read_bytes()).hexdigest()
    assert f"`axe.min.js` sha256 | `{digest}`" in recorded
    assert "Mozilla Public License" in (vendor / "LICENSE").read_text()
