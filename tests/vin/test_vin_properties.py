"""Hypothesis properties of the check digit, the decoder and the CLI."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from vin import check_digit, decode
from vin.checkdigit import ALPHABET, TRANSLITERATION, WEIGHTS, check_digit_verdict
from vin.cli import main

VIN_CHARS = "".join(sorted(ALPHABET))
vin17 = st.text(alphabet=VIN_CHARS, min_size=17, max_size=17)
#: North American VINs (position 1 is 1-5).
na_vin17 = st.builds(lambda first, rest: first + rest, st.sampled_from("12345"),
                     st.text(alphabet=VIN_CHARS, min_size=16, max_size=16))  # fmt: skip


@given(vin17)
def test_a_computed_check_digit_always_validates(text: str) -> None:
    vin = text[:8] + check_digit(text) + text[9:]
    assert check_digit(vin) == vin[8]
    assert check_digit_verdict(vin, "required").valid
    decoded = decode(vin)
    assert decoded.check_digit.valid
    assert "check_digit_mismatch" not in decoded.error_codes


WEIGHTED = [i for i, weight in enumerate(WEIGHTS) if weight]


@given(na_vin17, st.data())
def test_one_changed_character_is_caught(text: str, data: st.DataObject) -> None:
    vin = text[:8] + check_digit(text) + text[9:]
    index = data.draw(st.sampled_from(WEIGHTED))
    # position 1 stays North American; any other weighted position takes any character
    # whose transliteration value differs
    pool = "12345" if index == 0 else VIN_CHARS
    new = data.draw(
        st.sampled_from([c for c in pool if TRANSLITERATION[c] != TRANSLITERATION[vin[index]]])
    )
    changed = vin[:index] + new + vin[index + 1 :]
    decoded = decode(changed)
    assert decoded.check_digit.required
    assert not decoded.check_digit.valid
    assert "check_digit_mismatch" in decoded.error_codes
    assert not decoded.valid


@given(st.text())
def test_decode_never_raises_on_text(text: str) -> None:
    decoded = decode(text)
    assert decoded.valid is (not decoded.errors)
    assert list(decoded.to_dict())[:2] == ["vin", "valid"]
    json.dumps(decoded.to_dict())


@given(st.text(alphabet=VIN_CHARS + "IOQ io-é \t", min_size=15, max_size=19))
def test_decode_never_raises_near_vins(text: str) -> None:
    decoded = decode(text)
    if len(decoded.vin) == 17:
        assert decoded.wmi is not None
    else:
        assert decoded.error_codes[0] == "length"


@settings(max_examples=50)
@given(st.lists(st.text().map(lambda s: s.replace("\n", "").replace("\r", "")), max_size=8))
def test_cli_json_one_line_per_input_line(lines: list[str]) -> None:
    stdin = io.StringIO("".join(line + "\n" for line in lines))
    stdout = io.StringIO()
    main(["decode", "--json"], stdin=stdin, stdout=stdout, stderr=io.StringIO())
    out = stdout.getvalue().split("\n")
    assert out[-1] == ""
    rows = [json.loads(line) for line in out[:-1]]
    assert len(rows) == len(lines)
    assert [row["vin"] for row in rows] == [decode(line).vin for line in lines]


def _policy_of(vin: str) -> str:
    """The check-digit policy decode() applies (WMI origin, else the prefix's)."""
    from vin import _tables

    info = _tables.WMI.get(vin[:3] + vin[11:14]) if vin[2] == "9" else None
    info = info or _tables.WMI.get(vin[:3])
    return info.origin.policy if info else _tables.ORIGINS[vin[:2]].policy


@given(
    st.text(alphabet=VIN_CHARS, min_size=2, max_size=2),
    st.text(alphabet=VIN_CHARS + "IOQ", min_size=15, max_size=15),
)
def test_decode_agrees_with_the_verdict_function(prefix: str, rest: str) -> None:
    vin = prefix + rest
    assert decode(vin).check_digit == check_digit_verdict(vin, _policy_of(vin))


@given(st.text(alphabet=VIN_CHARS + "IOQé-", min_size=17, max_size=17))
def test_fast_check_digit_matches_the_published_formula(text: str) -> None:
    """compute_check_digit's bytes fast path agrees with Tables IV and V, applied by hand."""
    from vin.checkdigit import compute_check_digit

    try:
        total = sum(TRANSLITERATION[c] * w for c, w in zip(text, WEIGHTS, strict=True) if w)
    except KeyError:
        assert compute_check_digit(text) is None
    else:
        assert compute_check_digit(text) == "0123456789X"[total % 11]
        assert decode(text).check_digit.expected == "0123456789X"[total % 11]
