"""An attestation signer for tests, independent of the gateway's own JOSE code (cryptography)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ec_key() -> tuple[ec.EllipticCurvePrivateKey, dict[str, str]]:
    key = ec.generate_private_key(ec.SECP256R1())
    nums = key.public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(nums.x.to_bytes(32, "big")),
        "y": b64(nums.y.to_bytes(32, "big")),
    }
    return key, jwk


def rsa_key(bits: int = 2048) -> tuple[rsa.RSAPrivateKey, dict[str, str]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    nums = key.public_key().public_numbers()
    n = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
    return key, {"kty": "RSA", "n": b64(n), "e": b64(nums.e.to_bytes(3, "big"))}


def vin_sha256(vin: str) -> str:
    return b64(hashlib.sha256(vin.strip().upper().encode()).digest())


def sign(key: Any, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = (
        b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    ).encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return signing_input.decode() + "." + b64(sig)


def attestation(
    key: Any,
    kid: str,
    account_id: str,
    vin: str,
    *,
    alg: str | None = None,
    now: int | None = None,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time()) if now is None else now
    alg = alg or ("ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256")
    body: dict[str, Any] = {
        "iss": account_id,
        "sub": account_id,
        "aud": "vin-gateway",
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(16),
        "vin_sha256": vin_sha256(vin),
        "basis": "owner",
        "purpose": "parts_inquiry",
    }
    body.update(claims)
    for name, value in list(body.items()):
        if value is None:
            del body[name]
    head = {"alg": alg, "kid": kid, "typ": "vin-attestation+jwt", **(header or {})}
    return sign(key, head, body)
