"""Errors and problems of the ``vin`` library.

Modelled on joserfc's ``errors.py`` and httpx's ``_exceptions.py``: one base class,
:class:`VINError` (a :class:`ValueError`), and one subclass per stable problem code. Every
class carries its ``code`` as a class attribute so callers (the gateway's problem+json
handler, the CLI) can map errors without parsing messages.

Privacy rule: no message built here ever contains the VIN. A single offending printable
ASCII character may be quoted, nothing more; any other character is named by its position only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "ERROR_CLASSES",
    "CheckDigitMismatchError",
    "InvalidCharacterError",
    "InvalidModelYearError",
    "LengthError",
    "VINError",
    "VINProblem",
    "describe_character",
    "not_printable_ascii_problem",
]

#: Stable problem codes (see docs/vin-library.md).
LENGTH = "length"
INVALID_CHARACTER = "invalid_character"
CHECK_DIGIT_MISMATCH = "check_digit_mismatch"
INVALID_MODEL_YEAR = "invalid_model_year"


class VINProblem(NamedTuple):
    """One thing wrong with a VIN: a stable ``code``, a 1-based ``position`` or None."""

    code: str
    position: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The API shape ``{code, position?, message}`` (position left out when None)."""
        if self.position is None:
            return {"code": self.code, "message": self.message}
        return {"code": self.code, "position": self.position, "message": self.message}


def describe_character(char: str) -> str:
    """A safe, printable rendering of one character: ``'Q'``, or ``U+00E9`` when unprintable."""
    if char.isascii() and char.isprintable() and char not in "'\\":
        return f"'{char}'"
    return f"U+{ord(char):04X}"


def not_printable_ascii_problem(position: int) -> VINProblem:
    """The ``invalid_character`` problem of a character that is not printable ASCII.

    A VIN is ASCII before anything else (:func:`vin.normalize`): such a character is never case
    mapped (U+017F would become ``S``) and never shown, not even as a code point (it may be a
    look-alike of a VIN letter, a control or a bidi override); only its position is given.
    """
    return VINProblem(
        INVALID_CHARACTER,
        position,
        f"position {position}: not a printable ASCII character (a VIN is ASCII letters and digits)",
    )


class VINError(ValueError):
    """Base class of every VIN error. ``code`` is stable; ``errors`` lists every problem."""

    code: str = "invalid_vin"
    #: The 1-based position the error is about (None when it is about the whole VIN).
    position: int | None
    #: Every problem found in the VIN, the one this error is about first.
    errors: tuple[VINProblem, ...]

    def __init__(
        self,
        message: str | None = None,
        *,
        position: int | None = None,
        errors: tuple[VINProblem, ...] | list[VINProblem] = (),
    ) -> None:
        self.position = position
        self.errors = tuple(errors)
        if message is None:
            message = self.errors[0].message if self.errors else "invalid VIN"
        self.message = message
        super().__init__(message)

    @classmethod
    def from_problems(cls, problems: tuple[VINProblem, ...] | list[VINProblem]) -> VINError:
        """The error for the first problem (its own class), carrying every problem."""
        problems = tuple(problems)
        if not problems:
            raise ValueError("from_problems() needs at least one problem")
        first = problems[0]
        error_class = ERROR_CLASSES.get(first.code, VINError)
        message = first.message
        if len(problems) > 1:
            more = len(problems) - 1
            message = f"{message} (and {more} more problem{'s' if more > 1 else ''})"
        return error_class(message, position=first.position, errors=problems)


class LengthError(VINError):
    """The VIN does not have 17 characters (after normalization)."""

    code = LENGTH


class InvalidCharacterError(VINError):
    """A character outside the VIN alphabet (I, O, Q, anything not A-Z/0-9)."""

    code = INVALID_CHARACTER


class CheckDigitMismatchError(VINError):
    """Position 9 is not the computed check digit where the check digit is required."""

    code = CHECK_DIGIT_MISMATCH


class InvalidModelYearError(VINError):
    """Position 10 must be a model year here and holds U, Z or 0."""

    code = INVALID_MODEL_YEAR


ERROR_CLASSES: dict[str, type[VINError]] = {
    cls.code: cls
    for cls in (LengthError, InvalidCharacterError, CheckDigitMismatchError, InvalidModelYearError)
}
