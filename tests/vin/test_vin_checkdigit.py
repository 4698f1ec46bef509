"""The check digit on its own: the algorithm, the input rules and the policy verdicts."""

from __future__ import annotations

import pytest

from vin import CheckDigitVerdict, InvalidCharacterError, LengthError, VINError, check_digit
from vin.checkdigit import (
    ALPHABET,
    NOT_REQUIRED,
    REQUIRED,
    TRANSLITERATION,
    WEIGHTS,
    WHEN_PRESENT,
    check_digit_verdict,
    compute_check_digit,
    is_filler_vds,
)

# (VIN with position 9 as printed, expected digit, public source)
TABLE: list[tuple[str, str, str]] = [
    ("1M8GDM9AXKP042788", "X", "Wikipedia 'Vehicle identification number' worked example"),
    ("1HGCM82633A004352", "3", "cardog-ai/corgi tests (via vins-dev.json: the 2003 Accord)"),
    ("1HGCM82643A004352", "3", "cardog-ai/corgi tests: typo at position 9, expected 3"),
    ("5GZCZ43D13S812715", "1", "johndcook.com 'Computing VIN checksums' (2022); zint tests"),
    ("5GZCZ43D23S812715", "1", "zint backend tests: invalid check digit '2', expecting '1'"),
    ("11111111111111111", "1", "johndcook.com 'Computing VIN checksums': the all-ones VIN"),
    ("WBA71DC010CH14720", "1", "idlesign/vininfo tests/test_module.py (non-strict checksum)"),
    ("1FTMW1T88MFA00001", "8", "davidpeckham/vpic-api tests"),
    ("YT9NN1U14KA007175", "4", "davidpeckham/vin tests (Koenigsegg)"),
    ("8T6BS48F1B7170330", "8", "gpascual2/govincheck: printed 1, expected 8"),
    ("L5BGA2V58NG590409", "4", "DataDog dd-sensitive-data-scanner PR #391: printed 8"),
    ("WVWZZZ1KZ6W612305", "2", "sunrise-php/vin tests: European filler, printed Z"),
    ("1M8GDM9A_KP042788", "X", "Wikipedia: position 9 left blank before computing"),
    ("  1m8gdm9axkp042788\n", "X", "Wikipedia example, lower case with whitespace"),
]


@pytest.mark.parametrize(("vin", "digit", "source"), TABLE, ids=[row[0].strip() for row in TABLE])
def test_check_digit_table(vin: str, digit: str, source: str) -> None:
    assert check_digit(vin) == digit, source


def test_tables_are_the_published_ones() -> None:
    assert WEIGHTS == (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
    assert len(TRANSLITERATION) == 33
    assert set(TRANSLITERATION) == ALPHABET
    assert not {"I", "O", "Q"} & ALPHABET
    assert [TRANSLITERATION[c] for c in "AJ"] == [1, 1]
    assert [TRANSLITERATION[c] for c in "HNPRSZ"] == [8, 5, 7, 9, 2, 9]
    assert all(TRANSLITERATION[str(d)] == d for d in range(10))


@pytest.mark.parametrize(
    ("text", "error", "position"),
    [
        ("1M8GDM9AXKP04278", LengthError, None),
        ("", LengthError, None),
        ("1M8GDM9AXKP04278I", InvalidCharacterError, 17),
        ("OM8GDM9AXKP042788", InvalidCharacterError, 1),
        ("1M8GDM9AXKP0427-8", InvalidCharacterError, 16),
    ],
)
def test_check_digit_refuses_bad_input(text: str, error: type[VINError], position: int) -> None:
    with pytest.raises(error) as caught:
        check_digit(text)
    assert caught.value.position == position
    assert isinstance(caught.value, ValueError)


def test_check_digit_reports_every_problem() -> None:
    with pytest.raises(LengthError) as caught:
        check_digit("IOQ")
    assert [p.code for p in caught.value.errors] == ["length"] + ["invalid_character"] * 3
    assert "IOQ" not in str(caught.value)


def test_compute_returns_none_for_bad_weighted_character() -> None:
    assert compute_check_digit("1M8GDM9AXKP04278Q") is None
    assert compute_check_digit("1M8GDM9A?KP042788") == "X"


@pytest.mark.parametrize(
    ("vds", "filler"),
    [("ZZZ1KZ", True), ("KXXGCB", True), ("AE09W4", False), ("GDM9AX", False), ("Z1Z2Z3", False)],
)
def test_filler(vds: str, filler: bool) -> None:
    assert is_filler_vds(vds) is filler


# (VIN, policy, expected verdict)
VERDICTS: list[tuple[str, str, CheckDigitVerdict]] = [
    ("1M8GDM9AXKP042788", REQUIRED, CheckDigitVerdict(True, True, "X", "X")),
    ("1M8GDM9A1KP042788", REQUIRED, CheckDigitVerdict(True, False, "X", "1")),
    ("1M8GDM9A1KP042788", NOT_REQUIRED, CheckDigitVerdict(False, False, "X", "1")),
    ("1M8GDM9AXKP042788", NOT_REQUIRED, CheckDigitVerdict(False, True, "X", "X")),
    # when present: a digit at 9 without filler is checked
    ("JT2AE09W5P0038539", WHEN_PRESENT, CheckDigitVerdict(True, False, "4", "5")),
    ("JT2AE09W4P0038539", WHEN_PRESENT, CheckDigitVerdict(True, True, "4", "4")),
    ("JT2AE09WXP0038539", WHEN_PRESENT, CheckDigitVerdict(True, False, "4", "X")),
    # ... a letter at 9 is not a check digit
    ("JT2AE09WAP0038539", WHEN_PRESENT, CheckDigitVerdict(False, False, "4", "A")),
    # ... nor is a digit after filler
    ("JTZZZ09W5P0038539", WHEN_PRESENT, CheckDigitVerdict(False, False, "3", "5")),
    ("1M8GDM9AXKP04278Q", REQUIRED, CheckDigitVerdict(True, False, None, "X")),
]


@pytest.mark.parametrize(("vin", "policy", "verdict"), VERDICTS)
def test_verdict_policy_table(vin: str, policy: str, verdict: CheckDigitVerdict) -> None:
    assert check_digit_verdict(vin, policy) == verdict
    assert check_digit_verdict(vin, policy).to_dict() == {
        "required": verdict.required,
        "valid": verdict.valid,
        "expected": verdict.expected,
        "found": verdict.found,
    }
