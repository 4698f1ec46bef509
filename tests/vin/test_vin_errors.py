"""The error classes and problems."""

from __future__ import annotations

import pytest

import vin
from vin import (
    ERROR_CLASSES,
    CheckDigitMismatchError,
    InvalidCharacterError,
    InvalidModelYearError,
    LengthError,
    VINError,
    VINProblem,
)
from vin.errors import describe_character


def test_codes_are_stable() -> None:
    assert VINError.code == "invalid_vin"
    assert {cls.code: cls for cls in ERROR_CLASSES.values()} == {
        "length": LengthError,
        "invalid_character": InvalidCharacterError,
        "check_digit_mismatch": CheckDigitMismatchError,
        "invalid_model_year": InvalidModelYearError,
    }
    assert all(issubclass(cls, VINError) for cls in ERROR_CLASSES.values())
    assert issubclass(VINError, ValueError)


def test_error_defaults() -> None:
    error = VINError()
    assert str(error) == "invalid VIN"
    assert error.position is None
    assert error.errors == ()
    problem = VINProblem("length", None, "a VIN has 17 characters, this has 3")
    assert str(LengthError(errors=[problem])) == problem.message
    assert LengthError("custom", position=3).position == 3


def test_from_problems() -> None:
    problems = [
        VINProblem("invalid_character", 4, "position 4: 'O' is not allowed in a VIN"),
        VINProblem("check_digit_mismatch", 9, "check digit: expected '3', found '4'"),
        VINProblem("invalid_model_year", 10, "position 10: 'U' is not a model-year code"),
    ]
    error = VINError.from_problems(problems)
    assert type(error) is InvalidCharacterError
    assert error.position == 4
    assert error.errors == tuple(problems)
    assert str(error).endswith("(and 2 more problems)")
    one_more = VINError.from_problems(problems[1:])
    assert type(one_more) is CheckDigitMismatchError
    assert str(one_more).endswith("(and 1 more problem)")
    assert str(VINError.from_problems(problems[2:])) == problems[2].message
    unknown = VINError.from_problems([VINProblem("other", None, "other")])
    assert type(unknown) is VINError
    with pytest.raises(ValueError, match="at least one"):
        VINError.from_problems([])


def test_problem_to_dict() -> None:
    assert VINProblem("length", None, "m").to_dict() == {"code": "length", "message": "m"}
    assert VINProblem("invalid_character", 2, "m").to_dict() == {
        "code": "invalid_character",
        "position": 2,
        "message": "m",
    }


@pytest.mark.parametrize(
    ("char", "shown"),
    [("Q", "'Q'"), ("-", "'-'"), ("'", "U+0027"), ("\\", "U+005C"), ("\n", "U+000A"),
     ("\u00e9", "U+00E9"), (" ", "' '")],
)  # fmt: skip
def test_describe_character(char: str, shown: str) -> None:
    assert describe_character(char) == shown


def test_public_api() -> None:
    assert sorted(vin.__all__) == sorted(
        [
            "ERROR_CLASSES", "NOTES", "CheckDigitMismatchError", "CheckDigitVerdict",
            "DecodedVIN", "InvalidCharacterError", "InvalidModelYearError", "LengthError",
            "VINError", "VINProblem", "check_digit", "decode", "normalize", "parse",
        ]
    )  # fmt: skip
    assert all(hasattr(vin, name) for name in vin.__all__)
