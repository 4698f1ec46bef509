"""The only module that imports python-jose.

python-jose 3.5.0 accepts a forged HS256 token keyed with a DER public key when ``algorithms`` is
None or mixes families. So every call here:

- passes a key *object* built once with ``jwk.construct`` (never raw bytes or a dict);
- passes a single-element ``algorithms`` list taken from the registered key, never from the
  token header;
- leaves claims (exp, iat, aud, jti), ``typ`` and ``crit`` to our own code, which parses the
  protected header itself before jose sees the token;
- never uses jose's JWE or JWT helpers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import string
from dataclasses import dataclass
from typing import Any

import orjson
from jose import jwk, jws
from jose.backends.base import Key
from jose.exceptions import JOSEError

CLIENT_ALGORITHMS = frozenset({"ES256", "RS256"})
MIN_RSA_BITS = 2048
MAX_TOKEN_BYTES = 8192


class JWSFormatError(ValueError):
    """The compact serialization or its protected header cannot be parsed."""


class BadSignature(ValueError):
    """The signature does not verify under the registered key."""


class UnsupportedKey(ValueError):
    """A JWK the gateway does not accept (type, curve, size, private material...)."""


@dataclass(frozen=True, slots=True)
class BoundKey:
    """A key with the one algorithm it may be used with."""

    kid: str
    alg: str
    key: Key
    owner: str


def b64url_decode(segment: str) -> bytes:
    """Unpadded base64url in its one canonical spelling (unused trailing bits zero), so a value
    has one text: a verified token cannot be re-spelled into another accepted token."""
    check_canonical(segment)
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def check_canonical(segment: str) -> None:
    """Raise ``JWSFormatError`` unless ``segment`` is canonical unpadded base64url."""
    if not _B64URL_RE.fullmatch(segment):
        raise JWSFormatError("segment is not base64url")
    rest = len(segment) % 4
    if rest == 1:  # no byte string encodes to this length
        raise JWSFormatError("segment is not base64url")
    # canonical: the bits of the last character that encode no byte are zero (4 of them after
    # one trailing byte, 2 after two); checked here instead of re-encoding the whole segment
    if rest and _B64URL_INDEX[segment[-1]] & (0x0F if rest == 2 else 0x03):
        raise JWSFormatError("segment is not canonical base64url")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")
_B64URL_INDEX = {
    c: i
    for i, c in enumerate(string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_")
}


def peek_kid(token: str | None) -> str | None:
    """The header's ``kid`` of a would-be compact JWS, or None; never raises, verifies nothing
    (the request path uses it to fetch the key together with the account, in one query)."""
    if not token or len(token) > MAX_TOKEN_BYTES:
        return None
    try:
        header = orjson.loads(b64url_decode(token.partition(".")[0]))
    except (ValueError, JWSFormatError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) and kid else None


def split_compact(token: str) -> tuple[dict[str, Any], bytes]:
    """Parse the protected header and payload of a compact JWS without verifying it.

    Returns the header dict and the raw payload bytes. Raises ``JWSFormatError``.
    """
    if len(token) > MAX_TOKEN_BYTES:
        raise JWSFormatError("token too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise JWSFormatError("a compact JWS has three segments")
    try:
        header = orjson.loads(b64url_decode(parts[0]))
    except orjson.JSONDecodeError as exc:
        raise JWSFormatError("protected header is not JSON") from exc
    if not isinstance(header, dict):
        raise JWSFormatError("protected header is not a JSON object")
    return header, b64url_decode(parts[1]) if parts[1] else b""


def verify(token: str, key: BoundKey) -> None:
    """Check the signature with the key's own algorithm. Raises ``BadSignature``.

    The signature segment must be canonical base64url first: python-jose's decoder skips
    characters outside the alphabet and anything after padding, which would let anyone re-spell
    a signed token (a new text, hence a new token digest) that still verifies."""
    try:
        check_canonical(token.rpartition(".")[2])  # jose decodes it (leniently) itself
    except JWSFormatError as exc:
        raise BadSignature("signature does not verify") from exc
    try:
        jws.verify(token, key.key, algorithms=[key.alg])
    except JOSEError as exc:
        raise BadSignature("signature does not verify") from exc


def sign(payload: dict[str, Any], key: BoundKey, typ: str) -> str:
    headers = {"kid": key.kid, "typ": typ}
    return str(jws.sign(orjson.dumps(payload), key.key, headers=headers, algorithm=key.alg))


def hmac_key(kid: str, secret: bytes, owner: str) -> BoundKey:
    """A gateway-only HS256 key (never a client's)."""
    if len(secret) < 32:
        raise UnsupportedKey("HMAC keys must be at least 256 bits")
    return BoundKey(kid=kid, alg="HS256", key=jwk.construct(secret, "HS256"), owner=owner)


def public_key_from_jwk(kid: str, data: dict[str, Any], owner: str) -> BoundKey:
    """Build a client's public verification key, binding it to the one algorithm it allows."""
    alg = algorithm_for_jwk(data)
    public = {k: data[k] for k in _PUBLIC_MEMBERS[data["kty"]]}
    try:
        key = jwk.construct(public, alg)
    except (JOSEError, ValueError) as exc:  # cryptography's: a point off the curve, a bad e
        raise UnsupportedKey("the JWK could not be loaded as a public key") from exc
    return BoundKey(kid=kid, alg=alg, key=key, owner=owner)


_PUBLIC_MEMBERS = {"EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e")}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def algorithm_for_jwk(data: dict[str, Any]) -> str:
    """ES256 for EC P-256, RS256 for RSA >= 2048 bits; anything else raises UnsupportedKey."""
    if not isinstance(data, dict):
        raise UnsupportedKey("a JWK is a JSON object")
    kty = data.get("kty")
    if kty == "oct":
        raise UnsupportedKey("symmetric (oct) keys are not accepted for attestations")
    if _PRIVATE_MEMBERS & data.keys():
        raise UnsupportedKey("this JWK holds private key material: register the public key only")
    declared = data.get("alg")
    if kty == "EC":
        if data.get("crv") != "P-256":
            raise UnsupportedKey("EC keys must use the P-256 curve (ES256)")
        for member in ("x", "y"):
            if not isinstance(data.get(member), str) or len(_decode_member(data, member)) != 32:
                raise UnsupportedKey(f"EC member {member!r} must be a 32-byte base64url value")
        alg = "ES256"
    elif kty == "RSA":
        if not isinstance(data.get("n"), str) or not isinstance(data.get("e"), str):
            raise UnsupportedKey("RSA keys need 'n' and 'e'")
        bits = int.from_bytes(_decode_member(data, "n"), "big").bit_length()
        if bits < MIN_RSA_BITS:
            raise UnsupportedKey(
                f"RSA keys must be at least {MIN_RSA_BITS} bits, this one is {bits}"
            )
        alg = "RS256"
    else:
        raise UnsupportedKey("only EC P-256 and RSA keys are accepted")
    if declared is not None and declared != alg:
        # the declared value is the client's: named by its member, never echoed
        raise UnsupportedKey(f"the JWK's 'alg' does not match its key: a {kty} key here is {alg}")
    return alg


def _decode_member(data: dict[str, Any], member: str) -> bytes:
    try:
        return b64url_decode(data[member])
    except JWSFormatError as exc:
        raise UnsupportedKey(f"JWK member {member!r} is not base64url") from exc


def jwk_thumbprint(data: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public EC or RSA JWK."""
    members = {k: data[k] for k in sorted(_PUBLIC_MEMBERS[data["kty"]])}
    canonical = orjson.dumps(members, option=orjson.OPT_SORT_KEYS)
    return b64url_encode(hashlib.sha256(canonical).digest())


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
