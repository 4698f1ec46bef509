"""The catalogue web frontend in a real browser, against a real ``vin-gateway serve`` process.

One gateway (a clean data dir, an admin made with ``vin-gateway create-admin``, small limits so
that a block comes quickly) and one Debian chromium serve the whole module; each test opens its
own browser context (locale, viewport). Every flow runs in English and in Simplified Chinese;
the texts the assertions expect come from the same files as the page's (gateway/web/i18n).
axe-core checks every view for zero violations; screenshots go to a temp dir (browser.SHOTS).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import Settings
from tests.gateway.procs import BIN, FAST_ENV, running
from tests.web.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LANGS,
    VIEWPORTS,
    assert_accessible,
    require_browser,
    serve_axe,
    shoot,
    tx,
)

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "require_browser"]  # used by test_docs_offline

pytestmark = pytest.mark.slow

VIN = "1HGCM82633A004352"  # public example VIN: Honda Accord 2003
ALT_VIN = "WA1EY74LX9D205644"  # Audi Q7 2009: the sample catalogue has alternatives for it
BAD_VIN = "1HGCM82633A0O4352"  # letter O at position 13: refused in the page, never sent
TYPO_VIN = "1HGCM82633A004353"  # one digit off: the gateway finds the check digit wrong
#: public VINs (tests/data/vins-dev.json): a fourth distinct VIN in 24 h blocks (limit 3 here).
#: The first three decode to two model-year candidates (2016, 1986), a check digit this
#: manufacturer does not use, and no model year at all.
BLOCK_VINS = ("1GB0C4EGXGZ280783", "XTAGFK330JY144213", "VF1LM1B0H36666155", "1FTMW1T88MFA00001")
ALL_VINS = (VIN, ALT_VIN, BAD_VIN, TYPO_VIN, *BLOCK_VINS)
PASSWORD = "a long passphrase 42"
ADMIN_EMAIL = "ops@example.com"
ADMIN_PASSWORD = "an operator passphrase 7"
POLICY_VERSION = Settings.model_fields["privacy_policy_version"].default
#: the requests whose body may carry a VIN (declaring a vehicle included)
VIN_BODIES = ("/v1/attestations", "/v1/lookups", "/v1/vins/decode", "/v1/vehicles")


@dataclass
class Gateway:
    base: str
    output: list[str]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    env = {
        **FAST_ENV,
        "VINGW_DATA_DIR": str(tmp_path_factory.mktemp("web") / "var"),
        "VINGW_LIMIT_DISTINCT_MAX": "3",  # the 4th distinct VIN of an account blocks it
        "VINGW_LIMIT_IP_BURST": "500",  # every test logs in from 127.0.0.1
    }
    made = subprocess.run(
        [str(BIN), "create-admin", "--email", ADMIN_EMAIL, "--password-stdin"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("VINGW_")}, **env},
        input=ADMIN_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    with running(["serve"], env) as (base, output):
        yield Gateway(base, output)
    log = "\n".join(output)
    assert "GET /v1/privacy-policy 200" in log  # the access log was on
    for v in ALL_VINS:  # never in the gateway's output, whatever the page did
        assert v not in log and v.lower() not in log


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


class Session:
    """A browser context and page on the gateway, with everything that left the page."""

    def __init__(self, browser: Any, base: str, lang: str, viewport: str = "wide") -> None:
        self.base, self.lang = base, lang
        self.context = browser.new_context(
            locale=lang, viewport=VIEWPORTS[viewport], accept_downloads=True
        )
        self.context.set_default_timeout(15_000)
        serve_axe(self.context, base)
        self.requests: list[Any] = []
        self.headers: dict[int, dict[str, str]] = {}  # id(request) -> every header sent
        self.console: list[str] = []
        self.errors: list[str] = []
        self.navigations: list[str] = []
        self.context.on("request", lambda r: self.requests.append(r))
        self.context.on("requestfinished", self._sent)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.console.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("framenavigated", lambda f: self.navigations.append(f.url))

    def _sent(self, request: Any) -> None:
        self.headers[id(request)] = request.all_headers()

    def t(self, key: str, **params: Any) -> str:
        return tx(self.lang, key, **params)

    def open(self) -> None:
        self.page.goto(self.base + "/")
        self.page.wait_for_selector("html[data-ready]")

    def posts(self, path: str) -> list[Any]:
        return [r for r in self.requests if r.method == "POST" and r.url.endswith(path)]

    def local_storage(self) -> dict[str, str]:
        return dict(self.page.evaluate("Object.fromEntries(Object.entries(localStorage))"))

    def view(self, name: str, *, axe: bool = True, tablet: bool = False) -> None:
        """Check the view with axe-core and keep its screenshot (and at 820x1180)."""
        if axe:
            assert_accessible(self.page, f"{name} ({self.lang})")
        shoot(self.page, f"{self.lang}-{name}-1366x900")
        if tablet:
            self.page.set_viewport_size(VIEWPORTS["tablet"])
            self.page.wait_for_timeout(300)  # charts are drawn again after a resize (150 ms)
            shoot(self.page, f"{self.lang}-{name}-820x1180")
            self.page.set_viewport_size(VIEWPORTS["wide"])

    def assert_private(self, vins: tuple[str, ...]) -> None:
        """No VIN in any URL, header or cookie, nor in a body other than the VIN endpoints';
        every request went to the gateway; no console output with a VIN, no CSP refusal."""
        from urllib.parse import unquote

        assert self.requests
        for r in self.requests:
            url = unquote(r.url).upper()
            assert r.url.startswith((self.base + "/", "blob:" + self.base + "/")), r.url
            assert all(v not in url for v in vins), r.url
            headers = self.headers.get(id(r), r.headers)
            assert "cookie" not in headers, r.url
            text = json.dumps(headers).upper()
            assert all(v not in text for v in vins), (r.url, headers)
            body = (r.post_data or "").upper()
            if not r.url.endswith(VIN_BODIES):
                assert all(v not in body for v in vins), r.url
        for url in self.navigations:
            assert all(v not in url.upper() for v in vins), url
        assert self.page.evaluate("sessionStorage.length") == 0
        assert self.page.evaluate("document.cookie") == ""
        assert self.context.cookies() == []
        assert all(v not in m.upper() for m in self.console for v in vins), self.console
        assert not [m for m in self.console if "Content Security Policy" in m], self.console
        assert self.errors == []

    def close(self) -> None:
        self.context.close()


def register_and_log_in(s: Session, email: str) -> None:
    page = s.page
    page.locator("#to-register").click()
    page.locator("#reg-email").fill(email)
    page.locator("#reg-password").fill(PASSWORD)
    page.locator("#reg-accept").check()
    page.locator("#register-form button[type=submit]").click()
    page.locator("#status").get_by_text(s.t("register.created")).wait_for()
    log_in(s, email, PASSWORD)


def log_in(s: Session, email: str, password: str) -> None:
    page = s.page
    page.locator("#login-email").fill(email)
    page.locator("#login-password").fill(password)
    page.locator("#login-form button[type=submit]").click()
    page.get_by_role("heading", name=s.t("lookup.title")).wait_for()


def look_up(s: Session, vin: str, basis: str = "owner") -> None:
    page = s.page
    page.locator("#vin").fill(vin)
    page.locator(f"#basis-{basis}").check()
    page.locator("#lookup-button").click()


def account_id(base: str, email: str, password: str) -> str:
    with httpx.Client(base_url=base) as client:
        token = client.post("/v1/auth/token", data={"username": email, "password": password})
        me = client.get(
            "/v1/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
        )
        return str(me.json()["id"])


def test_security_headers_only_on_the_frontend(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.base) as client:
        files = [
            "/",
            "/app.js",
            "/app.css",
            "/i18n.js",
            "/admin.js",
            "/charts.js",
            "/grants.js",
            "/policy.js",
            "/i18n/en.json",
            "/i18n/zh-CN.json",
            "/privacy-policy.html",
        ]
        for path in files:
            r = client.get(path)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
        assert "javascript" in client.get("/app.js").headers["content-type"]
        assert "json" in client.get("/i18n/zh-CN.json").headers["content-type"]
        for path in ("/", "/privacy-policy.html"):
            html = client.get(path).text
            assert "<script>" not in html and "style=" not in html and "<style" not in html
            assert "http://" not in html and "https://" not in html
        docs = client.get("/docs")  # its own policy (gateway.apidocs), not the frontend's
        assert (
            docs.status_code == 200
            and "default-src 'none'" in docs.headers["content-security-policy"]
        )
        assert client.get("/openapi.json").status_code == 200
        # the API keeps its own answers under the mount at /
        assert client.get("/v1/lookups").json()["code"] == "method_not_allowed"
        assert client.get("/v1/nothing-here").json()["code"] == "not_found"
        assert client.get("/nothing-here").status_code == 404
        # the policy text the API points at is served, in both languages, with the same headers
        text_url = client.get("/v1/privacy-policy").json()["text_url"]
        policy = client.get(text_url)
        assert policy.status_code == 200
        assert "Privacy policy" in policy.text and "隐私政策" in policy.text
        assert "default-src 'self'" in policy.headers["content-security-policy"]


@pytest.mark.parametrize("lang", LANGS)
def test_workshop_flow(gateway: Gateway, browser: Any, lang: str) -> None:
    """Register, log in, declare, look up, filter, history, "neither", typos, alternatives,
    print, export, consent, delete: in one language, from a clean account."""
    s = Session(browser, gateway.base, lang)
    t, page = s.t, s.page
    alert, status = page.locator("#alert"), page.locator("#status")
    email = f"garage-{lang.lower()}-{os.getpid()}@example.com"
    until = (date.today() + timedelta(days=3)).isoformat()

    # -- the language follows the browser
    s.open()
    assert page.evaluate("document.documentElement.lang") == lang
    expect_heading = page.get_by_role("heading", name=t("login.title"))
    expect_heading.wait_for()
    assert page.title() == t("title")
    s.view("login", tablet=True)

    # -- register: every field at fault is marked, and only those
    page.get_by_role("button", name=t("login.toRegister")).click()
    page.locator("#policy-version").get_by_text(POLICY_VERSION).wait_for()
    page.locator("#register-form button[type=submit]").click()
    alert.get_by_text(t("register.missingTitle")).wait_for()
    assert page.locator("#reg-email").get_attribute("aria-invalid") == "true"
    assert page.locator("#reg-password").get_attribute("aria-invalid") == "true"
    assert page.locator("#reg-email-error").inner_text() == t("fieldError.required")
    s.view("register-missing")
    reg = page.locator("#screen-register")
    reg.get_by_label(t("field.email")).fill(email)
    reg.get_by_label(t("field.password"), exact=True).fill(PASSWORD)
    page.locator("#reg-company").fill("Garage Example Ltd")
    page.get_by_role("button", name=t("register.submit")).click()
    alert.get_by_text(t("register.acceptTitle")).wait_for()
    assert page.locator("#reg-accept").get_attribute("aria-invalid") == "true"
    assert page.locator("#reg-email").get_attribute("aria-invalid") is None  # stale mark gone
    assert page.locator("#reg-password").get_attribute("aria-invalid") is None
    page.locator("#reg-accept").check()
    # the gateway finds the password weak: its requirements in this language, that field marked
    reg.get_by_label(t("field.password"), exact=True).fill("short 1")
    page.get_by_role("button", name=t("register.submit")).click()
    alert.get_by_text(t("problem.weak_password.title")).wait_for()
    assert t("password.length", n=10) in alert.inner_text()
    assert page.locator("#reg-password").get_attribute("aria-invalid") == "true"
    assert page.locator("#reg-accept").get_attribute("aria-invalid") is None
    reg.get_by_label(t("field.password"), exact=True).fill(PASSWORD)
    page.get_by_role("button", name=t("register.submit")).click()
    status.get_by_text(t("register.created")).wait_for()

    # -- log in (the email is filled in already)
    assert page.locator("#login-email").input_value() == email
    page.locator("#login-password").fill("wrong password 123")
    page.locator("#login-form button[type=submit]").click()
    alert.get_by_text(t("problem.invalid_credentials.title")).wait_for()
    assert t("problem.invalid_credentials.action") in alert.inner_text()
    assert "invalid_credentials" not in alert.locator("strong, p:not(.support p)").all_inner_texts()
    log_in(s, email, PASSWORD)
    assert page.locator("#who").inner_text() == email
    assert page.locator("#nav-console").is_hidden()  # not an admin
    s.view("lookup", tablet=True)

    # -- no declaration: nothing is sent, the choice is marked
    page.get_by_label(t("lookup.vin")).fill(VIN.lower())
    page.locator("#lookup-button").click()
    alert.get_by_text(t("decl.chooseTitle")).wait_for()
    assert page.locator("#basis-group").get_attribute("aria-invalid") == "true"
    assert s.posts("/v1/attestations") == []

    # -- "neither": the refusal is explained and nothing is sent
    page.get_by_label(t("decl.neither")).check()
    neither = page.locator("#neither-info")
    neither.get_by_text(t("decl.neitherTitle")).wait_for()
    assert t("decl.neitherWhy") in neither.inner_text()
    assert page.locator("#purpose").is_hidden()
    s.view("neither", tablet=True)
    page.locator("#lookup-button").click()
    alert.get_by_text(t("decl.neitherTitle")).wait_for()
    assert t("decl.neitherNothingSent") in alert.inner_text()
    assert page.locator("#basis-group").get_attribute("aria-invalid") is None
    assert s.posts("/v1/attestations") == [] and s.posts("/v1/lookups") == []

    # -- a VIN that cannot exist (letter O): refused in the page, never sent; the field marked
    page.get_by_label(t("decl.owner")).check()
    page.locator("#vin").fill(BAD_VIN)
    page.locator("#lookup-button").click()
    alert.get_by_text(t("problem.invalid_vin.title")).wait_for()
    assert t("vinError.invalid_character", pos=13, char="O") in alert.inner_text()
    assert t("vinError.didYouMean", char="0") in alert.inner_text()
    assert alert.locator("mark").inner_text() == "O"
    assert page.locator("#vin").get_attribute("aria-invalid") == "true"
    assert page.locator("#vin-error").is_visible()
    assert page.locator("#basis-group").get_attribute("aria-invalid") is None
    assert s.posts("/v1/attestations") == []
    assert "invalid_character" not in alert.locator("strong").inner_text()

    # -- a typo the gateway finds (check digit): the expected digit, the field marked
    page.locator("#vin").fill(TYPO_VIN)
    page.locator("#lookup-button").click()
    expected = t("vinError.check_digit_mismatch", pos=9, found="3", expected="5")
    alert.get_by_text(expected).wait_for()
    assert alert.locator("mark").inner_text() == "3"
    assert page.locator("#vin").get_attribute("aria-invalid") == "true"
    assert [r.post_data_json["vin"] for r in s.posts("/v1/attestations")] == [TYPO_VIN]
    s.view("typo-vin")

    # -- the next error is about the authorization (the VIN left as it is): only the
    # authorization's fields are marked now
    page.get_by_label(t("decl.authorized")).check()
    page.locator("#lookup-button").click()
    alert.get_by_text(t("decl.incompleteTitle")).wait_for()
    assert page.locator("#vin").get_attribute("aria-invalid") is None
    assert page.locator("#vin-error").is_hidden()
    assert page.locator("#auth-ref").get_attribute("aria-invalid") == "true"
    assert page.locator("#auth-until").get_attribute("aria-invalid") == "true"
    s.view("authorization-missing")
    page.locator("#vin").fill(VIN)
    page.get_by_label(t("decl.ref")).fill("WO-2026-0815")
    page.get_by_label(t("decl.until")).fill(until)
    page.get_by_label(t("decl.purpose")).select_option("maintenance")
    page.locator("#lookup-button").click()
    page.locator("#results").wait_for()
    assert page.locator("#auth-ref").get_attribute("aria-invalid") is None
    issued = s.posts("/v1/attestations")[-1].post_data_json
    assert issued["basis"] == "owner_authorized" and issued["purpose"] == "maintenance"
    assert issued["owner_authorization"]["ref"] == "WO-2026-0815"
    assert issued["owner_authorization"]["valid_until"] > time.time() + 2 * 86_400
    assert s.posts("/v1/lookups")[-1].post_data_json == {"vin": VIN}

    # -- the result: the decoded vehicle with the check-digit verdict, the type, the parts
    page.get_by_label(t("decl.owner")).check()
    page.get_by_label(t("decl.purpose")).select_option("parts_inquiry")
    page.locator("#vin").fill(VIN.lower())
    page.locator("#lookup-button").click()
    rows = page.locator("#parts tbody tr")
    status.get_by_text(t("lookup.found", n=rows.count())).wait_for()
    total = rows.count()
    assert total > 5
    assert s.posts("/v1/attestations")[-1].post_data_json == {
        "vin": VIN,
        "basis": "owner",
        "purpose": "parts_inquiry",
    }
    vehicle = page.locator("#vehicle")
    assert "Honda" in vehicle.inner_text() and "2003" in vehicle.inner_text()
    country = "美国" if lang == "zh-CN" else "United States"
    assert country in vehicle.inner_text()
    assert page.locator("#check-digit").inner_text() == t("check.validRequired", found="3")
    assert "Honda Accord" in page.locator("#matched-type").inner_text()
    assert page.locator("#sample-banner").is_visible()
    categories = page.locator("#parts section.category")
    assert categories.count() == page.locator("#category-links a").count() >= 5
    assert t("category.brakes") in page.locator("#parts").inner_text()
    s.view("result", tablet=True)

    # -- filter: brand, part name, part number (without its punctuation), category, nothing
    def visible_rows() -> list[str]:
        return [r.inner_text() for r in rows.all() if r.is_visible()]

    filt = page.get_by_label(t("filter.label"))
    filt.fill("ATE")
    ate = visible_rows()
    assert 0 < len(ate) < total and all("ATE" in r.upper() for r in ate)
    assert (
        t("filter.status", n=len(ate), total=total) in page.locator("#filter-status").inner_text()
    )
    filt.fill("brake pad")
    assert all("brake pad" in r.lower() for r in visible_rows()) and visible_rows()
    number = page.locator("#parts td.pn").first.inner_text()
    filt.fill(re.sub(r"[^0-9A-Za-z]", "", number))
    assert [number in r for r in visible_rows()] == [True]
    filt.fill(t("category.brakes"))
    shown = [s_.get_attribute("id") for s_ in categories.all() if s_.is_visible()]
    assert shown == ["cat-brakes"]
    s.view("filtered")
    filt.fill("no such part zzz")
    assert visible_rows() == [] and page.locator("#no-match").is_visible()
    filt.fill("")
    assert len(visible_rows()) == total
    # category jump links scroll to and focus the category, never touching the address
    link = page.locator("#category-links a").nth(2)
    target = link.get_attribute("data-target")
    link.click()
    assert page.evaluate("document.activeElement.id") == f"{target}-title"
    assert page.url == gateway.base + "/"

    # -- print: the parts list without the form, the history or the buttons
    page.emulate_media(media="print")
    assert page.locator("#query-card").is_hidden() and page.locator("#history-card").is_hidden()
    assert page.locator("#print").is_hidden() and page.locator("#parts").is_visible()
    shoot(page, f"{lang}-print")
    page.emulate_media(media="screen")

    # -- alternatives: a clear choice; choosing one asks again with a NEW attestation
    look_up(s, ALT_VIN)
    box = page.locator("#alternatives-box")
    box.wait_for()
    assert page.locator("#alternatives li.current").count() == 1
    choice = page.locator("#alternatives li:not(.current)").first
    label = choice.locator(".type-label").inner_text()
    n_att = len(s.posts("/v1/attestations"))
    choice.get_by_role("button", name=t("result.showThis")).click()
    page.locator("#matched-type").get_by_text(label, exact=True).wait_for()
    assert page.locator("#alternatives li.current .type-label").inner_text() == label
    assert len(s.posts("/v1/attestations")) == n_att + 1
    chosen = s.posts("/v1/lookups")[-1].post_data_json
    assert chosen["vin"] == ALT_VIN and chosen["vehicle_type_id"].startswith("vt_")
    s.view("alternatives")

    # -- the search history on this device: newest first, one entry per VIN
    history = page.locator("#history-list li")
    assert history.count() == 2
    assert ALT_VIN in history.nth(0).inner_text() and "Audi" in history.nth(0).inner_text()
    assert "2009" in history.nth(0).inner_text()
    assert VIN in history.nth(1).inner_text() and "Honda" in history.nth(1).inner_text()
    stored = s.local_storage()
    keys = [k for k in stored if k.startswith("vingw.history.")]
    assert len(keys) == 1 and VIN in stored[keys[0]] and ALT_VIN in stored[keys[0]]
    assert all(v not in value for k, value in stored.items() if k != keys[0] for v in ALL_VINS)
    s.view("history", tablet=True)
    # re-run: the VIN comes back, the declaration does not
    n_att = len(s.posts("/v1/attestations"))
    history.nth(1).get_by_role("button", name=t("history.rerun")).click()
    status.get_by_text(t("history.rerunStatus")).wait_for()
    assert page.locator("#vin").input_value() == VIN
    assert page.locator("input[name=basis]:checked").count() == 0
    page.locator("#lookup-button").click()
    alert.get_by_text(t("decl.chooseTitle")).wait_for()
    assert len(s.posts("/v1/attestations")) == n_att
    page.get_by_label(t("decl.owner")).check()
    page.locator("#lookup-button").click()
    status.get_by_text(t("lookup.found", n=total)).wait_for()
    assert len(s.posts("/v1/attestations")) == n_att + 1
    assert VIN in history.nth(0).inner_text()  # moved to the top
    # delete one, then clear
    history.nth(1).get_by_role("button", name=t("history.delete")).click()
    status.get_by_text(t("history.deleted")).wait_for()
    assert history.count() == 1 and ALT_VIN not in s.local_storage()[keys[0]]
    page.get_by_role("button", name=t("history.clear")).click()
    status.get_by_text(t("history.cleared")).wait_for()
    assert history.count() == 0
    assert page.locator("#history-empty").inner_text() == t("history.empty")
    assert all(v not in json.dumps(s.local_storage()) for v in ALL_VINS)
    # off: a lookup leaves nothing on the device
    page.get_by_label(t("history.enabled")).uncheck()
    status.get_by_text(t("history.turnedOff")).wait_for()
    look_up(s, VIN)
    status.get_by_text(t("lookup.found", n=total)).wait_for()
    assert history.count() == 0
    assert page.locator("#history-empty").inner_text() == t("history.off")
    assert all(v not in json.dumps(s.local_storage()) for v in ALL_VINS)
    page.get_by_label(t("history.enabled")).check()
    look_up(s, VIN)
    status.get_by_text(t("lookup.found", n=total)).wait_for()
    assert history.count() == 1

    # -- my data: export, withdraw consent (lookups refused), accept again
    page.locator("#nav-data").click()
    page.locator("#account").get_by_text(email).wait_for()
    s.view("my-data", tablet=True)
    with page.expect_download() as download_info:
        page.get_by_role("button", name=t("data.export")).click()
    exported_text = Path(download_info.value.path()).read_text()
    exported = json.loads(exported_text)
    assert exported["account"]["email"] == email
    assert len(exported["search_log"]) >= 10
    assert all(v not in exported_text for v in ALL_VINS)
    page.get_by_role("button", name=t("data.withdraw")).click()
    page.locator("#account").get_by_text(t("data.consentWithdrawn")).wait_for()
    page.locator("#nav-lookup").click()
    look_up(s, VIN)
    alert.get_by_text(t("problem.consent_withdrawn.title")).wait_for()
    s.view("consent-withdrawn")
    page.locator("#nav-data").click()
    page.get_by_role("button", name=t("data.accept", version=POLICY_VERSION)).click()
    page.locator("#account").get_by_text(t("data.consentGiven", version=POLICY_VERSION)).wait_for()

    # -- privacy, then delete the account (its history on this device goes too)
    s.assert_private(ALL_VINS)
    assert page.url == gateway.base + "/"
    page.get_by_role("button", name=t("data.delete")).click()
    page.get_by_role("button", name=t("data.deleteYes")).click()
    status.get_by_text(t("data.deleted")).wait_for()
    page.get_by_role("heading", name=t("login.title")).wait_for()
    assert page.locator("#nav").is_hidden()
    assert page.locator("#vin").input_value() == ""
    assert not [k for k in s.local_storage() if k.startswith("vingw.history.")]
    s.close()


def test_language_switch_is_remembered_and_rerenders(gateway: Gateway, browser: Any) -> None:
    """An English browser switches to Chinese and back; the choice survives a reload and
    reaches the privacy policy page; what is on screen (result, message) is rendered again."""
    s = Session(browser, gateway.base, "en")
    page = s.page
    s.open()
    page.get_by_role("heading", name=tx("en", "login.title")).wait_for()
    page.locator("[data-lang=zh-CN]").click()
    page.get_by_role("heading", name=tx("zh-CN", "login.title")).wait_for()
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.locator("[data-lang=zh-CN]").get_attribute("aria-pressed") == "true"
    assert s.local_storage()["vingw.lang"] == "zh-CN"
    s.open()  # a reload: remembered on this device
    page.get_by_role("heading", name=tx("zh-CN", "login.title")).wait_for()

    # the privacy policy page in the chosen language, and its own switch
    policy = s.context.new_page()
    policy.goto(gateway.base + "/privacy-policy.html")
    zh = policy.locator("article[data-policy-lang=zh-CN]")
    en = policy.locator("article[data-policy-lang=en]")
    assert zh.is_visible() and en.is_hidden()
    assert "搜索记录" in zh.inner_text() and "50" in zh.inner_text() and "30" in zh.inner_text()
    assert_accessible(policy, "privacy policy (zh-CN)")
    shoot(policy, "zh-CN-privacy-policy")
    policy.locator("[data-lang=en]").click()
    assert en.is_visible() and zh.is_hidden()
    assert "Search history" in en.inner_text() and "article 24" in en.inner_text()
    assert_accessible(policy, "privacy policy (en)")
    shoot(policy, "en-privacy-policy")
    policy.close()
    s.open()
    page.get_by_role("heading", name=tx("en", "login.title")).wait_for()

    # a result and a message on screen follow a switch
    register_and_log_in(s, f"switch-{os.getpid()}@example.com")
    look_up(s, VIN)
    page.locator("#results").wait_for()
    assert tx("en", "category.brakes") in page.locator("#parts").inner_text()
    page.locator("#parts-filter").fill("ATE")
    page.locator("[data-lang=zh-CN]").click()
    page.locator("#parts").get_by_text(tx("zh-CN", "category.brakes")).first.wait_for()
    assert page.locator("#parts-filter").input_value() == "ATE"  # the filter is kept
    assert (
        tx("zh-CN", "check.validRequired", found="3") == page.locator("#check-digit").inner_text()
    )
    n = len([r for r in page.locator("#parts tbody tr").all() if r.is_visible()])
    assert 0 < n < page.locator("#parts tbody tr").count()
    page.locator("#vin").fill(BAD_VIN)
    page.locator("#lookup-button").click()
    page.locator("#alert").get_by_text(tx("zh-CN", "problem.invalid_vin.title")).wait_for()
    page.locator("[data-lang=en]").click()
    page.locator("#alert").get_by_text(tx("en", "problem.invalid_vin.title")).wait_for()
    assert page.locator("#vin-error").inner_text() == tx("en", "fieldError.vin")

    # the history keeps at most 50 entries and none older than 30 days
    key = next(k for k in s.local_storage() if k.startswith("vingw.history."))
    day_ms = 86_400_000
    page.evaluate(
        """([key, day]) => {
          const now = Date.now();
          // first: without the 30-day bound it would be shown, whatever the 50-entry bound
          const entries = [{vin: "OLDOLDOLDOLDOLD31", make: "Old", model_year: 1999,
                            at: now - 31 * day}];
          for (let i = 0; i < 60; i += 1) {
            entries.push({vin: "FAKE" + String(i).padStart(13, "0"), make: "Fake",
                          model_year: 2000, at: now - i * 1000});
          }
          localStorage.setItem(key, JSON.stringify({enabled: true, entries}));
        }""",
        [key, day_ms],
    )
    page.locator("#logout").click()
    log_in(s, f"switch-{os.getpid()}@example.com", PASSWORD)
    assert page.locator("#history-list li").count() == 50
    stored = json.loads(s.local_storage()[key])["entries"]
    assert len(stored) == 50 and all(e["vin"].startswith("FAKE") for e in stored)
    s.assert_private(ALL_VINS)
    s.close()


@pytest.mark.parametrize("lang", LANGS)
def test_block_countdown_and_console(gateway: Gateway, browser: Any, lang: str) -> None:
    """A workshop account is blocked (a 4th distinct VIN): the reason in plain words, a live
    countdown, how to contest. An operator sees the flag and the charts, unblocks with a
    reason, suspends and unsuspends, and downloads the disclosure export."""
    user = Session(browser, gateway.base, lang)
    t, page = user.t, user.page
    alert, status = page.locator("#alert"), page.locator("#status")
    email = f"busy-{lang.lower()}-{os.getpid()}@example.com"
    user.open()
    register_and_log_in(user, email)
    facts = page.locator("#vehicle")
    for vin in BLOCK_VINS[:3]:
        look_up(user, vin)
        status.get_by_text(re.compile(".")).wait_for()
        page.locator("#results").wait_for()
        if vin == BLOCK_VINS[0]:  # the decoded vehicle with its model-year candidates
            assert t("year.likely", year=2016) in facts.inner_text()
            assert t("year.also", years="1986") in facts.inner_text()
            assert page.locator("#check-digit").inner_text() == t("check.validRequired", found="X")
        elif vin == BLOCK_VINS[1]:
            verdict = t("check.invalidOptional", found="0", expected="6")
            assert page.locator("#check-digit").inner_text() == verdict
        else:
            assert t("year.none") in facts.inner_text()
    look_up(user, BLOCK_VINS[3])
    alert.get_by_text(t("problem.suspicious_usage_blocked.title")).wait_for()
    text = alert.inner_text()
    assert t("policy.distinct_vins.reason") in text and t("policy.distinct_vins.action") in text
    assert "distinct_vins" not in alert.locator("strong").all_inner_texts()
    assert "900" not in text.split(t("problem.details"))[0]  # no raw Retry-After
    timer = page.locator("#countdown")
    first = int(timer.get_attribute("data-seconds") or "0")
    assert 850 < first <= 900
    assert timer.get_attribute("role") == "timer"
    page.wait_for_function(
        "n => Number(document.getElementById('countdown').dataset.seconds) < n", arg=first
    )
    assert timer.inner_text() != ""
    contest = alert.get_by_role("link", name=t("block.contestLink"))
    assert contest.get_attribute("href") == "/privacy-policy.html"
    assert contest.get_attribute("target") == "_blank"
    assert user.posts("/v1/lookups")[-1].post_data_json == {"vin": BLOCK_VINS[2]}
    user.view("blocked", tablet=True)

    # -- the operators' console, in the same language
    op = Session(browser, gateway.base, lang)
    op.open()
    log_in(op, ADMIN_EMAIL, ADMIN_PASSWORD)
    op.page.locator("#nav-console").click()
    op.page.get_by_role("heading", name=t("console.title")).wait_for()
    blocked_id = account_id(gateway.base, email, PASSWORD)
    row = op.page.locator(f"#flags-table tr:has(td:text-is('{blocked_id}'))")
    row.wait_for()
    assert row.get_attribute("data-policy") == "distinct_vins"
    assert t("policy.distinct_vins.name") in row.inner_text()
    assert row.locator(".tag.open").text_content() == t("console.open")
    # charts: queries per day (bars), blocks by policy (a bar for distinct VINs), refusals
    op.page.locator("#chart-queries svg rect").first.wait_for()
    chart_title = op.page.locator("#chart-queries svg[role=img] > title")
    assert chart_title.text_content() == t("chart.queries")
    blocks = op.page.locator("#chart-blocks svg g.bar title")
    assert any(t("policy.distinct_vins.name") in b for b in blocks.all_text_contents())
    with httpx.Client(base_url=gateway.base) as client:
        token = client.post(
            "/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        ).json()["access_token"]
        counts = client.get(
            "/v1/admin/search-stats", headers={"Authorization": f"Bearer {token}"}
        ).json()["counts"]
    if any(c["dimension"] == "code" for c in counts):
        op.page.locator("#chart-refusals svg g.bar").first.wait_for()
    else:  # the statistics have no "code" dimension: said so, not a blank chart
        op.page.locator("#refusals-unavailable").wait_for()
    op.view("console", tablet=True)

    # -- unblock: the reason is required (and marked), then the block is lifted
    row.get_by_role("button", name=t("console.select")).click()
    assert op.page.locator("#admin-account").input_value() == blocked_id
    op.page.get_by_role("button", name=t("console.unblock")).click()
    op.page.locator("#alert").get_by_text(t("console.incompleteTitle")).wait_for()
    assert op.page.locator("#admin-reason").get_attribute("aria-invalid") == "true"
    assert op.page.locator("#admin-account").get_attribute("aria-invalid") is None
    op.view("console-reason-missing")
    op.page.get_by_label(t("console.reason")).fill("case 2026-17: workshop confirmed by phone")
    op.page.get_by_role("button", name=t("console.unblock")).click()
    op.page.locator("#status").get_by_text(t("console.unblocked", n=1)).wait_for()
    row.wait_for(state="detached")  # the open flags again: this one is resolved
    op.page.get_by_label(t("console.includeResolved")).check()
    resolved = op.page.locator(f"#flags-table tr:has(td:text-is('{blocked_id}'))")
    resolved.wait_for()
    assert resolved.locator(".tag.open").count() == 0

    # -- the user can look up again; then suspended (refused), then active again
    look_up(user, BLOCK_VINS[3])
    status.get_by_text(re.compile(".")).wait_for()
    page.locator("#results").wait_for()
    op.page.locator("#admin-account").fill(blocked_id)
    op.page.locator("#admin-reason").fill("case 2026-17: pause while checking")
    op.page.get_by_role("button", name=t("console.suspend"), exact=True).click()
    op.page.locator("#status").get_by_text(t("console.suspended")).wait_for()
    look_up(user, BLOCK_VINS[3])
    alert.get_by_text(t("problem.account_suspended.title")).wait_for()
    op.page.locator("#admin-reason").fill("case 2026-17: checked")
    op.page.get_by_role("button", name=t("console.unsuspend")).click()
    op.page.locator("#status").get_by_text(t("console.unsuspended")).wait_for()

    # -- the disclosure export (6.4): the account's queries, pseudonymized, no VIN
    op.page.locator("#admin-reason").fill("case 2026-17: disclosure to the authority")
    with op.page.expect_download() as download_info:
        op.page.get_by_role("button", name=t("console.disclosure")).click()
    disclosed_text = Path(download_info.value.path()).read_text()
    disclosed = json.loads(disclosed_text)
    assert disclosed["account_id"] == blocked_id and len(disclosed["rows"]) >= 8
    assert all(v not in disclosed_text for v in ALL_VINS)
    op.page.locator("#status").get_by_text(
        t("console.disclosed", n=len(disclosed["rows"]))
    ).wait_for()
    # an unknown account: the id field is the one marked
    op.page.locator("#admin-account").fill("acct_does_not_exist")
    op.page.locator("#admin-reason").fill("case 2026-18: typo check")
    op.page.get_by_role("button", name=t("console.unblock")).click()
    op.page.locator("#alert").get_by_text(t("problem.not_found.title")).wait_for()
    assert op.page.locator("#admin-account").get_attribute("aria-invalid") == "true"
    assert op.page.locator("#admin-reason").get_attribute("aria-invalid") is None

    user.assert_private(ALL_VINS)
    op.assert_private(ALL_VINS)
    user.close()
    op.close()


def test_frontend_can_be_turned_off(tmp_path: Path) -> None:
    from gateway.config import Settings
    from gateway.main import create_app

    def mounted(enabled: bool) -> bool:
        settings = Settings(data_dir=tmp_path, frontend_enabled=enabled)
        return any(getattr(r, "name", None) == "frontend" for r in create_app(settings).routes)

    assert mounted(True) and not mounted(False)
