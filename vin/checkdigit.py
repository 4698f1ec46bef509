"""The ISO 3779 / 49 CFR 565.15(c) check digit (position 9), and the verdict on it.

Modelled on pydantic-extra-types' ``payment.py``: the transliteration table and the weights
are plain data, the algorithm is a weighted sum modulo 11 (10 is written ``X``).
"""

from __future__ import annotations

from operator import mul
from typing import Any, NamedTuple

from .errors import (
    INVALID_CHARACTER,
    LENGTH,
    VINError,
    VINProblem,
    describe_character,
)

__all__ = [
    "NOT_REQUIRED",
    "POLICIES",
    "REQUIRED",
    "TRANSLITERATION",
    "WEIGHTS",
    "WHEN_PRESENT",
    "CheckDigitVerdict",
    "check_digit",
    "check_digit_verdict",
    "compute_check_digit",
    "invalid_character_problem",
    "is_filler_vds",
    "syntax_problems",
]

#: 49 CFR 565.15(c) Table IV: letters to values (I, O and Q are not in the VIN alphabet).
TRANSLITERATION: dict[str, int] = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}

#: 49 CFR 565.15(c) Table V: the weight of each position (position 9 itself weighs 0).
WEIGHTS: tuple[int, ...] = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)

#: The VIN alphabet.
ALPHABET: frozenset[str] = frozenset(TRANSLITERATION)

#: Likely misreadings of the letters that are not in the alphabet.
MISREAD: dict[str, str] = {"I": "1", "O": "0", "Q": "0"}

# Check-digit policies (countries.json "check_digit" values).
REQUIRED = "required"
NOT_REQUIRED = "not_required"
WHEN_PRESENT = "when_present"
POLICIES: frozenset[str] = frozenset({REQUIRED, NOT_REQUIRED, WHEN_PRESENT})

_DIGITS = "0123456789X"
_WEIGHTS_16 = WEIGHTS[:8] + WEIGHTS[9:]
_VALUE = TRANSLITERATION.__getitem__
# Fast path (speed): ASCII bytes -> values with one bytes.translate; bytes outside the alphabet
# are deleted, so a shorter result means "take the slow path".
VALUE_BYTES = bytes(TRANSLITERATION.get(chr(i), 0) for i in range(256))
NOT_ALPHABET_BYTES = bytes(i for i in range(256) if chr(i) not in TRANSLITERATION)
_new = tuple.__new__


class CheckDigitVerdict(NamedTuple):
    """The check digit of one VIN.

    ``required``: the policy of the issuing region makes a mismatch an error.
    ``valid``: the plain fact ``found == expected`` (False when it cannot be computed).
    ``expected``: the computed digit, or None when a weighted position holds a bad character.
    ``found``: position 9 as written, or None when there is no position 9 to speak of.
    """

    required: bool
    valid: bool
    expected: str | None
    found: str | None

    def to_dict(self) -> dict[str, Any]:
        """The API shape ``{required, valid, expected, found}``."""
        return {
            "required": self.required,
            "valid": self.valid,
            "expected": self.expected,
            "found": self.found,
        }


def compute_check_digit(vin: str) -> str | None:
    """The check digit of a normalized 17-character VIN, or None when it cannot be computed.

    Position 9 is ignored (weight 0), so it may hold anything; any other character outside
    the alphabet gives None.
    """
    if vin.isascii():
        values = vin.encode("ascii").translate(VALUE_BYTES, NOT_ALPHABET_BYTES)
        if len(values) == 17:
            return _DIGITS[sum(map(mul, values, WEIGHTS)) % 11]
    try:
        total = sum(map(mul, map(_VALUE, vin[:8] + vin[9:]), _WEIGHTS_16))
    except KeyError:
        return None
    return _DIGITS[total % 11]


def is_filler_vds(vds: str) -> bool:
    """True when positions 4-9 carry filler (a run of ``Z`` or ``XX``), as rest-of-world VINs do.

    (:func:`check_digit_verdict` inlines this test.)
    """
    return "ZZ" in vds or "XX" in vds


def check_digit_verdict(vin: str, policy: str) -> CheckDigitVerdict:
    """The verdict on a normalized 17-character VIN's check digit under ``policy``.

    ``policy`` is ``required`` (North America, China), ``not_required`` (Europe) or
    ``when_present`` (everywhere else: required when position 9 is ``0``-``9``/``X`` and
    positions 4-9 carry no filler).
    """
    expected = compute_check_digit(vin)
    found = vin[8]
    if policy == REQUIRED:
        required = True
    elif policy == WHEN_PRESENT:
        vds = vin[3:9]
        required = found in _DIGITS and "ZZ" not in vds and "XX" not in vds
    else:
        required = False
    return _new(CheckDigitVerdict, (required, found == expected, expected, found))


def syntax_problems(vin: str, *, skip_position_9: bool = False) -> list[VINProblem]:
    """The ``length`` and ``invalid_character`` problems of a normalized VIN, in order."""
    problems: list[VINProblem] = []
    if len(vin) != 17:
        problems.append(VINProblem(LENGTH, None, f"a VIN has 17 characters, this has {len(vin)}"))
    for index, char in enumerate(vin):
        if char not in ALPHABET and not (skip_position_9 and index == 8):
            problems.append(invalid_character_problem(index + 1, char))
    return problems


def invalid_character_problem(position: int, char: str) -> VINProblem:
    """The ``invalid_character`` problem, with the I->1, O/Q->0 misread suggestion."""
    message = f"position {position}: {describe_character(char)} is not allowed in a VIN"
    suggestion = MISREAD.get(char)
    if suggestion is not None:
        message += f" (did you mean '{suggestion}'?)"
    return VINProblem(INVALID_CHARACTER, position, message)


def check_digit(text: str) -> str:
    """The computed check digit (``0``-``9`` or ``X``) of a VIN.

    The text is normalized first by :func:`vin.normalize` (ASCII whitespace trimmed, printable
    ASCII only, ASCII letters upper-cased). Position 9 is not used, so it may hold a placeholder.
    Raises a :class:`~vin.errors.VINError` subclass (``length`` or ``invalid_character``) when it
    cannot be computed.
    """
    from .decode import normalize  # decode imports this module

    vin = normalize(text)
    problems = syntax_problems(vin, skip_position_9=True)
    if problems:
        raise VINError.from_problems(problems)
    digit = compute_check_digit(vin)
    assert digit is not None
    return digit
