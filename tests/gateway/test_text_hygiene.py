"""Text hygiene at the schema layer, and VINs that are not ASCII.

1. Every free-text field of every request model (JSON bodies, the VIN endpoints' own bodies,
   the login form, the catalogue server's bodies) refuses control and invisible characters and
   over-long input. The models are discovered from the apps' routes, so a new field or a new
   endpoint is walked too; a ``str`` field without a ``gateway.text`` rule fails the walk.
2. Through the API, on SQLite and on PostgreSQL: bad text is ``422 invalid_request`` naming the
   field (never the value), not a 500, and nothing is stored or changed.
3. A VIN that only Unicode case mapping makes valid (U+017F long s) is ``422 invalid_vin`` with
   its position, a suspicious-usage signal and a search-log row like every invalid VIN.
"""

from __future__ import annotations

import json
import secrets
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from annotated_types import MaxLen, MinLen
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from pydantic import AfterValidator, AwareDatetime, BaseModel, EmailStr, ValidationError

import vin as vinlib
from gateway import text
from gateway.catalogue.server import create_catalogue_app
from gateway.main import create_app
from gateway.openapi import api_routes, route_body
from tests.gateway.conftest import PASSWORD, Api, embedded_settings
from tests.gateway.test_accounts import problem
from tests.gateway.test_limits import until_blocked

# --- 1. the walk over every request model ----------------------------------------------------

#: The ceiling a field's own maximum length must stay under.
SANE_MAX = 4096
CONTROLS = ["\x00", "\x01", "\x08", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]
INVISIBLES = [
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\u202e",  # right-to-left override
    "\u202a",  # left-to-right embedding
    "\u2066",  # left-to-right isolate
    "\u200f",  # right-to-left mark
    "\u061c",  # Arabic letter mark
    "\u200b",  # zero-width space
    "\ufeff",  # byte order mark
    "\U000e0041",  # tag letter A
]
#: Text that must get through every Line and Text field: other scripts, an ideographic space,
#: an emoji sequence with a zero-width joiner.
GOOD = "Garage Müller 汽车\u3000维修 👩\u200d🔧 ООО"


@dataclass(frozen=True)
class TextField:
    model: type[BaseModel]
    loc: tuple[str | int, ...]  # where an error about it is reported
    metadata: tuple[Any, ...]
    email: bool

    @property
    def name(self) -> str:
        return f"{self.model.__name__}.{'.'.join(map(str, self.loc))}"

    @property
    def rule(self) -> text.Rule | None:
        for m in self.metadata:
            if isinstance(m, text.Kind):
                return m.rule
            if isinstance(m, AfterValidator) and isinstance(m.func, text.Rule):
                return m.func
        return None

    @property
    def max_length(self) -> int | None:
        found = [m.max_length for m in self.metadata if isinstance(m, text.Kind | MaxLen)]
        return min(found) if found else None

    @property
    def min_length(self) -> int:
        found = [m.min_length for m in self.metadata if isinstance(m, text.Kind | MinLen)]
        return max(found, default=0)

    def payload(self, value: str) -> dict[str, Any]:
        name = self.loc[0]
        return {name: [value]} if len(self.loc) > 1 else {name: value}

    def errors(self, value: str) -> list[str]:
        """The error codes the model gives this field for ``value`` (other fields' errors,
        such as missing ones, are not looked at)."""
        return _errors(self.model, self.loc, self.payload(value))

    def sample(self, inner: str) -> str:
        """``inner`` in an otherwise acceptable value of this field."""
        if self.email:
            return "ga" + inner + "rage@example.com"
        assert self.max_length is not None
        room = self.max_length - len(inner)
        value = ("ab" + inner + "cd") if room >= 4 else inner
        return value + "x" * max(0, self.min_length - len(value))


def _errors(
    model: type[BaseModel], loc: tuple[str | int, ...], payload: dict[Any, Any]
) -> list[str]:
    """The error codes the real model gives the field at ``loc`` for this payload."""
    try:
        model.model_validate(payload)
    except ValidationError as exc:
        return [e["type"] for e in exc.errors() if tuple(e["loc"]) == loc]
    return []


@dataclass(frozen=True)
class IdField:
    """A str field holding an id in a fixed ASCII form (its ``pattern``), not free text."""

    model: type[BaseModel]
    loc: tuple[str | int, ...]

    @property
    def name(self) -> str:
        return f"{self.model.__name__}.{'.'.join(map(str, self.loc))}"

    def errors(self, value: str) -> list[str]:
        name = self.loc[0]
        payload = {name: [value]} if len(self.loc) > 1 else {name: value}
        return _errors(self.model, self.loc, payload)


def _fields(
    model: type[BaseModel], name: str, annotation: Any, metadata: tuple[Any, ...], item: bool
) -> Iterator[TextField | IdField | type[BaseModel]]:
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        yield from _fields(model, name, base, (*metadata, *extra), item)
    elif origin in (Union, types.UnionType):
        for arm in get_args(annotation):
            if arm is not type(None):
                yield from _fields(model, name, arm, metadata, item)
    elif origin is list:
        assert not item, f"{model.__name__}.{name}: a list of lists (walk it too)"
        (inner,) = get_args(annotation)
        yield from _fields(model, name, inner, (), True)  # the list's own limits are not the item's
    elif origin is Literal or annotation in (int, float, bool) or origin is dict:
        return  # not free text (a dict is a JWK, checked member by member by its parser)
    elif annotation in (datetime, AwareDatetime):
        return  # parsed as RFC 3339 by pydantic: any other character is a type error
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    elif annotation is str and _id_pattern(metadata) is not None:
        # an id in a fixed ASCII format (a grant id): no text rule, its pattern must refuse
        # what the text rules would (test_every_id_field_refuses_anything_around_an_id)
        yield IdField(model, (name, 0) if item else (name,))
    elif annotation is str or annotation is EmailStr:
        loc = (name, 0) if item else (name,)
        yield TextField(model, loc, metadata, email=annotation is EmailStr)
    else:
        raise AssertionError(f"{model.__name__}.{name}: {annotation!r}: is it free text? walk it")


def _id_pattern(metadata: tuple[Any, ...]) -> str | None:
    """The ``pattern`` constraint among a field's metadata (FieldInfo items included), if any."""
    for item in metadata:
        inner = getattr(item, "metadata", None)
        found = _id_pattern(tuple(inner)) if isinstance(inner, list) else None
        found = found or getattr(item, "pattern", None)
        if isinstance(found, str):
            return found
    return None


def text_fields(
    models: set[type[BaseModel]],
) -> tuple[list[TextField], list[IdField], set[type[BaseModel]]]:
    """Every str field of these models and of the models they nest (recursively): the free-text
    ones, the id ones, and all those models."""
    found: list[TextField] = []
    ids: list[IdField] = []
    todo: list[type[BaseModel]] = list(models)
    seen: set[type[BaseModel]] = set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            for f in _fields(model, name, info.annotation, tuple(info.metadata), False):
                if isinstance(f, TextField):
                    found.append(f)
                elif isinstance(f, IdField):
                    ids.append(f)
                else:
                    todo.append(f)
    return found, ids, seen


def params(dependant: Dependant, kind: str) -> Iterator[Any]:
    """The route's ``body_params`` or ``query_params``, its dependencies' included."""
    yield from getattr(dependant, kind)
    for sub in dependant.dependencies:
        yield from params(sub, kind)


def request_models(app: FastAPI) -> set[type[BaseModel]]:
    """The body and form models of every route: what FastAPI validates, and what the VIN
    endpoints validate themselves (``declares(body=...)``)."""
    models: set[type[BaseModel]] = set()
    for route in api_routes(app):
        declared = route_body(route)
        if declared is not None:
            models.add(declared)
        for param in params(route.dependant, "body_params"):
            annotation = param.field_info.annotation
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), (
                f"{route.path}: body or form parameter {param.name} is not a model: make it one"
            )
            models.add(annotation)
        for param in params(route.dependant, "query_params"):
            assert param.field_info.annotation in (int, bool), (
                f"{route.path}: query parameter {param.name}: walk it if it is text"
            )
    return models


def request_body_schemas(app: FastAPI) -> set[str]:
    """The schema names of every requestBody in the app's OpenAPI document."""
    names = set()
    for operations in app.openapi()["paths"].values():
        for operation in operations.values():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                names.add(content["schema"]["$ref"].rsplit("/", 1)[1])
    return names


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> list[FastAPI]:
    return [create_app(embedded_settings(tmp_path_factory.mktemp("walk"))), create_catalogue_app()]


@pytest.fixture(scope="module")
def walk(apps: list[FastAPI]) -> tuple[list[TextField], list[IdField]]:
    models: set[type[BaseModel]] = set()
    for app in apps:
        found = request_models(app)
        # the document and the walk agree: no request body the walk does not see
        assert request_body_schemas(app) <= {m.__name__ for m in found}
        models |= found
    fields, ids, every_model = text_fields(models)
    names = {m.__name__ for m in every_model}
    assert {
        "AccountCreate", "AccountUpdate", "LoginForm", "ConsentAccept", "ApiKeyCreate",
        "AttestationKeyCreate", "DecodeRequest", "LookupRequest", "AttestationRequest",
        "OwnerAuthorizationIn", "Reason", "MatchRequest", "Features", "PartsRequest",
    } <= names  # fmt: skip
    return fields, ids


@pytest.fixture(scope="module")
def walked(walk: tuple[list[TextField], list[IdField]]) -> list[TextField]:
    return walk[0]


def test_every_text_field_has_a_rule_and_a_sane_maximum(walked: list[TextField]) -> None:
    assert len(walked) >= 30
    without_rule = [f.name for f in walked if f.rule is None]
    assert without_rule == [], "use a gateway.text rule (Line, Text, Secret) for these"
    unbounded = [f.name for f in walked if f.max_length is None or f.max_length > SANE_MAX]
    assert unbounded == []
    too_long = [f.name for f in walked if not f.errors("a" * (f.max_length or SANE_MAX) + "a")]
    assert too_long == [], "over-long input accepted"


def _expected(f: TextField, code: str) -> set[str]:
    # an email is refused by its validator before the text rule runs: any error will do
    return {"value_error"} if f.email else {code}


def test_every_text_field_refuses_control_characters(walked: list[TextField]) -> None:
    checked = 0
    for f in walked:
        if f.rule is text.VIN:
            # the VIN's characters are vin.normalize's: refused there, as invalid_vin
            with pytest.raises(vinlib.InvalidCharacterError):
                vinlib.normalize(f.sample("\x00"))
            continue
        breaks = ["\r"] if f.rule is text.TEXT else ["\t", "\n", "\r"]
        for char in CONTROLS + breaks:
            got = set(f.errors(f.sample(char)))
            assert got and got <= _expected(f, text.CONTROL), (f.name, hex(ord(char)), got)
            checked += 1
    assert checked > 300


def test_every_line_and_text_field_refuses_invisible_characters(walked: list[TextField]) -> None:
    for f in walked:
        if f.rule not in (text.LINE, text.TEXT):
            continue
        for char in INVISIBLES:
            got = set(f.errors(f.sample(char)))
            assert got and got <= _expected(f, text.INVISIBLE), (f.name, hex(ord(char)), got)
        good = GOOD[: f.max_length]
        good = "garage@example.com" if f.email else good + "x" * max(0, f.min_length - len(good))
        assert f.errors(good) == [], f.name


#: A valid value of every id field's form (a grant id is the only one today).
ID_SAMPLE = "grt_a"


def test_every_id_field_refuses_anything_around_an_id(
    walk: tuple[list[TextField], list[IdField]],
) -> None:
    """The real model, not the pattern alone: pydantic's ``pattern`` is a search, so an
    unanchored one lets any text through around a valid id."""
    ids = walk[1]
    assert "AttestationRequest.grant_id" in {f.name for f in ids}
    for f in ids:
        assert f.errors(ID_SAMPLE) == [], f"{f.name} refuses {ID_SAMPLE!r}: sample its form"
        around = (*CONTROLS, *INVISIBLES, "\t", "\n", "\r", " ", "!")
        values = [v for c in around for v in (ID_SAMPLE + c, c + ID_SAMPLE)]
        values += ["zzz grt_abc !!", "x" + ID_SAMPLE, ID_SAMPLE + "\n\n"]
        accepted = [v for v in values if "string_pattern_mismatch" not in f.errors(v)]
        assert accepted == [], f"{f.name} accepts {accepted!r}"


def test_every_pattern_in_the_openapi_documents_is_anchored(apps: list[FastAPI]) -> None:
    """A JSON Schema ``pattern`` is a search too: a client validating against the document
    must refuse what the gateway refuses."""

    def patterns(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and isinstance(value, str):
                    yield value
                else:
                    yield from patterns(value)
        elif isinstance(node, list):
            for value in node:
                yield from patterns(value)

    found = [p for app in apps for p in patterns(app.openapi())]
    assert found, "no pattern in the documents: is the grant id still constrained?"
    assert [p for p in found if not (p.startswith("^") and p.endswith("$"))] == []


def test_text_rules_keep_what_they_accept() -> None:
    from gateway.accounts.models import AccountCreate, LoginForm

    body = AccountCreate.model_validate(
        {
            "email": " Garage@Example.COM ",
            "password": " a long passphrase \u202e42 ",
            "privacy_policy_version": "2024-06",
            "address": "Hauptstr. 1\r\n10115 Berlin\n\tHof",
        }
    )
    assert body.email == "garage@example.com"
    assert body.password == " a long passphrase \u202e42 "  # never trimmed, bidi allowed
    assert body.address == "Hauptstr. 1\n10115 Berlin\n\tHof"  # CR LF stored as LF
    form = LoginForm.model_validate({"username": "a@example.com", "password": " pw "})
    assert form.password == " pw "


# --- 2. through the API, on SQLite and PostgreSQL ----------------------------------------------


def fields_of(body: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in body["errors"]]


async def policy_version(api: Api) -> str:
    return (await api.client.get("/v1/privacy-policy")).json()["version"]


def echoes(r: Any, *values: str) -> bool:
    raw = r.text
    return any(v in raw or json.dumps(v)[1:-1] in raw for v in values)


async def test_nul_in_company_at_registration_is_422_and_stores_nothing(api: Api) -> None:
    email = f"nul{secrets.token_hex(4)}@workshop.example"
    r = await api.client.post(
        "/v1/accounts",
        json={
            "email": email,
            "password": PASSWORD,
            "privacy_policy_version": await policy_version(api),
            "company": "Garage\x00GmbH",
        },
    )
    body = problem(r, 422, "invalid_request")
    assert fields_of(body) == [("company", "control_character")]
    assert not echoes(r, "Garage", "\x00", email)
    # nothing was stored: the same email registers afterwards (not 409 email_taken)
    acct = await api.register(email=email, company="Garage GmbH")
    me = (await api.client.get("/v1/me", headers=acct.auth)).json()
    assert me["company"] == "Garage GmbH"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"company": "Evil\x00Corp"}, "control_character"),
        ({"company": "Evil\u202eproC"}, "invisible_character"),
        ({"address": "Hauptstr. 1\x00"}, "control_character"),
    ],
)
async def test_bad_text_in_patch_me_is_422_and_changes_nothing(
    api: Api, change: dict[str, str], code: str
) -> None:
    acct = await api.register(company="Garage GmbH", phone="+49 30 1234", address="Hof 2")
    before = (await api.client.get("/v1/me", headers=acct.auth)).json()
    r = await api.client.patch("/v1/me", json={"phone": "+49 30 9999", **change}, headers=acct.auth)
    body = problem(r, 422, "invalid_request")
    assert fields_of(body) == [(next(iter(change)), code)]
    assert not echoes(r, "Evil", "\x00", "Hauptstr")
    after = (await api.client.get("/v1/me", headers=acct.auth)).json()
    assert after == before  # the good change in the same body was not applied either


@pytest.mark.parametrize("name", ["ci\x00key", "ci\u202ekey", "ci\nkey"])
async def test_bad_api_key_name_is_422_and_creates_no_key(api: Api, name: str) -> None:
    acct = await api.register()
    r = await api.client.post("/v1/api-keys", json={"name": name}, headers=acct.auth)
    body = problem(r, 422, "invalid_request")
    assert [f for f, _ in fields_of(body)] == ["name"]
    assert not echoes(r, name)
    assert (await api.client.get("/v1/api-keys", headers=acct.auth)).json() == []


async def test_nul_in_the_login_form_is_422_not_500(api: Api) -> None:
    acct = await api.register()
    for form, field in [
        ({"username": acct.email[:3] + "\x00" + acct.email[3:], "password": PASSWORD}, "username"),
        ({"username": acct.email, "password": PASSWORD + "\x00"}, "password"),
    ]:
        r = await api.client.post("/v1/auth/token", data=form)
        body = problem(r, 422, "invalid_request")
        assert fields_of(body) == [(field, "control_character")]
        assert not echoes(r, acct.email, PASSWORD)
    assert await api.login(acct.email)  # the account is untouched


async def test_nul_in_an_admin_reason_is_422_and_suspends_nobody(api: Api) -> None:
    email = f"admin{secrets.token_hex(4)}@example.com"
    await api.state.accounts.create_admin(email, PASSWORD)
    admin = {"Authorization": f"Bearer {await api.login(email)}"}
    acct = await api.register()
    r = await api.client.post(
        f"/v1/admin/accounts/{acct.id}/suspend", json={"reason": "spam\x00bot"}, headers=admin
    )
    assert fields_of(problem(r, 422, "invalid_request")) == [("reason", "control_character")]
    assert (await api.client.get("/v1/me", headers=acct.auth)).json()["status"] == "active"
    r = await api.client.post(
        f"/v1/admin/accounts/{acct.id}/suspend",
        json={"reason": "ticket 42:\r\n\tspam from a bot"},
        headers=admin,
    )
    assert r.status_code == 200, r.text  # a multi-line reason is fine


async def test_nul_in_a_path_id_is_422_not_500(api: Api) -> None:
    """Path ids reach the database like body fields do (PostgreSQL refuses NUL with a 500)."""
    email = f"admin{secrets.token_hex(4)}@example.com"
    await api.state.accounts.create_admin(email, PASSWORD)
    admin = {"Authorization": f"Bearer {await api.login(email)}"}
    acct = await api.register()
    for method, path, headers, body in [
        ("DELETE", "/v1/api-keys/key%00x", acct.auth, None),
        ("DELETE", "/v1/attestation-keys/kid%00x", acct.auth, None),
        ("POST", f"/v1/admin/accounts/{acct.id}%00/suspend", admin, {"reason": "spam bot"}),
        ("POST", f"/v1/admin/accounts/{acct.id}%00/unblock", admin, {"reason": "spam bot"}),
        ("POST", f"/v1/admin/accounts/{acct.id}%00/disclosure", admin, {"reason": "order 1"}),
    ]:
        r = await api.client.request(method, path, headers=headers, json=body)
        problem(r, 422, "invalid_request")
        assert "\x00" not in r.text and "%00" not in r.text
    assert (await api.client.get("/v1/me", headers=acct.auth)).json()["status"] == "active"


# --- 3. a VIN that is only valid after Unicode case mapping ------------------------------------

VALID = "JH4DC4340RS003205"  # valid, with an S at position 11
LONG_S = VALID[:10] + "\u017f" + VALID[11:]  # "ſ".upper() == "S"


def _gone(r: Any) -> None:
    """Neither the VIN nor the character nor its code point in the answer."""
    assert not echoes(r, VALID, VALID[:10], "\u017f", "U+017F", "u017f")


async def test_a_long_s_vin_is_invalid_vin_on_every_vin_endpoint(api: Api) -> None:
    acct = await api.workshop()
    # the test signer hashes str.upper() of the VIN: the digest of the valid VIN, as a client
    # that case-maps would send it
    answers = [
        await api.lookup(acct, LONG_S),
        await api.client.post(
            "/v1/vins/decode", json={"vin": LONG_S}, headers=api.attest(acct, LONG_S)
        ),
        await api.client.post(
            "/v1/attestations",
            json={"vin": LONG_S, "basis": "owner", "purpose": "parts_inquiry"},
            headers=acct.auth,
        ),
    ]
    for r in answers:
        body = problem(r, 422, "invalid_vin")
        assert [(e["code"], e["position"]) for e in body["errors"]] == [("invalid_character", 11)]
        _gone(r)


async def test_a_long_s_vin_reaches_the_limiter_and_the_search_log(api: Api) -> None:
    acct = await api.workshop()
    bad_check_digit = VALID[:8] + "1" + VALID[9:]  # its check digit is 0
    ordinary = await api.lookup(acct, bad_check_digit)
    assert problem(ordinary, 422, "invalid_vin")["errors"][0]["code"] == "check_digit_mismatch"
    problem(await api.lookup(acct, LONG_S), 422, "invalid_vin")
    rows = (await api.client.get("/v1/me/export", headers=acct.auth)).json()["search_log"]
    seen = [(row["endpoint"], row["outcome"], row["code"]) for row in rows]
    assert seen == [("lookup", "refused", "invalid_vin")] * 2  # logged like the ordinary one
    # and counted like it: a guesser sending it is blocked by the guessing policy
    sent, body = await until_blocked(api, acct, [LONG_S] * 40)
    assert sent <= 30
    assert body["code"] == "suspicious_usage_blocked" and body["policy"] == "guessing"
