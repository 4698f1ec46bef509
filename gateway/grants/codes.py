"""The two codes of the grants: an account's public workshop code and a grant's one-time code.

Both are Crockford base32 (``0-9`` and the letters without I, L, O, U), random from
``secrets``:

- the **workshop code**: 8 characters (40 bits), one per account, public (an owner types or
  scans it to grant that workshop access), shown ``XXXX-XXXX``;
- the **one-time code**: 10 characters (50 bits), shown ``XXXXX-XXXXX``, single use, short
  lived. Only its keyed digest (HMAC-SHA256 with ``<secrets dir>/grant_code.key``) is stored.

Input is forgiving the way Crockford meant it: case, spaces and hyphens do not matter, and the
letters people confuse with digits are read as them (O as 0, I and L as 1). The QR code of a
one-time code encodes the code's text and nothing else (no URL, no grant id).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import string

import segno

#: Crockford's base32: digits and upper-case letters without I, L, O and U
ALPHABET = "".join(c for c in string.digits + string.ascii_uppercase if c not in "ILOU")
WORKSHOP_CODE_LENGTH = 8
GRANT_CODE_LENGTH = 10

_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = str.maketrans("", "", " -")
_ALLOWED = frozenset(ALPHABET)


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_workshop_code() -> str:
    """A fresh workshop code, as stored (8 characters, no separator)."""
    return _random(WORKSHOP_CODE_LENGTH)


def new_grant_code() -> str:
    """A fresh one-time code, as stored digested (10 characters, no separator)."""
    return _random(GRANT_CODE_LENGTH)


def normalize(text: str, length: int) -> str | None:
    """The code typed as ``text`` in its stored form, or None when it cannot be a code of that
    length (a character outside the alphabet, after the aliases, or the wrong length)."""
    if len(text) > 4 * length:  # no legitimate input is longer; never loop over a flood
        return None
    code = text.upper().translate(_SEPARATORS).translate(_ALIASES)
    if len(code) != length or not _ALLOWED.issuperset(code):
        return None
    return code


def display(code: str) -> str:
    """The code as people read it: two halves joined by a hyphen (``ABCD-1234``); a code
    already shown so is returned as it is."""
    code = code.replace("-", "")
    half = len(code) // 2
    return code[:half] + "-" + code[half:]


def code_digest(key: bytes, code: str) -> str:
    """The stored digest of a one-time code (normalized form): HMAC-SHA256, hex."""
    return hmac.new(key, b"grant-code:" + code.encode("ascii"), hashlib.sha256).hexdigest()


def digests_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def qr_svg(code: str) -> str:
    """The one-time code's QR code (its display text only, error correction M) as an SVG
    document string."""
    out = io.BytesIO()
    segno.make(display(code), error="m").save(out, kind="svg", scale=4, xmldecl=False)
    return out.getvalue().decode("ascii")
