"""A VIN is ASCII before anything else: no Unicode case mapping turns one VIN into another.

``str.upper()`` maps U+017F (long s) to ``S``, U+0131 (dotless i) to ``I``, U+FB00 (the ``ff``
ligature) to two letters; ``str.strip()`` removes U+00A0, U+3000 and U+001C-U+001F. So
``normalize`` checks that the trimmed text is printable ASCII first, and ``decode`` upper-cases
ASCII letters only: both report any other character as ``invalid_character`` by its position,
without showing it.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vin import InvalidCharacterError, VINError, decode, normalize
from vin.checkdigit import ALPHABET
from vin.cli import main

VALID = "JH4DC4340RS003205"  # a valid Acura VIN with an S at position 11
LONG_S = VALID[:10] + "\u017f" + VALID[11:]  # "ſ".upper() == "S"

#: Look-alikes that Unicode case mapping turns into ASCII (or into something longer).
LOOKALIKES = [
    (LONG_S, 11),
    ("\u0131" + VALID[1:], 1),  # dotless i: upper() gives I
    (VALID[:16] + "\ufb00", 17),  # "ﬀ".upper() == "FF": one character becomes two
    ("\uff2a" + VALID[1:], 1),  # fullwidth J
    ("\uff4a" + VALID[1:], 1),  # fullwidth j: upper() gives the fullwidth J
    (VALID[:3] + "\u0441" + VALID[4:], 4),  # Cyrillic small es, looks like c
    (VALID[:5] + "\u212a" + VALID[6:], 6),  # the Kelvin sign, looks like K
    (VALID[:8] + "\u0660" + VALID[9:], 9),  # Arabic-Indic digit zero
]


@pytest.mark.parametrize(("text", "position"), LOOKALIKES)
def test_a_lookalike_is_an_invalid_character_not_another_vin(text: str, position: int) -> None:
    with pytest.raises(InvalidCharacterError) as caught:
        normalize(text)
    error = caught.value
    assert error.code == "invalid_character"
    assert error.position == position
    assert [(p.code, p.position) for p in error.errors] == [("invalid_character", position)]
    decoded = decode(text)
    assert not decoded.valid
    assert ("invalid_character", position) in [(p.code, p.position) for p in decoded.errors]
    assert decoded.vin != VALID
    for message in [error.message, *(p.message for p in decoded.errors)]:
        # neither the character nor its code point nor the VIN
        assert message.isascii()
        assert f"U+{ord(text[position - 1]):04X}" not in message
        assert VALID not in message


def test_the_long_s_vin_is_refused_where_it_used_to_decode_as_the_valid_one() -> None:
    assert decode(VALID).valid
    decoded = decode(LONG_S)
    assert decoded.vin == LONG_S  # nothing was case-mapped
    assert decoded.error_codes == ("invalid_character",)
    assert decoded.errors[0].position == 11
    assert decoded.errors[0].message == (
        "position 11: not a printable ASCII character (a VIN is ASCII letters and digits)"
    )


def test_only_ascii_whitespace_is_trimmed() -> None:
    assert normalize(" \t\n\r\x0b\x0c" + VALID.lower() + " \r\n") == VALID
    # printable ASCII outside the alphabet is left for decode to report (and show)
    assert normalize(" 1hgcm-82633a00435q ") == "1HGCM-82633A00435Q"
    assert normalize("") == ""
    for space in ["\u00a0", "\u3000", "\u2028", "\x1c", "\x1f", "\x85"]:
        # str.strip() would remove each of these; here they are characters of the text
        with pytest.raises(InvalidCharacterError) as caught:
            normalize(space + VALID)
        assert caught.value.position == 1
        assert decode(space + VALID).error_codes == ("length", "invalid_character")
        with pytest.raises(InvalidCharacterError) as caught:
            normalize(VALID + space + " ")
        assert caught.value.position == 18


def test_controls_inside_are_refused_with_every_position() -> None:
    text = "\t" + VALID[:4] + "\x00" + VALID[4:9] + "\t" + VALID[9:] + "\x7f "
    with pytest.raises(InvalidCharacterError) as caught:
        normalize(text)
    # trimmed text: the leading tab and trailing space are gone, so positions count from VALID
    assert [p.position for p in caught.value.errors] == [5, 11, 20]
    assert "(and 2 more problems)" in caught.value.message
    assert [p.position for p in decode(text).errors if p.position] == [5, 11, 20]


def test_the_cli_refuses_the_long_s_vin() -> None:
    stdout = io.StringIO()
    status = main(["decode", "--json", LONG_S], stdout=stdout, stderr=io.StringIO())
    assert status == 1
    assert '"valid":false' in stdout.getvalue()


VIN_CHARS = "".join(sorted(ALPHABET))
#: Near-VIN text mixing the alphabet with look-alikes, Unicode spaces and controls.
near_vin = st.text(
    alphabet=VIN_CHARS + "abcxyz \t\n\u017f\u0131\ufb00\uff21\u00a0\u3000\u2028\x00\x1c\x7f\x85é",
    max_size=20,
)


@given(st.one_of(st.text(), near_vin))
@example(LONG_S)
@example("\u00a0" + VALID)
@example(VALID + "\u3000")
def test_normalize_is_ascii_or_the_documented_error(text: str) -> None:
    try:
        normalized = normalize(text)
    except VINError as error:
        # the documented error: invalid_character, each position a character that is not
        # printable ASCII in the trimmed text, and nothing of the text in any message
        assert isinstance(error, InvalidCharacterError)
        trimmed = text.strip(" \t\n\r\x0b\x0c")
        assert error.errors
        assert error.position == error.errors[0].position
        for problem in error.errors:
            assert problem.code == "invalid_character"
            assert problem.position is not None
            assert not " " <= trimmed[problem.position - 1] <= "~"
            assert problem.message.isascii()
        assert not decode(text).valid
        assert set(error.errors) <= set(decode(text).errors)  # decode reports them the same way
        return
    assert normalized.isascii() and normalized.isprintable()
    assert text.strip().isascii()  # nothing but ASCII got through, whatever str.strip() removes
    assert normalize(normalized) == normalized
    # decoding is stable: the normalized text decodes as the raw one, and to itself
    assert decode(normalized).vin == normalized
    assert decode(normalized)[:-1] == decode(text)[:-1]  # everything but the notes


def test_check_digit_normalizes_like_decode() -> None:
    """``check_digit`` used to upper-case with ``str.upper``: U+017F computed S's digit."""
    from vin import check_digit

    assert check_digit(VALID.lower()) == VALID[8]
    with pytest.raises(InvalidCharacterError):
        check_digit(LONG_S)
