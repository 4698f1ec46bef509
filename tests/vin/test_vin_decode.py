"""decode() and parse(): the rules, on small synthetic tables (see conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from vin import (
    CheckDigitMismatchError,
    DecodedVIN,
    InvalidCharacterError,
    InvalidModelYearError,
    LengthError,
    VINError,
    decode,
    normalize,
    parse,
)

from .conftest import REFERENCE_DATE, with_check_digit

Decode = Callable[..., DecodedVIN]

SPEC_KEYS = [
    "vin", "valid", "errors", "wmi", "vds", "vis", "manufacturer", "make", "make_candidates",
    "country", "country_code", "region", "model_year", "model_year_candidates", "plant_code",
    "serial_number", "check_digit",
]  # fmt: skip


def na(wmi: str = "1AA", pos7: str = "1", year: str = "A", vds_rest: str = "BCD") -> str:
    """A North American VIN with a correct check digit: WMI, VDS 4-8, year code at 10."""
    return with_check_digit(f"{wmi}{vds_rest[:3]}{pos7}Z0{year}P123456")


# --- normalization, input types, length --------------------------------------------------


def test_normalize() -> None:
    assert normalize("  1m8gdm9axkp042788\t") == "1M8GDM9AXKP042788"


@pytest.mark.parametrize(
    ("text", "notes"),
    [
        (" 1M8GDM9AXKP042788\n", ("normalized_whitespace",)),
        ("1m8gdm9axkp042788", ("normalized_case",)),
        ("\t1m8gdm9axkp042788 ", ("normalized_whitespace", "normalized_case")),
    ],
)
def test_normalization_is_a_note_not_an_error(text: str, notes: tuple[str, ...]) -> None:
    decoded = decode(text)
    assert decoded.vin == "1M8GDM9AXKP042788"
    assert decoded.valid
    assert decoded.notes[: len(notes)] == notes
    assert "normalized_whitespace" not in decode("1M8GDM9AXKP042788").notes


@pytest.mark.parametrize("text", [None, 17, b"1M8GDM9AXKP042788", ["1M8GDM9AXKP042788"], object()])
def test_not_text_never_raises(text: Any) -> None:
    decoded = decode(text)
    assert decoded.vin == ""
    assert not decoded.valid
    assert decoded.error_codes == ("length",)
    assert decoded.notes == ("not_text",)


@pytest.mark.parametrize("text", ["", "   ", "1M8GDM9AXKP04278", "1M8GDM9AXKP0427881"])
def test_wrong_length(text: str) -> None:
    decoded = decode(text)
    assert not decoded.valid
    assert decoded.errors[0].code == "length"
    assert decoded.errors[0].position is None
    assert str(len(text.strip())) in decoded.errors[0].message
    assert decoded.wmi is decoded.make is decoded.model_year is decoded.serial_number is None
    assert decoded.check_digit == (False, False, None, None)
    assert decoded.to_dict()["errors"][0] == {
        "code": "length",
        "message": decoded.errors[0].message,
    }
    assert decoded.year_code is None
    assert not decoded.is_small_manufacturer


def test_wrong_length_also_lists_bad_characters() -> None:
    decoded = decode("1HGC-82O")
    assert decoded.error_codes == ("length", "invalid_character", "invalid_character")
    assert [p.position for p in decoded.errors] == [None, 5, 8]


# --- invalid characters --------------------------------------------------------------------


def test_every_invalid_character_with_position_and_suggestion() -> None:
    decoded = decode("IHGCM82633AOO435Q")
    assert decoded.error_codes == ("invalid_character",) * 4
    assert [p.position for p in decoded.errors] == [1, 12, 13, 17]
    assert "did you mean '1'" in decoded.errors[0].message
    assert all("did you mean '0'" in p.message for p in decoded.errors[1:])
    assert decoded.to_dict()["errors"][0]["position"] == 1


def test_other_invalid_characters_have_no_suggestion_and_are_rendered_safely() -> None:
    decoded = decode("1HGCM8263\u00e9A-0'35\\")
    assert [p.position for p in decoded.errors] == [10, 12, 14, 17]
    messages = [p.message for p in decoded.errors]
    # é is not ASCII: refused by position, the character itself never rendered
    assert "U+" not in messages[0] and "ASCII" in messages[0]
    assert "'-'" in messages[1]
    assert "U+0027" in messages[2]
    assert "U+005C" in messages[3]
    assert not any("did you mean" in m for m in messages)


def test_bad_character_at_position_9_is_reported(synthetic: Decode) -> None:
    vin = na()
    decoded = synthetic(vin[:8] + "O" + vin[9:])
    assert decoded.error_codes == ("invalid_character", "check_digit_mismatch")
    assert decoded.make == "Carmake"


def test_seventeen_characters_with_bad_ones_still_decode(synthetic: Decode) -> None:
    vin = na(wmi="1AA", year="B")
    decoded = synthetic(vin[:12] + "Q" + vin[13:])
    assert decoded.error_codes == ("invalid_character",)
    assert decoded.errors[0].position == 13
    assert decoded.make == "Carmake"
    assert decoded.country_code == "US"
    assert decoded.model_year == 1981
    assert decoded.wmi == "1AA"
    assert decoded.check_digit.expected is None
    assert decoded.check_digit.required


def test_invalid_character_in_the_prefix(synthetic: Decode) -> None:
    decoded = synthetic("IAA" + na()[3:])
    assert decoded.error_codes[0] == "invalid_character"
    assert decoded.region is None
    assert decoded.country_code is None
    assert "unknown_wmi" in decoded.notes


# --- the decoded value object ----------------------------------------------------------------


def test_to_dict_has_exactly_the_spec_keys_in_order(synthetic: Decode) -> None:
    for text in (na(), "", "x" * 20):
        data = synthetic(text).to_dict()
        assert list(data) == SPEC_KEYS
        assert list(data["check_digit"]) == ["required", "valid", "expected", "found"]
        assert isinstance(data["make_candidates"], list)
        assert isinstance(data["model_year_candidates"], list)


def test_decoded_is_immutable_and_has_derived_properties(synthetic: Decode) -> None:
    decoded = synthetic(na(year="C"))
    with pytest.raises(AttributeError):
        decoded.make = "Other"  # type: ignore[misc]
    assert decoded.year_code == "C"
    assert not decoded.is_small_manufacturer
    assert decoded.error_codes == ()
    assert decoded.vds == decoded.vin[3:9]
    assert decoded.vis == decoded.vin[9:]
    assert decoded.plant_code == "P"
    assert decoded.serial_number == "123456"


# --- check digit -----------------------------------------------------------------------------


def test_north_american_check_digit_mismatch(synthetic: Decode) -> None:
    vin = na()
    wrong = "0" if vin[8] != "0" else "1"
    decoded = synthetic(vin[:8] + wrong + vin[9:])
    assert decoded.error_codes == ("check_digit_mismatch",)
    problem = decoded.errors[0]
    assert problem.position == 9
    assert f"expected '{vin[8]}'" in problem.message
    assert f"found '{wrong}'" in problem.message
    assert vin not in problem.message


def test_european_mismatch_is_a_note(synthetic: Decode) -> None:
    decoded = synthetic("WAAZZZ1KZ6W612305")
    assert decoded.valid
    assert decoded.check_digit.required is False
    assert decoded.check_digit.valid is False
    assert "check_digit_not_used" in decoded.notes
    assert decoded.region == "Europe"
    assert decoded.model_year_candidates == (2006,)


def test_country_override_sets_country_and_policy(synthetic: Decode) -> None:
    decoded = synthetic("JADAE09W5P0038539")
    assert (decoded.country_code, decoded.country, decoded.region) == ("DE", "Germany", "Asia")
    assert decoded.valid  # DE: check digit not required
    assert decoded.check_digit.required is False


def test_unknown_policy_falls_back_to_when_present(synthetic: Decode) -> None:
    decoded = synthetic("JBAAE09W5P0038539")
    assert decoded.country_code == "KP"
    assert decoded.country is None  # no name in the table
    assert decoded.check_digit.required
    assert decoded.error_codes == ("check_digit_mismatch",)


def test_unknown_prefix(synthetic: Decode) -> None:
    decoded = synthetic(na(wmi="1ZZ"))
    assert decoded.valid
    assert decoded.manufacturer is decoded.make is decoded.country_code is None
    assert decoded.region == "North America"
    assert decoded.notes == ("unknown_wmi",)


# --- model year ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wmi", "pos7", "year", "expected"),
    [
        ("1AA", "1", "A", (1980,)),  # car, numeric: 1980-2009 only
        ("1AA", "K", "A", (2010,)),  # car, alphabetic: 2010-2039 only
        ("1AB", "1", "A", (1980, 2010)),  # truck: the other year is kept last
        ("1AB", "K", "A", (2010, 1980)),
        ("1ZZ", "1", "B", (1981, 2011)),  # unknown WMI: vehicle type unknown, keep the other
        ("1AA", "K", "Y", (2000,)),  # rule's year (2030) is in the future: rule cannot help
        ("1AA", "1", "9", (2009,)),
        ("1AA", "K", "9", (2009,)),
    ],
)
def test_position_7_rule_in_north_america(
    synthetic: Decode, wmi: str, pos7: str, year: str, expected: tuple[int, ...]
) -> None:
    decoded = synthetic(na(wmi=wmi, pos7=pos7, year=year))
    assert decoded.model_year_candidates == expected
    assert decoded.model_year == expected[0]


def test_position_7_rule_elsewhere_needs_a_required_and_valid_check_digit(
    synthetic: Decode,
) -> None:
    valid = with_check_digit("JAAAE09W0P0038539")
    assert synthetic(valid).model_year_candidates == (1993,)  # car, numeric position 7
    wrong = valid[:8] + ("1" if valid[8] != "1" else "2") + valid[9:]
    assert synthetic(wrong).model_year_candidates == (2023, 1993)
    assert synthetic(valid[:8] + "A" + valid[9:]).model_year_candidates == (2023, 1993)


def test_no_position_7_rule_in_china_or_europe(synthetic: Decode) -> None:
    china = synthetic(with_check_digit("LAAAE09W0P0038539"))
    assert china.valid
    assert china.model_year_candidates == (2023, 1993)
    europe = synthetic(with_check_digit("WAAAE09W0P0038539"))
    assert europe.model_year_candidates == (2023, 1993)


@pytest.mark.parametrize("code", ["U", "Z", "0"])
def test_invalid_model_year_where_position_10_must_be_a_year(synthetic: Decode, code: str) -> None:
    for vin in (na(year=code), with_check_digit(f"LAAAE09W0{code}0038539")):
        decoded = synthetic(vin)
        assert decoded.error_codes == ("invalid_model_year",)
        assert decoded.errors[0].position == 10
        assert decoded.model_year is None
        assert decoded.model_year_candidates == ()
    europe = synthetic(f"WAAZZZ1KZ{code}W612305")
    assert europe.valid
    assert europe.model_year is None
    japan = synthetic(with_check_digit(f"JAAAE09W0{code}0038539"))
    assert japan.valid


def test_year_at_10_never(synthetic: Decode) -> None:
    decoded = synthetic(na(wmi="1AN", year="0"))
    assert decoded.valid  # the data says position 10 is not a year here
    assert decoded.model_year is None
    assert "model_year_not_encoded" in decoded.notes
    assert synthetic(with_check_digit("JABAE09W0P0038539")).model_year_candidates == ()


def test_year_at_10_if_check_digit_valid(synthetic: Decode) -> None:
    valid = with_check_digit("JACAE09W0P0038539")
    assert synthetic(valid).model_year == 1993
    letter = synthetic(valid[:8] + "A" + valid[9:])
    assert letter.model_year is None
    assert "model_year_not_encoded" in letter.notes


def test_reference_date_bounds_the_candidates(synthetic: Decode) -> None:
    vin = na(wmi="1AB", pos7="1", year="Y")
    assert synthetic(vin, reference_date=date(1985, 1, 1)).model_year_candidates == ()
    assert synthetic(vin, reference_date=date(2029, 1, 1)).model_year_candidates == (2000, 2030)
    assert synthetic(vin, reference_date=REFERENCE_DATE).model_year_candidates == (2000,)


def test_default_reference_date_is_today(synthetic: Decode) -> None:
    vin = na(wmi="1AB", pos7="K", year="A")
    expected = synthetic(vin, reference_date=date.today()).model_year_candidates
    from vin import decode as plain_decode

    assert plain_decode(vin).model_year_candidates == expected


# --- WMI, make ------------------------------------------------------------------------------


def test_six_character_wmi(synthetic: Decode) -> None:
    decoded = synthetic(with_check_digit("1A9AAA1Z0AP123234"))
    assert decoded.wmi == "1A9123"
    assert decoded.is_small_manufacturer
    assert decoded.serial_number == "234"
    assert decoded.make == "Smallcar"
    assert decoded.notes == ("small_manufacturer",)


def test_six_character_wmi_falls_back_to_three(synthetic: Decode) -> None:
    decoded = synthetic(with_check_digit("1A9AAA1Z0AP999234"))
    assert decoded.wmi == "1A9999"
    assert decoded.make == "Smallgroup"
    assert decoded.notes == ("small_manufacturer", "small_manufacturer_fallback")


def test_six_character_wmi_unknown(synthetic: Decode) -> None:
    decoded = synthetic(with_check_digit("1B9AAA1Z0AP999234"))
    assert decoded.wmi == "1B9999"
    assert decoded.make is None
    assert decoded.notes == ("small_manufacturer", "unknown_wmi")


@pytest.mark.parametrize(
    ("wmi", "vds", "pos7", "year", "make", "candidates"),
    [
        ("1AC", "AXX", "1", "B", "Alpha", ()),
        ("1AC", "BXX", "K", "F", "Beta", ()),  # 2015: from 2010
        ("1AC", "BXX", "1", "F", "Gamma", ()),  # 1985: up to 2009
        ("1AC", "BXX", "1", "U", None, ("Beta", "Gamma")),  # no year: bounds ignored
        ("1AC", "CXX", "1", "B", None, ("Alpha", "Beta")),  # several makes
        ("1AC", "DXX", "1", "B", "Alpha", ()),
        ("1AC", "EXX", "1", "B", None, ("Alpha", "Beta", "Gamma")),  # none: the WMI's list
        ("1AD", "AXX", "1", "B", None, ("Alpha", "Beta")),
        ("1AE", "AXX", "1", "B", None, ("Xmake", "Ymake")),  # shared WMI without rules
        ("1AF", "AXX", "1", "B", None, ()),  # no make known at all
    ],
)
def test_make_disambiguation(
    synthetic: Decode,
    wmi: str,
    vds: str,
    pos7: str,
    year: str,
    make: str | None,
    candidates: tuple[str, ...],
) -> None:
    decoded = synthetic(na(wmi=wmi, vds_rest=vds, pos7=pos7, year=year))
    assert decoded.make == make
    assert decoded.make_candidates == candidates
    assert ("make_ambiguous" in decoded.notes) is bool(candidates)


# --- parse ----------------------------------------------------------------------------------


def test_parse_returns_valid(synthetic: Decode) -> None:
    vin = na()
    assert parse(vin, reference_date=REFERENCE_DATE) == synthetic(vin)


@pytest.mark.parametrize(
    ("text", "error", "count"),
    [
        ("1HGCM8263", LengthError, 1),
        ("1HGCM82633A00435Q", InvalidCharacterError, 1),
        ("1HGCM8263IAOO435Q", InvalidCharacterError, 4),
        ("1HGCM82643A004352", CheckDigitMismatchError, 1),
        ("1HGCM8264UA004352", CheckDigitMismatchError, 2),
    ],
)
def test_parse_raises_first_problem_with_all(text: str, error: type[VINError], count: int) -> None:
    with pytest.raises(error) as caught:
        parse(text)
    assert isinstance(caught.value, ValueError)
    assert len(caught.value.errors) == count
    assert caught.value.code == caught.value.errors[0].code
    assert text not in str(caught.value)
    assert text[:8] not in str(caught.value)


def test_parse_invalid_model_year(synthetic: Decode) -> None:
    with pytest.raises(InvalidModelYearError) as caught:
        parse(na(year="Z"))
    assert caught.value.position == 10


def test_today_is_refreshed_after_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    from .conftest import decode_module

    monkeypatch.setattr(decode_module, "_today_cache", [0.0, {}])  # stale: expired, empty
    vin = "1M8GDM9AXKP042788"
    assert decode(vin).model_year == 1989  # an empty table would give no year
    valid_until, table = decode_module._today_cache
    assert valid_until > __import__("time").time()
    assert table is decode_module._year_table(date.today().year)


@pytest.mark.parametrize(
    ("text", "notes"),
    [
        (
            " waazzz1kz6w612305",
            ("normalized_whitespace", "normalized_case", "check_digit_not_used"),
        ),
        (with_check_digit("1ACEXX1Z0BP123456").lower(), ("normalized_case", "make_ambiguous")),
        ("1ZZAAA1Z0BP123456".lower(), ("normalized_case", "unknown_wmi")),
        ("1a9aaa1z0ap123234", ("normalized_case", "small_manufacturer")),
        (
            with_check_digit("JABAE09W0P0038539").lower(),
            ("normalized_case", "model_year_not_encoded"),
        ),
    ],
)
def test_notes_accumulate_in_order(synthetic: Decode, text: str, notes: tuple[str, ...]) -> None:
    assert synthetic(text).notes == notes
