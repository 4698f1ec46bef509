"""The fuzz targets: one function per target, each taking the raw bytes of one input.

The atheris harnesses (``tests/fuzz/fuzz_*.py``, run by ``scripts/fuzz``) and the corpus replay
(``tests/fuzz/test_corpus.py``, plain pytest, no atheris) call the same functions, so a crash
once found and added to ``tests/fuzz/corpus/<target>/`` stays a failing test until it is fixed.

A target returns normally for every input the code under test handles as documented: a result,
or one of its documented exceptions. Anything else escapes: an undocumented exception, or an
``AssertionError`` for a broken documented property (see docs/fuzzing.md for the list).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import vin
from gateway.config import Settings
from gateway.security import jws
from gateway.security.attestation import BASES, PURPOSES, TYP, AttestationVerifier, vin_digest
from gateway.security.exceptions import AttestationError
from gateway.security.tokens import AccessClaims, AccessTokens
from tests.testdata import ATTESTATION_VECTORS, load_json

# --- shared ---------------------------------------------------------------------------------

#: A strict, canonical base64url segment: what docs/attestation.md says a token is made of.
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def canonical_segment(segment: str) -> bool:
    """True for unpadded base64url whose unused trailing bits are zero (one text per value)."""
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        return False
    return jws.b64url_encode(jws.b64url_decode(segment)) == segment


def documented_form(token: str) -> bool:
    """Three canonical base64url segments (the accepted form of a compact JWS here)."""
    parts = token.split(".")
    return len(parts) == 3 and all(canonical_segment(part) for part in parts)


def _settled(coro: Coroutine[Any, Any, Any]) -> Any:
    """The result of a coroutine that never suspends (the resolvers below answer at once)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the verifier suspended on an in-process key resolver")


# --- vin --------------------------------------------------------------------------------------

#: A fixed reference date: the model-year candidates do not move with the calendar.
VIN_REFERENCE_DATE = date(2026, 1, 1)
_VIN_ALPHABET = frozenset("0123456789ABCDEFGHJKLMNPRSTUVWXYZ")
_CHECK_DIGITS = frozenset("0123456789X")


def vin_target(data: bytes) -> None:
    """``vin.decode`` / ``parse`` / ``normalize`` / ``check_digit`` on the input as text (UTF-8,
    undecodable bytes as lone surrogates), and ``decode`` on the bytes themselves."""
    text = data.decode("utf-8", "surrogateescape")
    decoded = vin.decode(text, reference_date=VIN_REFERENCE_DATE)  # documented: never raises
    _check_decoded(decoded)

    try:
        parsed = vin.parse(text, reference_date=VIN_REFERENCE_DATE)
    except vin.VINError as exc:
        assert not decoded.valid, "parse() raised for a VIN decode() calls valid"
        assert exc.code in vin.ERROR_CLASSES, f"undocumented VINError code {exc.code!r}"
        assert exc.errors == decoded.errors, "parse() and decode() disagree on the problems"
        _assert_private(decoded.vin, str(exc))
    else:
        assert decoded.valid, "parse() accepted a VIN decode() calls invalid"
        assert parsed == decoded

    try:
        normalized = vin.normalize(text)
    except vin.VINError as exc:  # documented (normalize may refuse some text)
        _assert_private(text.strip(), str(exc))
    else:
        assert isinstance(normalized, str)

    try:
        digit = vin.check_digit(text)
    except vin.VINError as exc:
        assert exc.code in vin.ERROR_CLASSES, f"undocumented VINError code {exc.code!r}"
        _assert_private(decoded.vin, str(exc))
    else:
        assert digit in _CHECK_DIGITS, "check_digit() returned something that is not a digit/X"
        if len(decoded.vin) == 17 and decoded.check_digit.expected is not None:
            assert digit == decoded.check_digit.expected

    assert vin.decode(text).valid == decoded.valid  # today's year table: the same verdict
    not_text = vin.decode(data, reference_date=VIN_REFERENCE_DATE)  # whatever the input is
    assert not not_text.valid and "not_text" in not_text.notes


def _check_decoded(decoded: vin.DecodedVIN) -> None:
    """The documented shape of a decoded VIN (docs/vin-library.md)."""
    assert isinstance(decoded.vin, str)
    assert decoded.valid == (not decoded.errors), "valid is not 'no problems'"
    for problem in decoded.errors:
        assert problem.code in vin.ERROR_CLASSES, f"undocumented problem code {problem.code!r}"
        assert problem.position is None or 1 <= problem.position <= len(decoded.vin)
        _assert_private(decoded.vin, problem.message)
    if decoded.valid:
        assert len(decoded.vin) == 17, "a valid VIN has 17 characters"
        assert set(decoded.vin) <= _VIN_ALPHABET, "a valid VIN holds only the VIN alphabet"
    if decoded.model_year is not None:
        assert decoded.model_year == decoded.model_year_candidates[0]
        assert 1980 <= decoded.model_year <= VIN_REFERENCE_DATE.year + 1
    assert set(decoded.notes) <= vin.NOTES.keys(), "an undocumented note"
    json.dumps(decoded.to_dict())  # the API's vehicle object is JSON


def _assert_private(text: str, message: str) -> None:
    """No message quotes the VIN: one offending character at most (vin/errors.py).

    Only text of a VIN's length or more is checked: a shorter one can be a word of a message.
    """
    if len(text) >= 17:
        assert text not in message, "a message contains the VIN"


# --- keys and tokens shared by the jws and attestation targets ----------------------------

VECTORS: dict[str, Any] = load_json(ATTESTATION_VECTORS)
ACCOUNT = "acct_7Qm2Xv9LpA"  # the vectors' account, owner of their two keys
OTHER_ACCOUNT = "acct_someone_else"
NOW = 1800000000  # the vectors' verify_at
BODY_VIN = "WVWZZZ1JZXW000001"  # the vectors' body VIN
GATEWAY_KID = "gw-att-1"  # gateway.state.GATEWAY_ATTESTATION_KID (not imported: the whole app)
FUZZ_EC_KID = "k-fuzz-ec"
OTHER_KID = "k-other-account"

_DEFAULTS = Settings.model_fields  # the defaults, whatever VINGW_* the shell has
ISSUER: str = _DEFAULTS["issuer"].default
#: A fixed, public HS256 test secret for the in-process gateway key (not a real key).
GATEWAY_SECRET = hashlib.sha256(b"vin-gateway fuzz: public test secret").digest()
#: A fixed EC P-256 key derived from a public constant, so signed corpus entries replay alike.
FUZZ_EC_PRIVATE = ec.derive_private_key(
    int.from_bytes(hashlib.sha256(b"vin-gateway fuzz: public test key").digest(), "big"),
    ec.SECP256R1(),
)


def _ec_public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": jws.b64url_encode(numbers.x.to_bytes(32, "big")),
        "y": jws.b64url_encode(numbers.y.to_bytes(32, "big")),
    }


def _key_set() -> dict[str, jws.BoundKey]:
    keys = {
        k["kid"]: jws.public_key_from_jwk(k["kid"], k["jwk"], owner=k["account_id"])
        for k in VECTORS["registered_keys"]
    }
    keys[FUZZ_EC_KID] = jws.public_key_from_jwk(
        FUZZ_EC_KID, _ec_public_jwk(FUZZ_EC_PRIVATE), owner=ACCOUNT
    )
    rsa = next(k["jwk"] for k in VECTORS["registered_keys"] if k["jwk"]["kty"] == "RSA")
    keys[OTHER_KID] = jws.public_key_from_jwk(OTHER_KID, rsa, owner=OTHER_ACCOUNT)
    keys[GATEWAY_KID] = jws.hmac_key(GATEWAY_KID, GATEWAY_SECRET, owner=ISSUER)
    return keys


KEYS = _key_set()


def _signed(header: bytes, payload: bytes, kid: str) -> str:
    """A compact JWS over exactly these header and payload bytes, signed with ``kid``'s key
    (the gateway's HMAC key or the fuzz EC key), without python-jose."""
    signing_input = (jws.b64url_encode(header) + "." + jws.b64url_encode(payload)).encode()
    if kid == GATEWAY_KID:
        signature = hmac.digest(GATEWAY_SECRET, signing_input, "sha256")
    else:
        der = FUZZ_EC_PRIVATE.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input.decode() + "." + jws.b64url_encode(signature)


def _header(kid: str, alg: str) -> bytes:
    return orjson.dumps({"alg": alg, "kid": kid, "typ": TYP})


# --- jws ---------------------------------------------------------------------------------------

#: The first byte of a jws input selects what the rest is (anything else: a token as-is).
JWS_JWK_JSON = 0x01  # the rest is a JWK as JSON text (the body of POST /v1/attestation-keys)
JWS_JWK_PARTS = 0x02  # the rest is a JWK built from raw member bytes (see _jwk_from_parts)

_ACCESS = AccessTokens(
    jws.hmac_key("fuzz-at", GATEWAY_SECRET, owner=ISSUER),
    issuer=ISSUER,
    audience=_DEFAULTS["audience"].default,
    ttl_s=_DEFAULTS["access_token_ttl_s"].default,
)


def jws_target(data: bytes) -> None:
    """The compact-JWS splitter and python-jose verification (a token, as the gateway reads a
    header: latin-1), or the JWK loading of key registration."""
    if data[:1] == bytes([JWS_JWK_JSON]):
        try:
            jwk_data = orjson.loads(data[1:])
        except orjson.JSONDecodeError:
            return
        _jwk(jwk_data)
        return
    if data[:1] == bytes([JWS_JWK_PARTS]):
        _jwk(_jwk_from_parts(data[1:]))
        return
    token = data.decode("latin-1")

    kid = jws.peek_kid(token)  # documented: never raises
    assert kid is None or (isinstance(kid, str) and kid)

    try:
        value = jws.b64url_decode(token)
    except jws.JWSFormatError:
        pass
    else:
        assert jws.b64url_encode(value) == token, "a non-canonical base64url text was decoded"

    try:
        header, payload = jws.split_compact(token)
    except jws.JWSFormatError:
        header = None
    else:
        assert isinstance(header, dict) and isinstance(payload, bytes)
        named = header.get("kid")
        assert kid == (named if isinstance(named, str) and named else None), "peek_kid disagrees"

    for key in (KEYS["k-ec-1"], KEYS["k-rsa-1"], KEYS[GATEWAY_KID]):
        try:
            jws.verify(token, key)
        except jws.BadSignature:
            continue
        # python-jose accepted it: the gateway's own view must agree, in the documented form
        assert header is not None, "jose verified a token split_compact refuses"
        assert header.get("alg") == key.alg, "jose verified under another algorithm"
        assert documented_form(token), "a signature verified on a token not in canonical form"

    claims = _ACCESS.verify(token, now=NOW)  # documented: never raises on bad input
    assert claims is None or isinstance(claims, AccessClaims)


def _jwk(jwk_data: Any) -> None:
    """What key registration does with a JWK (gateway/accounts/service.py)."""
    if not isinstance(jwk_data, dict):
        try:
            jws.algorithm_for_jwk(jwk_data)
        except jws.UnsupportedKey:
            return
        raise AssertionError("a JWK that is not an object was accepted")
    try:
        bound = jws.public_key_from_jwk("k-fuzz", jwk_data, owner=ACCOUNT)
    except jws.UnsupportedKey:
        return
    assert bound.alg in jws.CLIENT_ALGORITHMS
    assert bound.alg == jws.algorithm_for_jwk(jwk_data)
    public = {k: jwk_data[k] for k in ("kty", "crv", "x", "y", "n", "e") if k in jwk_data}
    thumbprint = jws.jwk_thumbprint(public)
    assert canonical_segment(thumbprint) and len(thumbprint) == 43


_KTYS = ("EC", "RSA", "oct", "OKP")


def _jwk_from_parts(data: bytes) -> dict[str, Any]:
    """A JWK from bytes: [kty selector][crv byte] then members as [length byte][raw bytes],
    base64url-encoded: EC x, y or RSA n, e (so mutations reach the key material itself)."""
    if len(data) < 2:
        return {}
    kty = _KTYS[data[0] % len(_KTYS)]
    jwk: dict[str, Any] = {"kty": kty}
    if kty == "EC":
        jwk["crv"] = "P-256" if data[1] % 2 == 0 else "P-384"
    rest = data[2:]
    members = ("x", "y") if kty == "EC" else ("n", "e") if kty == "RSA" else ("k",)
    for name in members:
        size, rest = (rest[0], rest[1:]) if rest else (0, rest)
        jwk[name], rest = jws.b64url_encode(rest[:size]), rest[size:]
    return jwk


# --- attestation ---------------------------------------------------------------------------

#: The first byte of an attestation input selects a signed mode; anything else: the input is
#: the VIN-Attestation header value as-is (decoded latin-1, as the gateway reads headers).
ATT_SIGNED_GATEWAY = 0x01  # the rest is the payload, signed by the gateway's HS256 key
ATT_SIGNED_CLIENT = 0x02  # the rest is the payload, signed by the account's ES256 key
ATT_SIGNED_HEADER = 0x03  # the rest is header bytes, NUL, payload bytes; gateway key
ATT_SIGNED_MODES = (ATT_SIGNED_GATEWAY, ATT_SIGNED_CLIENT, ATT_SIGNED_HEADER)

VERIFIER = AttestationVerifier(
    resolve_key=lambda kid: _resolved(KEYS.get(kid)),
    issuer=ISSUER,
    audience=VECTORS["audience"],
    max_lifetime_s=VECTORS["max_lifetime_s"],
    future_iat_leeway_s=VECTORS["future_iat_leeway_s"],
    exp_leeway_s=_DEFAULTS["attestation_exp_leeway_s"].default,
)


async def _resolved(key: jws.BoundKey | None) -> jws.BoundKey | None:
    return key


def attestation_token(data: bytes) -> str:
    """The VIN-Attestation header value an input stands for."""
    mode = data[:1]
    if mode == bytes([ATT_SIGNED_GATEWAY]):
        return _signed(_header(GATEWAY_KID, "HS256"), data[1:], GATEWAY_KID)
    if mode == bytes([ATT_SIGNED_CLIENT]):
        return _signed(_header(FUZZ_EC_KID, "ES256"), data[1:], FUZZ_EC_KID)
    if mode == bytes([ATT_SIGNED_HEADER]):
        header, _, payload = data[1:].partition(b"\x00")
        return _signed(header, payload, GATEWAY_KID)
    return data.decode("latin-1")


def attestation_target(data: bytes) -> None:
    """The verifier, as the request path calls it (gateway/lookups/service.py): ``peek_kid``,
    then ``check`` with the key resolved for that kid (a raw header), or with the verifier
    resolving the key itself (the signed modes); only AttestationError subclasses."""
    token = attestation_token(data)
    kid = jws.peek_kid(token)  # documented: never raises
    raw = data[:1] not in (bytes([m]) for m in ATT_SIGNED_MODES)
    resolved = (kid, KEYS.get(kid)) if kid is not None and raw else None
    try:
        attestation = _settled(
            VERIFIER.check(
                token, account_id=ACCOUNT, normalized_vin=BODY_VIN, now=NOW, resolved=resolved
            )
        )
    except AttestationError as exc:
        assert type(exc) is not AttestationError, "the base refusal is never raised itself"
        assert exc.status == 403
        if len(token) >= 16:
            assert token not in exc.detail, "a refusal echoes the token"
        assert BODY_VIN not in exc.detail, "a refusal echoes the VIN"
        return
    _check_accepted(token, attestation)


def _check_accepted(token: str, attestation: Any) -> None:
    """What an accepted attestation must be (docs/attestation.md)."""
    assert documented_form(token), "an accepted token is not three canonical base64url segments"
    header, payload = jws.split_compact(token)
    claims = orjson.loads(payload)
    key = KEYS[attestation.kid]
    assert header["typ"] == TYP and header["alg"] == key.alg and "crit" not in header
    assert attestation.gateway_issued == (key.owner == ISSUER)
    assert claims["sub"] == ACCOUNT
    assert claims["iss"] == (ISSUER if attestation.gateway_issued else key.owner)
    assert 0 < attestation.exp - attestation.iat <= VERIFIER.max_lifetime_s
    assert attestation.iat <= NOW + VERIFIER.future_iat_leeway_s
    assert attestation.exp + VERIFIER.exp_leeway_s > NOW
    assert claims["vin_sha256"] == vin_digest(BODY_VIN)
    assert attestation.basis in BASES and attestation.purpose in PURPOSES
    assert 16 <= len(attestation.jti) <= 128
    if attestation.basis == "owner_authorized":
        assert attestation.owner_ref and attestation.owner_valid_until is not None
        assert attestation.owner_valid_until >= NOW
    assert attestation.token_sha256 == hashlib.sha256(token.encode()).hexdigest()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "vin": vin_target,
    "jws": jws_target,
    "attestation": attestation_target,
}
