"""The OpenAPI document is valid and tells the truth about errors (see gateway/openapi.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from gateway.exceptions import GatewayError
from gateway.main import create_app
from gateway.openapi import EXAMPLE_VIN, api_routes, route_errors
from gateway.problems import PROBLEM_JSON
from gateway.security.exceptions import AttestationError
from tests.gateway.conftest import embedded_settings, serving

VIN_OPERATIONS = {("post", "/v1/vins/decode"), ("post", "/v1/lookups")}
ISSUE = ("post", "/v1/attestations")
BODY_STATUSES = {"413", "415", "422"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return create_app(embedded_settings(tmp_path_factory.mktemp("openapi")))


@pytest.fixture(scope="module")
def doc(app: Any) -> dict[str, Any]:
    return app.openapi()  # type: ignore[no-any-return]


def operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return doc["paths"][path][method]  # type: ignore[no-any-return]


def codes(response: dict[str, Any]) -> set[str]:
    schema = response["content"][PROBLEM_JSON]["schema"]
    return {code for part in schema["allOf"][1:] for code in part["properties"]["code"]["enum"]}


def test_the_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
        "code",
    ]
    for member in ("errors", "policy", "instance"):
        assert member in doc["components"]["schemas"]["Problem"]["properties"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_every_route_declares_the_problems_of_its_error_classes(app: Any, doc: Any) -> None:
    seen = 0
    for route in api_routes(app):
        for method in route.methods:
            op = operation(doc, method.lower(), route.path_format)
            errors = route_errors(route)
            for status in {e.status for e in errors}:
                response = op["responses"].get(str(status))
                assert response is not None, (method, route.path_format, status)
                assert set(response["content"]) == {PROBLEM_JSON}, (route.path_format, status)
                wanted = {e.code for e in errors if e.status == status}
                assert codes(response) == wanted, (route.path_format, status)
                examples = response["content"][PROBLEM_JSON]["examples"]
                assert {ex["value"]["code"] for ex in examples.values()} == wanted
                assert all(ex["value"]["status"] == status for ex in examples.values())
            # nothing else claims to be an error: every 4xx/5xx is one of these problems
            documented = {s for s in op["responses"] if s[0] in "45"}
            assert documented == {str(e.status) for e in errors}, route.path_format
            seen += 1
    assert seen > 25


def test_body_operations_declare_413_415_422(doc: dict[str, Any]) -> None:
    bodies = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "requestBody" not in op:
                continue
            bodies += 1
            assert set(op["responses"]) >= BODY_STATUSES, (method, path)
            for status in BODY_STATUSES:
                assert PROBLEM_JSON in op["responses"][status]["content"], (method, path)
            assert "payload_too_large" in codes(op["responses"]["413"])
            assert "unsupported_media_type" in codes(op["responses"]["415"])
            assert "invalid_request" in codes(op["responses"]["422"])
    assert bodies >= 15


def test_vin_endpoints(doc: dict[str, Any]) -> None:
    """Stated independently of the declarations: what the VIN path is known to answer."""
    attestation_codes = {cls.code for cls in AttestationError.__subclasses__()}
    assert (
        "attestation_missing" in attestation_codes and "attestation_replayed" in attestation_codes
    )
    for method, path in VIN_OPERATIONS:
        op = operation(doc, method, path)
        responses = op["responses"]
        assert {"401", "403", "413", "415", "422", "429", "503"} <= set(responses), path
        assert {"not_authenticated", "invalid_token"} <= codes(responses["401"])
        assert attestation_codes | {"account_suspended", "consent_withdrawn"} <= codes(
            responses["403"]
        )
        assert "attestation_invalid" not in codes(responses["403"])  # the base is never sent
        assert {"invalid_vin", "invalid_request"} <= codes(responses["422"])
        assert codes(responses["429"]) == {"rate_limited", "suspicious_usage_blocked"}
        assert "limiter_unavailable" in codes(responses["503"])
        assert {"Retry-After", "RateLimit-Policy", "RateLimit"} <= set(responses["429"]["headers"])
        assert "Retry-After" in responses["503"]["headers"]
        assert "WWW-Authenticate" in responses["401"]["headers"]
        assert {"RateLimit-Policy", "RateLimit"} <= set(responses["200"]["headers"])
        # VIN-Attestation: required in the document (the runtime refuses a missing one itself)
        (header,) = [p for p in op["parameters"] if p["name"].lower() == "vin-attestation"]
        assert header["in"] == "header" and header["required"] is True
        # examples with the public example VIN, in the body (never in a URL)
        assert op["requestBody"]["content"]["application/json"]["example"]["vin"] == EXAMPLE_VIN
        example = responses["200"]["content"]["application/json"]["example"]
        assert example["vehicle"]["vin"] == EXAMPLE_VIN and example["vehicle"]["make"] == "Honda"
        assert EXAMPLE_VIN not in path
    lookup = operation(doc, "post", "/v1/lookups")["responses"]
    assert "vehicle_type_not_matching" in codes(lookup["422"])
    assert {"502", "504"} <= set(lookup) and "catalogue_unavailable" in codes(lookup["503"])

    issue = operation(doc, *ISSUE)
    assert not [p for p in issue.get("parameters", []) if p["name"].lower() == "vin-attestation"]
    assert {"owner_authorization_missing", "owner_authorization_expired"} <= codes(
        issue["responses"]["403"]
    )
    assert {"RateLimit-Policy", "RateLimit"} <= set(issue["responses"]["201"]["headers"])
    examples = issue["requestBody"]["content"]["application/json"]["examples"]
    assert {ex["value"]["vin"] for ex in examples.values()} == {EXAMPLE_VIN}


def test_headers_and_limits_elsewhere(doc: dict[str, Any]) -> None:
    register = operation(doc, "post", "/v1/accounts")["responses"]
    assert (
        codes(register["429"]) == {"rate_limited"} and "Retry-After" in register["429"]["headers"]
    )
    assert {"email_taken"} == codes(register["409"])
    me = operation(doc, "get", "/v1/me")["responses"]
    assert {"RateLimit-Policy", "RateLimit"} <= set(me["200"]["headers"])
    assert "admin_required" in codes(operation(doc, "get", "/v1/admin/flags")["responses"]["403"])
    assert "RateLimit" not in operation(doc, "get", "/v1/privacy-policy")["responses"]["200"].get(
        "headers", {}
    )
    for name in ("RateLimit-Policy", "RateLimit", "Retry-After", "WWW-Authenticate"):
        assert name in doc["components"]["headers"]


def test_every_documented_code_is_a_gateway_error(doc: dict[str, Any]) -> None:
    import gateway.main  # noqa: F401 - imports every module that defines a GatewayError
    from tests.gateway.test_problem_codes import all_errors

    known = all_errors(GatewayError)
    for item in doc["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                if PROBLEM_JSON in response.get("content", {}):
                    assert all(known[c] == int(status) for c in codes(response))


async def test_a_missing_attestation_is_still_the_attestation_problem(tmp_path: Path) -> None:
    """The document says required; the runtime still answers attestation_missing, not 422."""
    async with serving(embedded_settings(tmp_path), "embedded") as api:
        account = await api.workshop()
        r = await api.client.post("/v1/lookups", json={"vin": EXAMPLE_VIN}, headers=account.auth)
        assert r.status_code == 403
        assert r.headers["content-type"] == PROBLEM_JSON
        assert r.json()["code"] == "attestation_missing"
        assert EXAMPLE_VIN not in r.text
        documented = codes(operation(api.app.openapi(), "post", "/v1/lookups")["responses"]["403"])
        assert r.json()["code"] in documented


async def test_a_wrong_method_gets_405_naming_every_documented_method(tmp_path: Path) -> None:
    """Allow lists every method the path has (the router's own 405 names one route's), and the
    frontend never claims an API path for another method (it answered POST /healthz)."""
    async with serving(embedded_settings(tmp_path), "embedded") as api:
        doc = api.app.openapi()
        checked = 0
        for path, item in doc["paths"].items():
            documented = sorted(method.upper() for method in item)
            url = path.replace("{", "").replace("}", "")  # a template's names as values
            for method in {"PUT", "OPTIONS", "HEAD", "DELETE", "POST"} - set(documented):
                r = await api.client.request(method, url)
                assert r.status_code == 405, (method, path, r.status_code)
                assert r.headers["allow"] == ", ".join(documented), (method, path)
                assert r.headers["content-type"] == PROBLEM_JSON, (method, path)
                checked += 1
        assert checked > 60


def test_form_bodies_are_described_as_forms_are_read(doc: dict[str, Any]) -> None:
    """A form member sent empty is absent to FastAPI (a required one is then missing), and a
    form has no null: the document says so, so a client or a fuzzer sending what it allows is
    not refused (an empty username was a schema-valid request refused as `missing`)."""
    forms = 0
    for item in doc["paths"].values():
        for op in item.values():
            content = op.get("requestBody", {}).get("content", {})
            for media_type in set(content) & {"application/x-www-form-urlencoded"}:
                schema = content[media_type]["schema"]
                if "$ref" in schema:
                    schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
                for name, field in schema["properties"].items():
                    options = field.get("anyOf", [field])
                    assert all(o.get("type") != "null" for o in options), name
                    if name in schema.get("required", ()) and field.get("type") == "string":
                        assert field.get("minLength", 0) >= 1, name
                forms += 1
    assert forms >= 1


async def test_an_empty_form_member_is_refused_as_the_document_says(tmp_path: Path) -> None:
    async with serving(embedded_settings(tmp_path), "embedded") as api:
        r = await api.client.post("/v1/auth/token", data={"username": "", "password": "x"})
        assert r.status_code == 422
        assert r.json()["code"] == "invalid_request"
        login = api.app.openapi()["components"]["schemas"]["LoginForm"]
        assert login["properties"]["username"]["minLength"] == 1


async def test_a_refused_path_parameter_is_a_documented_422(tmp_path: Path) -> None:
    """Path ids are checked text (gateway.text.PathId): their 422 is declared like a body's."""
    async with serving(embedded_settings(tmp_path), "embedded") as api:
        account = await api.register()
        doc = api.app.openapi()
        for template in ("/v1/api-keys/{key_id}", "/v1/attestation-keys/{kid}"):
            url = template.split("{", 1)[0] + "k" * 200
            r = await api.client.delete(url, headers=account.auth)
            assert r.status_code == 422, (url, r.text)
            assert r.json()["code"] == "invalid_request"
            assert "invalid_request" in codes(doc["paths"][template]["delete"]["responses"]["422"])
