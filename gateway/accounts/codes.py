"""Crockford base32 codes: the alphabet, the account's public workshop code, forgiving input.

Codes are Crockford base32 (``0-9`` and the letters without I, L, O, U), random from
``secrets``. The **workshop code** is 8 characters (40 bits), one per account, public (an owner
types or scans it to grant that workshop access to a vehicle, ``gateway.grants``), shown
``XXXX-XXXX``. The grants' one-time codes use the same alphabet and input rules
(``gateway.grants.codes``); they live there, this module knows nothing of grants.

Input is forgiving the way Crockford meant it: case, spaces and hyphens do not matter, and the
letters people confuse with digits are read as them (O as 0, I and L as 1). Only ASCII is
read: anything else is refused before case folding, so no Unicode letter folds into the
alphabet (``ſ`` upper-cases to ``S``, ``ﬀ`` to ``FF``).
"""

from __future__ import annotations

import secrets
import string

#: Crockford's base32: digits and upper-case letters without I, L, O and U
ALPHABET = "".join(c for c in string.digits + string.ascii_uppercase if c not in "ILOU")
WORKSHOP_CODE_LENGTH = 8

_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = str.maketrans("", "", " -")
_ALLOWED = frozenset(ALPHABET)


def random_code(length: int) -> str:
    """``length`` random characters of the alphabet (``secrets``), no separator."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_workshop_code() -> str:
    """A fresh workshop code, as stored (8 characters, no separator)."""
    return random_code(WORKSHOP_CODE_LENGTH)


def normalize(text: str, length: int) -> str | None:
    """The code typed as ``text`` in its stored form, or None when it cannot be a code of that
    length: a character outside ASCII (checked first, before any case folding), a character
    outside the alphabet after the aliases, or the wrong length."""
    if len(text) > 4 * length or not text.isascii():  # never loop over a flood; ASCII only
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
