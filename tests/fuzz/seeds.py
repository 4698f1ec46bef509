"""Writes the hand-made seeds of the fuzz corpus: ``tests/fuzz/corpus/<target>/seed-*``.

    .venv/bin/python tests/fuzz/seeds.py

Seeds are valid and invalid inputs taken from the test data (tests/data: public VINs, the
published attestation vectors) plus edge cases. Files that do not start with ``seed-`` (crash
reproducers, entries merged in by ``scripts/fuzz --merge``) are left alone. The output is the
same on every run (no randomness, no clock), so rerunning it changes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.security.attestation import vin_digest
from gateway.security.tokens import ACCESS_TOKEN_TYP
from tests.fuzz import targets as t
from tests.testdata import VINS_DEV, load_json

CORPUS = Path(__file__).resolve().parent / "corpus"


def vin_seeds() -> dict[str, bytes]:
    vins = [entry["vin"] for entry in load_json(VINS_DEV)["vins"]]
    seeds = {f"valid-{i:02d}": v.encode() for i, v in enumerate(vins[:12])}
    na = "1FTMW1T88MFA00001"
    seeds |= {
        "lowercase": na.lower().encode(),
        "surrounding-whitespace": f" \t{na}\n".encode(),
        "inner-space": (na[:8] + " " + na[9:]).encode(),
        "length-16": na[:16].encode(),
        "length-18": (na + "1").encode(),
        "empty": b"",
        "blanks-17": b" " * 17,
        "letters-ioq": b"1FTMW1T88MFAIOQ01",
        "check-digit-mismatch": (na[:8] + "7" + na[9:]).encode(),
        "model-year-u": (na[:9] + "U" + na[10:]).encode(),
        "model-year-zero-cn": b"LFWADRJF001002346",
        "small-manufacturer": b"YT9NN1U14KA007175",
        "filler-vds": b"WVWZZZ1KZ6W612305",
        "long-s": na.replace("S", "\u017f").replace("F", "\u017f", 1).encode(),
        "sharp-s-16": (na[:15] + "\u00df").encode(),
        "ligature-ff": (na[:15] + "\ufb00").encode(),
        "fullwidth": "".join(chr(ord(c) + 0xFEE0) for c in na).encode(),
        "dotless-i": (na[:16] + "\u0131").encode(),
        "dotted-capital-i": (na[:16] + "\u0130").encode(),
        "combining-mark": (na[:16] + "A\u0301").encode(),
        "nul": (na[:8] + "\x00" + na[9:]).encode(),
        "invalid-utf8": na[:16].encode() + b"\xff",
        "emoji": (na[:16] + "\U0001f697").encode(),
        "bidi-override": ("\u202e" + na).encode(),
        "nbsp-around": ("\u00a0" + na + "\u3000").encode(),
    }
    return seeds


def _token(header: dict[str, Any], claims: dict[str, Any], kid: str) -> str:
    return t._signed(orjson.dumps(header), orjson.dumps(claims), kid)


def _claims(**changes: Any) -> dict[str, Any]:
    """Good claims of a gateway-issued attestation at the targets' clock, with changes
    (a value of None drops the claim)."""
    claims: dict[str, Any] = {
        "iss": t.ISSUER,
        "sub": t.ACCOUNT,
        "aud": t.VECTORS["audience"],
        "iat": t.NOW - 10,
        "exp": t.NOW + 200,
        "vin_sha256": vin_digest(t.BODY_VIN),
        "basis": "owner",
        "purpose": "parts_inquiry",
        "jti": "fuzz-seed-jti-0001-abcdefgh",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


AUTHORIZED = {
    "basis": "owner_authorized",
    "purpose": "maintenance",
    "owner_authorization": {"ref": "WO-1", "valid_until": t.NOW + 86400, "scope": ["maintenance"]},
}


def jws_seeds() -> dict[str, bytes]:
    cases = {c["name"]: c["token"] for c in t.VECTORS["cases"]}
    seeds = {
        f"vector-{name}": cases[name].encode()
        for name in (
            "ok_owner_es256",
            "ok_owner_rs256",
            "alg_none",
            "alg_hs256_with_public_key_as_secret",
            "wrong_typ",
            "unknown_crit_header",
            "malformed_two_segments",
            "malformed_garbage",
        )
    }
    good = cases["ok_owner_es256"]
    header = t._header(t.GATEWAY_KID, "HS256")
    access = t._ACCESS
    at_header = {"alg": "HS256", "kid": access.key.kid, "typ": ACCESS_TOKEN_TYP}
    at_claims = {
        "iss": t.ISSUER,
        "sub": t.ACCOUNT,
        "aud": access.audience,
        "iat": t.NOW,
        "exp": t.NOW + 900,
        "jti": "seed-at-jti",
    }
    seeds |= {
        "gateway-hs256": _token(orjson.loads(header), _claims(), t.GATEWAY_KID).encode(),
        "access-token": t._signed(
            orjson.dumps(at_header), orjson.dumps(at_claims), t.GATEWAY_KID
        ).encode(),
        "padded-signature": (good + "==").encode(),
        "respelled-signature": (good[:-1] + chr(ord(good[-1]) + 1)).encode(),
        "junk-in-signature": (good[:-20] + "!!!" + good[-20:]).encode(),
        "four-segments": (good + ".AAAA").encode(),
        "empty": b"",
        "dots": b"..",
        "header-array": b"W10.e30.AAAA",
        "header-padding": b"e30=.e30.AAAA",
        "length-mod-4-is-1": b"eyJhbGciOiJIUzI1NiJ9A.e30.AAAA",
        "header-not-utf8": b"_w.e30.AAAA",
        "too-long": b"e30." + b"A" * 8200 + b".AAAA",
        "latin1-in-signature": good.encode() + b"\xe9",
        "jwk-ec": bytes([t.JWS_JWK_JSON]) + orjson.dumps(t.VECTORS["registered_keys"][0]["jwk"]),
        "jwk-rsa": bytes([t.JWS_JWK_JSON]) + orjson.dumps(t.VECTORS["registered_keys"][1]["jwk"]),
        "jwk-ec-private": bytes([t.JWS_JWK_JSON])
        + orjson.dumps({**t.VECTORS["registered_keys"][0]["jwk"], "d": "AAAA"}),
        "jwk-ec-p384": bytes([t.JWS_JWK_JSON])
        + orjson.dumps({**t.VECTORS["registered_keys"][0]["jwk"], "crv": "P-384"}),
        "jwk-ec-declares-rs256": bytes([t.JWS_JWK_JSON])
        + orjson.dumps({**t.VECTORS["registered_keys"][0]["jwk"], "alg": "RS256"}),
        "jwk-rsa-bad-exponent": bytes([t.JWS_JWK_JSON])
        + orjson.dumps({**t.VECTORS["registered_keys"][1]["jwk"], "e": "AA"}),
        "jwk-oct": bytes([t.JWS_JWK_JSON]) + b'{"kty":"oct","k":"c2VjcmV0"}',
        "jwk-okp": bytes([t.JWS_JWK_JSON]) + b'{"kty":"OKP","crv":"Ed25519","x":"AAAA"}',
        "jwk-not-object": bytes([t.JWS_JWK_JSON]) + b"[]",
        "jwk-rsa-small": bytes([t.JWS_JWK_JSON]) + b'{"kty":"RSA","n":"AQAB","e":"AQAB"}',
        "parts-ec": bytes([t.JWS_JWK_PARTS, 0, 0, 32]) + bytes(range(32)) + bytes([32]) + bytes(32),
        "parts-rsa": bytes([t.JWS_JWK_PARTS, 1, 0, 255]) + b"\xff" * 255 + b"\x03\x01\x00\x01",
    }
    return seeds


def attestation_seeds() -> dict[str, bytes]:
    seeds = {f"vector-{c['name']}": c["token"].encode() for c in t.VECTORS["cases"]}
    gw, client, header = (
        bytes([t.ATT_SIGNED_GATEWAY]),
        bytes([t.ATT_SIGNED_CLIENT]),
        bytes([t.ATT_SIGNED_HEADER]),
    )
    ok_header = orjson.loads(t._header(t.GATEWAY_KID, "HS256"))
    good = next(c["token"] for c in t.VECTORS["cases"] if c["name"] == "ok_owner_es256")
    seeds |= {
        "raw-gateway-issued": _token(ok_header, _claims(), t.GATEWAY_KID).encode(),
        "raw-padded-signature": (good + "==").encode(),
        "raw-respelled-signature": (good[:-1] + chr(ord(good[-1]) + 1)).encode(),
        "raw-junk-in-signature": (good[:-20] + "!!!" + good[-20:]).encode(),
        "raw-empty": b"",
        "raw-spaces": b"   ",
        "gw-ok": gw + orjson.dumps(_claims()),
        "gw-owner-authorized": gw + orjson.dumps(_claims(**AUTHORIZED)),
        "gw-aud-list": gw + orjson.dumps(_claims(aud=["other", t.VECTORS["audience"]])),
        "gw-iat-float": gw + orjson.dumps(_claims(iat=t.NOW - 10.5)),
        "gw-exp-bool": gw + orjson.dumps(_claims(exp=True)),
        "gw-no-jti": gw + orjson.dumps(_claims(jti=None)),
        "gw-basis-none": gw + orjson.dumps(_claims(basis="none")),
        "gw-scope-not-list": gw
        + orjson.dumps(_claims(**{**AUTHORIZED, "owner_authorization": {"ref": "x", "scope": 1}})),
        "gw-authorized-no-scope": gw
        + orjson.dumps(
            _claims(**{**AUTHORIZED, "owner_authorization": {"ref": "WO-2", "valid_until": t.NOW}})
        ),
        "gw-scope-of-numbers": gw
        + orjson.dumps(
            _claims(
                **{
                    **AUTHORIZED,
                    "owner_authorization": {"ref": "WO-3", "valid_until": t.NOW, "scope": [1]},
                }
            )
        ),
        "gw-purpose-out-of-scope": gw
        + orjson.dumps(_claims(**{**AUTHORIZED, "purpose": "parts_inquiry"})),
        "gw-authorization-expired": gw
        + orjson.dumps(
            _claims(**{**AUTHORIZED, "owner_authorization": {"ref": "WO-4", "valid_until": 1}})
        ),
        "gw-authorization-not-object": gw
        + orjson.dumps(_claims(basis="owner_authorized", owner_authorization=[])),
        "gw-payload-array": gw + b"[]",
        "gw-payload-not-json": gw + b"\xff",
        "gw-huge-int": gw + b'{"iat": 18446744073709551616}',
        "client-ok": client + orjson.dumps(_claims(iss=t.ACCOUNT)),
        "client-owner-authorized": client + orjson.dumps(_claims(iss=t.ACCOUNT, **AUTHORIZED)),
        "header-crit": header
        + orjson.dumps({**ok_header, "crit": ["exp"]})
        + b"\x00"
        + orjson.dumps(_claims()),
        "header-no-typ": header
        + orjson.dumps({"alg": "HS256", "kid": t.GATEWAY_KID})
        + b"\x00"
        + orjson.dumps(_claims()),
        "header-other-account-key": header
        + orjson.dumps({**ok_header, "kid": t.OTHER_KID, "alg": "RS256"})
        + b"\x00"
        + orjson.dumps(_claims()),
    }
    return seeds


def main() -> None:
    for target, seeds in (
        ("vin", vin_seeds()),
        ("jws", jws_seeds()),
        ("attestation", attestation_seeds()),
    ):
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for name, data in seeds.items():
            (folder / f"seed-{name}").write_bytes(data)
        print(f"{folder}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
