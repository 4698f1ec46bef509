"""A grant's one-time code: 10 Crockford base32 characters (50 bits), shown ``XXXXX-XXXXX``,
single use, short lived. Only its keyed digest (HMAC-SHA256 with ``<secrets dir>/grant_code.key``)
is stored. The alphabet and the forgiving input rules are the workshop code's
(``gateway.accounts.codes``). The QR code of a one-time code encodes the code's text and
nothing else (no URL, no grant id).
"""

from __future__ import annotations

import hashlib
import hmac
import io

import segno

from gateway.accounts.codes import display, random_code

GRANT_CODE_LENGTH = 10


def new_grant_code() -> str:
    """A fresh one-time code, as stored digested (10 characters, no separator)."""
    return random_code(GRANT_CODE_LENGTH)


def code_digest(key: bytes, code: str) -> str:
    """The stored digest of a one-time code (normalized form): HMAC-SHA256, hex."""
    return hmac.new(key, b"grant-code:" + code.encode("ascii"), hashlib.sha256).hexdigest()


def qr_svg(code: str) -> str:
    """The one-time code's QR code (its display text only, error correction M) as an SVG
    document string."""
    out = io.BytesIO()
    segno.make(display(code), error="m").save(out, kind="svg", scale=4, xmldecl=False)
    return out.getvalue().decode("ascii")
