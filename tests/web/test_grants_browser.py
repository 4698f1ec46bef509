"""Owner-issued grants in a real browser, against a real ``vin-gateway serve`` process: the
counter flow. An owner declares a vehicle and makes a one-time code; a workshop (another
browser context) redeems it, looks up parts with the grant as its declaration; the owner sees
the use and revokes; the workshop's next lookup is refused with the grant_revoked message. In
English and in Simplified Chinese, with axe-core on every new view, at 1366x900 and 820x1180.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import segno

from tests.gateway.procs import FAST_ENV, running
from tests.web.browser import CHROMIUM, CHROMIUM_ARGS, LANGS, require_browser, tx
from tests.web.test_frontend import Gateway, Session, register_and_log_in

pytestmark = pytest.mark.slow

VIN = "1HGCM82633A004352"  # public example VIN: Honda Accord 2003 (in the sample catalogue)
BAD_VIN = "1HGCM82633A0O4352"  # letter O: refused in the page, never sent
CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$")
WORKSHOP_CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")
#: one-time codes shown during the module: never in the gateway's output, a URL or storage
CODES: list[str] = []


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    env = {
        **FAST_ENV,
        "VINGW_DATA_DIR": str(tmp_path_factory.mktemp("grants-web") / "var"),
        "VINGW_LIMIT_IP_BURST": "500",  # every test logs in from 127.0.0.1
    }
    with running(["serve"], env) as (base, output):
        yield Gateway(base, output)
    log = "\n".join(output)
    assert "GET /v1/privacy-policy 200" in log  # the access log was on
    for secret in (VIN, *CODES):
        assert secret not in log and secret.lower() not in log
        assert secret.replace("-", "") not in log


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


def assert_code_private(s: Session, code: str) -> None:
    """A one-time code is as sensitive as a token: in no URL, no storage, no console line."""
    plain = code.replace("-", "")
    for r in s.requests:
        assert plain not in r.url.upper().replace("-", ""), r.url
    stored = json.dumps(s.local_storage()).upper().replace("-", "")
    assert plain not in stored
    assert all(plain not in m.upper().replace("-", "") for m in s.console)


@pytest.mark.parametrize("lang", LANGS)
def test_counter_flow(gateway: Gateway, browser: Any, lang: str) -> None:
    owner = Session(browser, gateway.base, lang)
    t, page = owner.t, owner.page
    alert, status = page.locator("#alert"), page.locator("#status")
    tag = f"{lang.lower()}-{os.getpid()}"

    # -- the owner declares a vehicle (a VIN that cannot exist is refused in the page)
    owner.open()
    register_and_log_in(owner, f"owner-{tag}@example.com")
    page.locator("#nav-vehicles").click()
    page.get_by_role("heading", name=t("vehicles.title")).wait_for()
    assert page.locator("#vehicles-empty").inner_text() == t("vehicles.empty")
    assert t("vehicles.privacy") in page.locator("#vehicles-privacy").inner_text()
    owner.view("vehicles-empty", tablet=True)
    form = page.locator("#vehicle-form")
    form.get_by_label(t("vehicles.vin")).fill(BAD_VIN)
    form.get_by_role("button", name=t("vehicles.submit")).click()
    alert.get_by_text(t("problem.invalid_vin.title")).wait_for()
    assert page.locator("#vehicle-vin").get_attribute("aria-invalid") == "true"
    assert owner.posts("/v1/vehicles") == []
    form.get_by_label(t("vehicles.vin")).fill(VIN.lower())
    page.locator("#vehicle-label").fill("Family Accord")
    form.get_by_role("button", name=t("vehicles.submit")).click()
    status.get_by_text(t("vehicles.declaredStatus", name="Family Accord")).wait_for()
    assert owner.posts("/v1/vehicles")[-1].post_data_json == {"vin": VIN, "label": "Family Accord"}
    assert page.locator("#vehicle-vin").get_attribute("aria-invalid") is None
    item = page.locator("#vehicles-list li")
    assert item.count() == 1 and VIN in item.inner_text()
    vehicle_id = item.get_attribute("data-vehicle") or ""
    assert vehicle_id.startswith("veh_")
    # the clear VIN is on this device only, keyed by the vehicle's id
    kept = {
        k: json.loads(v)
        for k, v in owner.local_storage().items()
        if k.startswith("vingw.vehicles.")
    }
    assert list(kept.values()) == [{vehicle_id: VIN}]
    # declaring it again: the gateway knows it (by its pseudonym), the field is marked
    form.get_by_label(t("vehicles.vin")).fill(VIN)
    form.get_by_role("button", name=t("vehicles.submit")).click()
    alert.get_by_text(t("problem.vehicle_exists.title")).wait_for()
    assert page.locator("#vehicle-vin").get_attribute("aria-invalid") == "true"
    page.locator("#vehicle-vin").fill("")
    # rename, with the keyboard: Enter saves
    item.get_by_role("button", name=t("vehicles.rename")).click()
    rename = item.get_by_label(t("vehicles.newLabel"))
    assert page.evaluate("document.activeElement.id") == f"rename-{vehicle_id}"
    rename.fill("Blue Accord")
    rename.press("Enter")
    status.get_by_text(t("vehicles.renamed")).wait_for()
    item.get_by_role("heading", name="Blue Accord").wait_for()
    assert page.evaluate("document.activeElement.classList.contains('rename')")
    owner.view("vehicles", tablet=True)

    # -- a grant for it, with a one-time code given at the counter
    item.get_by_role("button", name=t("vehicles.grant")).click()
    page.get_by_role("heading", name=t("grants.title")).wait_for()
    page.wait_for_function(
        "id => document.getElementById('grant-vehicle').value === id", arg=vehicle_id
    )
    assert page.evaluate("document.activeElement.id") == "grant-vehicle"
    owner.view("grants-form", tablet=True)
    until = (date.today() + timedelta(days=30)).isoformat()
    # nothing chosen for the purposes: marked, nothing sent
    page.get_by_role("checkbox", name=t("purpose.parts_inquiry")).uncheck()
    page.get_by_role("checkbox", name=t("purpose.maintenance")).uncheck()
    page.locator("#grant-until").fill(until)
    page.get_by_role("button", name=t("grants.submit")).click()
    alert.get_by_text(t("grants.incompleteTitle")).wait_for()
    assert page.locator("#grant-purposes").get_attribute("aria-invalid") == "true"
    assert owner.posts("/v1/grants") == []
    page.get_by_role("checkbox", name=t("purpose.parts_inquiry")).check()
    page.get_by_label(t("grants.maxUses")).fill("5")
    assert page.get_by_role("radio", name=t("grants.toCounter")).is_checked()
    page.get_by_role("button", name=t("grants.submit")).click()
    status.get_by_text(t("code.created")).wait_for()
    sent = owner.posts("/v1/grants")[-1].post_data_json
    assert sent["vehicle_id"] == vehicle_id and sent["purposes"] == ["parts_inquiry"]
    assert sent["max_uses"] == 5 and "workshop_code" not in sent
    assert sent["valid_until"].startswith(until) or sent["valid_until"] > until
    code = page.locator("#grant-code").inner_text().strip()
    assert CODE.match(code), code
    CODES.append(code)
    assert page.evaluate("document.activeElement.id") == "code-title"
    qr = page.locator("#grant-qr")
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml;base64,")
    assert qr.get_attribute("alt") == t("code.qrAlt")
    page.wait_for_function("document.getElementById('grant-qr').naturalWidth > 0")
    left = int(page.locator("#code-countdown").get_attribute("data-seconds") or "0")
    assert 500 < left <= 600
    given = page.locator("#given-list li")
    assert given.count() == 1 and given.get_attribute("data-status") == "pending"
    grant_id = given.get_attribute("data-grant") or ""
    assert grant_id.startswith("grt_")
    assert given.locator(".tag").text_content() == t("grantStatus.pending")
    owner.view("grant-code", tablet=True)

    # -- the workshop (another browser, a tablet) redeems the code as typed
    shop = Session(browser, gateway.base, lang, viewport="tablet")
    wpage = shop.page
    walert, wstatus = wpage.locator("#alert"), wpage.locator("#status")
    shop.open()
    register_and_log_in(shop, f"workshop-{tag}@example.com")
    wpage.locator("#nav-workshop").click()
    wpage.get_by_role("heading", name=t("workshop.title")).wait_for()
    own = wpage.locator("#own-code")
    own.get_by_text(WORKSHOP_CODE).wait_for()
    shop.view("workshop-empty")
    redeem = wpage.get_by_label(t("workshop.code"))
    redeem.fill("ABC-12")  # not a code: nothing sent, no failed try counted
    wpage.get_by_role("button", name=t("workshop.redeemSubmit")).click()
    walert.get_by_text(t("workshop.codeFormatTitle")).wait_for()
    assert wpage.locator("#redeem-code").get_attribute("aria-invalid") == "true"
    assert shop.posts("/v1/grant-codes/redeem") == []
    redeem.fill(code.lower().replace("-", " "))
    wpage.get_by_role("button", name=t("workshop.redeemSubmit")).click()
    received = wpage.locator("#received-list li")
    received.first.wait_for()
    assert shop.posts("/v1/grant-codes/redeem")[-1].post_data_json == {"code": code}
    assert received.count() == 1 and received.get_attribute("data-status") == "active"
    assert received.locator(".tag").text_content() == t("grantStatus.active")
    assert wpage.locator("#redeem-code").input_value() == ""
    shop.view("workshop-received", tablet=True)

    # -- the owner's screen sees the redemption by itself (the code is taken off the screen)
    status.get_by_text(t("code.redeemed")).wait_for(timeout=20_000)
    assert page.locator("#code-card").is_hidden()
    assert page.locator("#grant-code").inner_text() == ""
    given.and_(page.locator("[data-status=active]")).wait_for()
    assert own.inner_text() in given.inner_text()  # the workshop's code

    # -- the workshop looks up parts with the grant as its declaration
    received.get_by_role("button", name=t("workshop.useGrant")).click()
    wpage.get_by_role("heading", name=t("lookup.title")).wait_for()
    assert wpage.locator("#basis-granted").is_checked()
    assert wpage.locator("#grant-choice").input_value() == grant_id
    # the grant covers parts inquiry only: maintenance cannot be chosen
    assert wpage.locator("#purpose option[value=maintenance]").is_disabled()
    shop.view("lookup-grant", tablet=True)
    wpage.locator("#vin").fill(VIN)
    wpage.locator("#lookup-button").click()
    rows = wpage.locator("#parts tbody tr")
    rows.first.wait_for()
    wstatus.get_by_text(t("lookup.found", n=rows.count())).wait_for()
    issued = shop.posts("/v1/attestations")[-1].post_data_json
    assert issued == {
        "vin": VIN,
        "basis": "owner_granted",
        "purpose": "parts_inquiry",
        "grant_id": grant_id,
    }
    n_lookups = len(shop.posts("/v1/lookups"))

    # -- the owner sees the use, then revokes (with a confirmation)
    given.get_by_role("button", name=t("uses.show")).click()
    uses = given.locator(".uses-table tbody tr")
    uses.first.wait_for()
    lookup_rows = given.locator(".uses-table tbody tr", has_text=t("endpoint.lookup"))
    assert lookup_rows.count() >= 1
    assert t("outcome.ok") in lookup_rows.first.inner_text()
    assert t("purpose.parts_inquiry") in lookup_rows.first.inner_text()
    assert t("grants.usesOf", n=1, max=5) in given.locator(".facts").inner_text()  # counted once
    owner.view("grant-uses", tablet=True)
    given.get_by_role("button", name=t("grants.revoke")).click()
    assert page.evaluate("document.activeElement.id") == f"grant-{grant_id}-no"
    assert t("grants.revokeConfirm") in given.inner_text()
    owner.view("grant-revoke-confirm")
    given.get_by_role("button", name=t("grants.revokeYes")).click()
    status.get_by_text(t("grants.revokedStatus")).wait_for()
    assert given.get_attribute("data-status") == "revoked"
    assert given.get_by_role("button", name=t("grants.revoke")).count() == 0
    # what is on screen follows a language switch (the list and its uses are rendered again)
    other = "zh-CN" if lang == "en" else "en"
    page.locator(f"[data-lang={other}]").click()
    page.get_by_role("heading", name=tx(other, "grants.title")).wait_for()
    assert given.locator(".tag").text_content() == tx(other, "grantStatus.revoked")
    assert tx(other, "endpoint.lookup") in given.locator(".uses-table").inner_text()
    page.locator(f"[data-lang={lang}]").click()
    page.get_by_role("heading", name=t("grants.title")).wait_for()

    # -- the workshop's next lookup is refused: the grant was revoked
    wpage.locator("#lookup-button").click()
    walert.get_by_text(t("problem.grant_revoked.title")).wait_for()
    assert t("problem.grant_revoked.action") in walert.inner_text()
    assert "grant_revoked" not in walert.locator("strong").inner_text()
    assert len(shop.posts("/v1/lookups")) == n_lookups  # refused when the attestation was asked
    # the revoked grant is no longer offered
    wpage.locator("#grant-none").wait_for()
    assert wpage.locator("#grant-choice option").count() == 0
    assert (
        wpage.locator("#grant-pick").is_hidden()
        and wpage.locator("#grant-choice-error").is_hidden()
    )
    shop.view("grant-revoked", tablet=True)
    wpage.locator("#nav-workshop").click()
    received.and_(wpage.locator("[data-status=revoked]")).wait_for()
    assert received.get_by_role("button", name=t("workshop.useGrant")).count() == 0

    # -- the owner deletes the vehicle (confirmation); its VIN leaves this device
    page.locator("#nav-vehicles").click()
    item.get_by_role("button", name=t("vehicles.delete")).click()
    assert t("vehicles.deleteConfirm") in item.inner_text()
    owner.view("vehicle-delete-confirm")
    item.get_by_role("button", name=t("vehicles.deleteYes")).click()
    status.get_by_text(t("vehicles.deleted")).wait_for()
    assert page.locator("#vehicles-list li").count() == 0
    assert not [k for k in owner.local_storage() if k.startswith("vingw.vehicles.")]

    for s in (owner, shop):
        s.assert_private((VIN,))
        assert_code_private(s, code)
    owner.close()
    shop.close()


def test_an_unknown_code_is_refused_in_chinese(gateway: Gateway, browser: Any) -> None:
    """An unknown code: the grant_code_invalid message in Chinese, the field marked."""
    s = Session(browser, gateway.base, "zh-CN")
    s.open()
    register_and_log_in(s, f"workshop-bad-code-{os.getpid()}@example.com")
    s.page.locator("#nav-workshop").click()
    s.page.get_by_label(s.t("workshop.code")).fill("0000000000")
    s.page.get_by_role("button", name=s.t("workshop.redeemSubmit")).click()
    s.page.locator("#alert").get_by_text(s.t("problem.grant_code_invalid.title")).wait_for()
    assert s.page.locator("#redeem-code").get_attribute("aria-invalid") == "true"
    assert s.page.locator("#redeem-code-error").inner_text() == s.t("fieldError.grantCodeInvalid")
    s.view("redeem-invalid")
    s.assert_private((VIN,))
    s.close()


def test_only_a_drawing_svg_becomes_the_qr_image(gateway: Gateway, browser: Any) -> None:
    """The QR code from the API is shown only when it is an SVG of drawing elements (as an
    image of a data: URL): a script, a foreignObject, an event handler, a link or another root
    element gets no image at all."""
    s = Session(browser, gateway.base, "en")
    s.open()
    check = "svg => window.VinGwGrants.qrImage(svg)"
    qr = segno.make("7K2MQ-9PXW4", error="m")
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=4)
    good = s.page.evaluate(check, out.getvalue().decode())
    assert good.startswith("data:image/svg+xml;base64,")
    shown = base64.b64decode(good.split(",", 1)[1]).decode()
    assert shown.startswith("<svg") and "viewBox" in shown and "path" in shown
    head = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink">'
    for bad in (
        head + "<script>alert(1)</script></svg>",
        head
        + '<foreignObject><div xmlns="http://www.w3.org/1999/xhtml">x</div></foreignObject></svg>',
        head.replace("<svg ", '<svg onload="alert(1)" ') + "</svg>",
        head + '<path d="M0 0h1" onclick="alert(1)"/></svg>',
        head + '<a x:href="javascript:alert(1)"><path d="M0 0h1"/></a></svg>',
        head + '<use x:href="#p"/></svg>',
        '<html xmlns="http://www.w3.org/1999/xhtml"><body>x</body></html>',
        "<svg>not svg namespace</svg>",
        head + "<path",  # not well-formed
        "",
    ):
        assert s.page.evaluate(check, bad) is None, bad
    assert s.errors == []
    s.close()
