"""Access tokens (short-lived, HS256 with the gateway's own key) and API keys (``vgk_``).

Both are resolved to an account id on every request, so both are cached briefly in process,
keyed by a SHA-256 digest of the credential (never the credential itself).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.security import jws

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type
API_KEY_PREFIX = "vgk_"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str
    exp: int


class AccessTokens:
    def __init__(self, key: jws.BoundKey, *, issuer: str, audience: str, ttl_s: int) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience + ":api"
        self.ttl_s = ttl_s

    def issue(self, account_id: str, now: int | None = None) -> tuple[str, int]:
        now = int(time.time()) if now is None else now
        claims = {
            "iss": self.issuer,
            "sub": account_id,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": secrets.token_urlsafe(12),
        }
        return jws.sign(claims, self.key, ACCESS_TOKEN_TYP), self.ttl_s

    def verify(self, token: str, now: int | None = None) -> AccessClaims | None:
        """The claims of a valid token, or None. Never raises on bad input."""
        now = int(time.time()) if now is None else now
        try:
            header, payload = jws.split_compact(token)
            if header.get("typ") != ACCESS_TOKEN_TYP or header.get("kid") != self.key.kid:
                return None
            if header.get("alg") != self.key.alg or "crit" in header:
                return None
            jws.verify(token, self.key)
            claims: Any = orjson.loads(payload)
        except (jws.JWSFormatError, jws.BadSignature, orjson.JSONDecodeError):
            return None
        if not isinstance(claims, dict):
            return None
        sub, exp, iat = claims.get("sub"), claims.get("exp"), claims.get("iat")
        if claims.get("iss") != self.issuer or claims.get("aud") != self.audience:
            return None
        if not isinstance(sub, str) or not isinstance(exp, int) or not isinstance(iat, int):
            return None
        if exp <= now or iat > now + 60:
            return None
        return AccessClaims(sub=sub, exp=exp)


def new_api_key() -> tuple[str, str, str]:
    """(key id, full key shown once, sha256 of the secret part to store)."""
    key_id = "key_" + secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    full = f"{API_KEY_PREFIX}{key_id[4:]}_{secret}"
    return key_id, full, hashlib.sha256(secret.encode()).hexdigest()


def parse_api_key(token: str) -> tuple[str, str] | None:
    """(key id, sha256 of secret) for a well-formed ``vgk_`` key, else None."""
    if not token.startswith(API_KEY_PREFIX):
        return None
    body = token[len(API_KEY_PREFIX) :]
    ident, sep, secret = body.partition("_")
    if not sep or len(ident) != 12 or not secret or len(secret) > 100:
        return None
    return "key_" + ident, hashlib.sha256(secret.encode()).hexdigest()


def credential_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
