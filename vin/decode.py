"""Decoding a VIN: :func:`decode` (never raises) and :func:`parse` (raises on invalid VINs).

The common path (17 characters, all in the alphabet) uses only dict look-ups, slices and
precomputed tuples; the VDS regexes run only for WMIs shared by several makes. Results are
never cached: a VIN is never used as a cache key.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from operator import mul
from typing import Any, NamedTuple

from . import _tables
from .checkdigit import (
    NOT_ALPHABET_BYTES,
    REQUIRED,
    VALUE_BYTES,
    WEIGHTS,
    WHEN_PRESENT,
    CheckDigitVerdict,
    compute_check_digit,
    syntax_problems,
)
from .errors import (
    CHECK_DIGIT_MISMATCH,
    INVALID_MODEL_YEAR,
    VINError,
    VINProblem,
    describe_character,
    not_printable_ascii_problem,
)

__all__ = ["NOTES", "DecodedVIN", "decode", "normalize", "parse"]

#: What normalization strips around a VIN: ASCII whitespace only. (``str.strip()`` would also
#: strip U+00A0, U+3000, U+2028 and the ASCII separators U+001C-U+001F.)
ASCII_WHITESPACE = " \t\n\r\x0b\x0c"

#: Notes a :class:`DecodedVIN` may carry (information, not errors), with their meaning.
NOTES: dict[str, str] = {
    "not_text": "the input was not text; it was decoded as an empty VIN",
    "normalized_whitespace": "surrounding whitespace was removed",
    "normalized_case": "lower-case letters were upper-cased",
    "small_manufacturer": "position 3 is 9: positions 12-14 complete the WMI",
    "small_manufacturer_fallback": "the six-character WMI is unknown; its first three were used",
    "unknown_wmi": "the WMI is not in the tables",
    "make_ambiguous": "the WMI is shared by several makes and the VIN alone cannot tell",
    "check_digit_not_used": "position 9 is not a valid check digit, which is allowed here",
    "model_year_not_encoded": "position 10 does not encode the model year for this manufacturer",
}

_NO_YEARS: tuple[int, ...] = ()
_NO_MAKES: tuple[str, ...] = ()
_NO_PROBLEMS: tuple[VINProblem, ...] = ()
_NO_NOTES: tuple[str, ...] = ()
_NO_VERDICT = CheckDigitVerdict(False, False, None, None)
_CHECK_DIGITS = "0123456789X"
_WEIGHTS = WEIGHTS
_mul = mul
_REQUIRED = REQUIRED
_WHEN_PRESENT = WHEN_PRESENT
_DIGITS = frozenset("0123456789")
_BAD_YEAR_CODES = frozenset("UZ0")
_YEAR_REGIMES = frozenset({_tables.NORTH_AMERICA, _tables.CHINA})
_NORTH_AMERICA = _tables.NORTH_AMERICA
_OTHER = _tables.OTHER
_NEVER = _tables.NEVER
_ALWAYS = _tables.ALWAYS
_IF_VALID = _tables.IF_CHECK_DIGIT_VALID
_WMI = _tables.WMI
_ORIGINS = _tables.ORIGINS
_year_table = _tables.year_table
_time = time.time

# date.today() costs more than the rest of a decode: keep today's year table until midnight.
_today_cache: list[Any] = [0.0, None]  # [valid until (epoch seconds), year table]


def _refresh_today() -> None:
    today = date.today()
    midnight = datetime.combine(today + timedelta(days=1), datetime.min.time())
    _today_cache[:] = [midnight.timestamp(), _year_table(today.year)]


class DecodedVIN(NamedTuple):
    """An immutable decoded VIN. :meth:`to_dict` gives the API's ``vehicle`` object."""

    vin: str
    valid: bool
    errors: tuple[VINProblem, ...]
    wmi: str | None
    vds: str | None
    vis: str | None
    manufacturer: str | None
    make: str | None
    make_candidates: tuple[str, ...]
    country: str | None
    country_code: str | None
    region: str | None
    model_year: int | None
    model_year_candidates: tuple[int, ...]
    plant_code: str | None
    serial_number: str | None
    check_digit: CheckDigitVerdict
    notes: tuple[str, ...] = ()

    @property
    def year_code(self) -> str | None:
        """Position 10 (the model-year code where there is one), None for a wrong length."""
        return self.vis[0] if self.vis else None

    @property
    def is_small_manufacturer(self) -> bool:
        """True for a six-character WMI (position 3 is ``9``)."""
        return self.wmi is not None and len(self.wmi) == 6

    @property
    def error_codes(self) -> tuple[str, ...]:
        """The codes of the problems, in order."""
        return tuple(problem.code for problem in self.errors)

    def to_dict(self) -> dict[str, Any]:
        """Exactly the ``vehicle`` object of the API, keys in the spec's order."""
        return {
            "vin": self.vin,
            "valid": self.valid,
            "errors": [problem.to_dict() for problem in self.errors],
            "wmi": self.wmi,
            "vds": self.vds,
            "vis": self.vis,
            "manufacturer": self.manufacturer,
            "make": self.make,
            "make_candidates": list(self.make_candidates),
            "country": self.country,
            "country_code": self.country_code,
            "region": self.region,
            "model_year": self.model_year,
            "model_year_candidates": list(self.model_year_candidates),
            "plant_code": self.plant_code,
            "serial_number": self.serial_number,
            "check_digit": self.check_digit.to_dict(),
        }


# Building the tuple directly skips the Python-level __new__ of the named tuple (speed).
_new = tuple.__new__


# Upper-cases ASCII letters and nothing else (str.upper() maps U+017F to S, U+0131 to I, the
# fullwidth letters to others, and U+FB00 to two letters).
_ASCII_UPPER = str.maketrans(
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)  # fmt: skip


def normalize(text: str) -> str:
    """The VIN as it is hashed, compared and decoded: ASCII first, then trimmed and upper-cased.

    Surrounding ASCII whitespace (space, tab, CR, LF, VT, FF) is removed. What is left must be
    printable ASCII (U+0020-U+007E); otherwise an :class:`~vin.errors.InvalidCharacterError`
    (``invalid_character``) is raised listing every such character by its 1-based position in
    the trimmed text, never the character itself. So no Unicode case mapping can turn one VIN
    into another. Then lower-case ASCII letters are upper-cased. Characters that are printable
    ASCII but not in the VIN alphabet (``I``, ``-``...) are left for :func:`decode` to report.
    """
    stripped = text.strip(ASCII_WHITESPACE)
    if stripped.isascii() and stripped.isprintable():
        return stripped.upper()
    raise VINError.from_problems(_not_printable_ascii(stripped))


def _not_printable_ascii(text: str) -> list[VINProblem]:
    """A problem for each character of ``text`` outside U+0020-U+007E."""
    return [
        not_printable_ascii_problem(index)
        for index, char in enumerate(text, start=1)
        if not " " <= char <= "~"
    ]


def _syntax_problems(vin: str) -> list[VINProblem]:
    """The length and character problems; a character that is not printable ASCII gets the
    problem :func:`normalize` raises for it (its position, not the character)."""
    problems = syntax_problems(vin)
    if vin.isascii() and vin.isprintable():
        return problems
    return [
        not_printable_ascii_problem(p.position)
        if p.position is not None and not " " <= vin[p.position - 1] <= "~"
        else p
        for p in problems
    ]


def _origin(prefix: str) -> _tables.Origin:
    """The origin of a prefix holding characters outside the alphabet (slow path)."""
    tables = _tables.TABLES
    return _tables.origin_for(prefix, None, tables.regions, tables.names, tables.policies)


def _makes(
    rules: tuple[_tables.VdsRule, ...],
    wmi_candidates: tuple[str, ...],
    vds5: str,
    model_year: int | None,
) -> tuple[str | None, tuple[str, ...]]:
    """``make`` and ``make_candidates`` of a shared WMI, from its VDS rules.

    Exactly one matching make gives ``make``; several, or none, give ``None`` and the
    candidates (the matching makes, else the WMI's candidates).
    """
    found: list[str] = []
    for pattern, year_from, year_to, make in rules:
        if pattern.match(vds5) is None or make in found:
            continue
        if model_year is not None and (
            (year_from is not None and model_year < year_from)
            or (year_to is not None and model_year > year_to)
        ):
            continue
        found.append(make)
    if len(found) == 1:
        return found[0], _NO_MAKES
    return None, tuple(found) if found else wmi_candidates


def decode(text: object, *, reference_date: date | None = None) -> DecodedVIN:
    """Decode a VIN. Never raises, whatever ``text`` is; problems are listed in ``errors``.

    ``reference_date`` (default: today) bounds the model-year candidates (up to its year + 1),
    which makes results reproducible.
    """
    # The common path is written for speed: no list is built unless there is something to
    # put in it, and the check digit and today's year table are computed inline.
    notes: list[str] | None = None
    if isinstance(text, str):
        # as normalize() does, without raising: only ASCII is trimmed and upper-cased
        stripped = text.strip(ASCII_WHITESPACE)
        vin = stripped.upper() if stripped.isascii() else stripped.translate(_ASCII_UPPER)
        if len(stripped) != len(text):
            notes = ["normalized_whitespace"]
        if vin != stripped:
            if notes is None:
                notes = ["normalized_case"]
            else:
                notes.append("normalized_case")
    else:
        vin = ""
        notes = ["not_text"]

    problems: list[VINProblem] | None = None
    expected: str | None = None
    if len(vin) == 17 and vin.isascii():
        values = vin.encode("ascii").translate(VALUE_BYTES, NOT_ALPHABET_BYTES)
        if len(values) == 17:  # every character is in the alphabet
            expected = _CHECK_DIGITS[sum(map(_mul, values, _WEIGHTS)) % 11]
    if expected is None:
        problems = _syntax_problems(vin)
        if len(vin) != 17:
            return _new(
                DecodedVIN,
                (
                    vin, False, tuple(problems), None, None, None, None, None, _NO_MAKES,
                    None, None, None, None, _NO_YEARS, None, None, _NO_VERDICT,
                    tuple(notes) if notes else _NO_NOTES,
                ),
            )  # fmt: skip
        expected = compute_check_digit(vin)

    # WMI (three characters, or six for a small manufacturer) and origin
    if vin[2] == "9":
        wmi = vin[:3] + vin[11:14]
        serial = vin[14:]
        info = _WMI.get(wmi)
        if notes is None:
            notes = []
        notes.append("small_manufacturer")
        if info is None:
            info = _WMI.get(vin[:3])
            if info is not None:
                notes.append("small_manufacturer_fallback")
    else:
        wmi = vin[:3]
        serial = vin[11:]
        info = _WMI.get(wmi)
    if info is None:
        manufacturer = make = None
        candidates = _NO_MAKES
        year_at_10 = _ALWAYS
        car = False
        rules: tuple[_tables.VdsRule, ...] = ()
        origin = _ORIGINS.get(vin[:2]) or _origin(vin[:2])
        if notes is None:
            notes = []
        notes.append("unknown_wmi")
    else:
        # (tuple unpacking: much cheaper than one attribute access per field)
        manufacturer, make, candidates, _, year_at_10, _, car, origin, rules = info
    country_code, country, region, policy, regime = origin

    # check digit (the policy table of checkdigit.check_digit_verdict, inlined)
    found = vin[8]
    if policy is _REQUIRED:
        required = True
    elif policy is _WHEN_PRESENT:
        vds = vin[3:9]
        required = found in _CHECK_DIGITS and "ZZ" not in vds and "XX" not in vds
    else:
        required = False
    valid_digit = found == expected
    verdict = _new(CheckDigitVerdict, (required, valid_digit, expected, found))
    if not valid_digit and expected is not None:
        if required:
            problem = VINProblem(
                CHECK_DIGIT_MISMATCH,
                9,
                f"check digit: expected '{expected}', found {describe_character(found)}",
            )
            if problems is None:
                problems = []
            problems.append(problem)
        else:
            if notes is None:
                notes = []
            notes.append("check_digit_not_used")

    # model year
    years = _NO_YEARS
    if year_at_10 is _NEVER or (year_at_10 is _IF_VALID and not valid_digit):
        if notes is None:
            notes = []
        notes.append("model_year_not_encoded")
    else:
        code = vin[9]
        if reference_date is not None:
            entry = _year_table(reference_date.year).get(code)
        else:
            if _time() >= _today_cache[0]:
                _refresh_today()
            entry = _today_cache[1].get(code)
        if entry is None:
            if code in _BAD_YEAR_CODES and regime in _YEAR_REGIMES:
                problem = VINProblem(
                    INVALID_MODEL_YEAR, 10, f"position 10: '{code}' is not a model-year code"
                )
                if problems is None:
                    problems = []
                problems.append(problem)
        elif regime is _NORTH_AMERICA or (regime is _OTHER and required and valid_digit):
            if vin[6] in _DIGITS:
                years = entry.numeric_car if car else entry.numeric
            else:
                years = entry.alphabetic_car if car else entry.alphabetic
        else:
            years = entry.plain

    # make: a shared WMI (no single make) asks its VDS rules, else lists its candidates
    if make is None and info is not None:
        if rules:
            make, candidates = _makes(rules, candidates, vin[3:8], years[0] if years else None)
        if make is None and candidates:
            if notes is None:
                notes = []
            notes.append("make_ambiguous")

    return _new(
        DecodedVIN,
        (
            vin, not problems, tuple(problems) if problems else _NO_PROBLEMS, wmi,
            vin[3:9], vin[9:], manufacturer, make, candidates, country, country_code, region,
            years[0] if years else None, years, vin[10], serial, verdict,
            tuple(notes) if notes else _NO_NOTES,
        ),
    )  # fmt: skip


def parse(text: object, *, reference_date: date | None = None) -> DecodedVIN:
    """Like :func:`decode`, but raise a :class:`VINError` subclass when the VIN is invalid.

    The error is the class of the first problem and carries every problem in ``.errors``.
    """
    decoded = decode(text, reference_date=reference_date)
    if not decoded.valid:
        raise VINError.from_problems(decoded.errors)
    return decoded
