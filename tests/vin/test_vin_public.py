"""Table-driven tests from public VINs. Every row names the public source it comes from."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pytest

from tests.testdata import VINS_DEV, load_json, missing
from vin import check_digit, decode

from .conftest import REFERENCE_DATE


class Public(NamedTuple):
    vin: str
    make: str
    year: int
    country_code: str
    source: str


LIBVIN = "python-libvin tests/__init__.py"
PYVIN = "arpuffer/pyvin tests/vin_samples.py"

PUBLIC: list[Public] = [
    Public("137ZA903X1E412677", "Hummer", 2001, "US", f"{LIBVIN} (vindecoder.net)"),
    Public("19XFC1F7XGE028370", "Honda", 2016, "US", f"{LIBVIN} (fueleconomy.gov 37075)"),
    Public("1C4RJEAG2EC476429", "Jeep", 2014, "US", f"{LIBVIN} (vindecoder.net)"),
    Public("1GNKRHKD2GJ223195", "Chevrolet", 2016, "US", f"{LIBVIN} (fueleconomy.gov 36354)"),
    Public("19UUA65694A043249", "Acura", 2004, "US", f"{LIBVIN} (acurazine.com)"),
    Public("1FAHP3FN8AW139719", "Ford", 2010, "US", f"{LIBVIN} (vindecoder.net)"),
    Public("1GKEV13728J123735", "GMC", 2008, "US", f"{LIBVIN} (vindecoder.net)"),
    Public("1GYFC56299R410242", "Cadillac", 2009, "US", f"{LIBVIN} (fueleconomy.gov)"),
    Public("1YVHZ8DH0C5M33844", "Mazda", 2012, "US", f"{LIBVIN} (vPIC decodevinvalues)"),
    Public("2A4GM684X6R632476", "Chrysler", 2006, "CA", f"{LIBVIN} (vindecoder.net)"),
    Public("2B3KA43G27H825762", "Dodge", 2007, "CA", f"{LIBVIN} (vindecoder.net)"),
    Public("2HNYD18975H033218", "Acura", 2005, "CA", f"{LIBVIN} (acurazine.com)"),
    Public("2LMHJ5AT9CB565906", "Lincoln", 2012, "CA", f"{LIBVIN} (vindecoder.net)"),
    Public("2T2BGMCA0GC004299", "Lexus", 2016, "CA", f"{LIBVIN} (vPIC decodevinvalues)"),
    Public("3CZRU5H35GM739695", "Honda", 2016, "MX", f"{LIBVIN} (vPIC decodevinvalues)"),
    Public("3GYVKMEF5AG416315", "Cadillac", 2010, "MX", f"{LIBVIN} (vindecoder.net)"),
    Public("3TMCZ5AN2GM040551", "Toyota", 2016, "MX", f"{LIBVIN} (vPIC decodevinvalues)"),
    Public("4JGDA6DB9GA764832", "Mercedes-Benz", 2016, "US", f"{LIBVIN} (vPIC decodevinvalues)"),
    Public("4S3BNAH62G3049699", "Subaru", 2016, "US", f"{LIBVIN} (fueleconomy.gov 36406)"),
    Public("5FRYD3H26GB020813", "Acura", 2016, "US", f"{LIBVIN} (vindecoder.net)"),
    Public("5N1CR2MN6EC875492", "Nissan", 2014, "US", f"{LIBVIN} (vindecoder.net)"),
    Public("5UXXW5C54F0791433", "BMW", 2015, "US", f"{LIBVIN} (vPIC BMW MY2015 decipherment)"),
    Public("5XXGM4A7XFG459047", "Kia", 2015, "US", f"{LIBVIN} (fueleconomy.gov 34949)"),
    Public("5YFBURHE9FP280940", "Toyota", 2015, "US", f"{LIBVIN} (fueleconomy.gov 35500)"),
    Public("JA4AD2A3XEZ426420", "Mitsubishi", 2014, "JP", f"{LIBVIN} (mitsubishicars.com)"),
    Public("JH4CW2H53BC567925", "Acura", 2011, "JP", f"{LIBVIN} (vindecoder.net)"),
    Public("JM1BL1SF3A1267720", "Mazda", 2010, "JP", f"{LIBVIN} (vindecoder.net)"),
    Public("JTHBW1GG7D2369737", "Lexus", 2013, "JP", f"{LIBVIN} (clublexus.com)"),
    Public("JTJHY7AX4D4667505", "Lexus", 2013, "JP", f"{LIBVIN} (vindecoder.net)"),
    Public("JN8BS1MW7EM920252", "Infiniti", 2014, "JP", f"{LIBVIN} (vindecoder.net)"),
    Public("SCFAD01A65G199359", "Aston Martin", 2005, "GB", f"{LIBVIN} (fueleconomy.gov)"),
    Public("WA1EY74LX9D205644", "Audi", 2009, "DE", f"{LIBVIN} (vindecoder.eu)"),
    Public("WBSWL9C54AP786013", "BMW", 2010, "DE", f"{LIBVIN} (vindecoder.net)"),
    Public("WDDNG7BB4AA522219", "Mercedes-Benz", 2010, "DE", f"{LIBVIN} (NHTSA ORG4488.pdf)"),
    Public("KMHD35LH5EU205042", "Hyundai", 2014, "KR", f"{PYVIN}: 2014 HYUNDAI ELANTRA"),
    Public("1M8GDM9AXKP042788", "MCI", 1989, "US", "Wikipedia 'Vehicle identification number'"
           " check-digit example; idlesign/vininfo tests/test_module.py"),
]  # fmt: skip


@pytest.mark.parametrize("row", PUBLIC, ids=[row.vin for row in PUBLIC])
def test_public_vin_decodes(row: Public) -> None:
    decoded = decode(row.vin, reference_date=REFERENCE_DATE)
    assert decoded.valid, decoded.errors
    assert decoded.check_digit.expected == row.vin[8]
    assert decoded.country_code == row.country_code
    assert decoded.model_year == row.year
    if row.make != "MCI":  # a bus maker: the brand name varies between sources
        # the spec: ``make`` is null when the VIN alone cannot tell, and then the right make
        # must be among ``make_candidates``
        assert decoded.make == row.make or (
            decoded.make is None and row.make in decoded.make_candidates
        )


#: Public VINs with a known-good check digit (so the digit at position 9 is the answer).
CHECK_DIGITS: list[tuple[str, str]] = [
    ("1M8GDM9AXKP042788", "Wikipedia 'Vehicle identification number', check-digit example"),
    ("5GZCZ43D13S812715", "johndcook.com 'Computing VIN checksums' (2022-09-04)"),
    ("JT2AE09W4P0038539", PYVIN),
    ("KMHD35LH5EU205042", PYVIN),
    ("2D4FV48V05H529506", PYVIN),
    ("1G3HN52K0W4818670", PYVIN),
    ("1NPTXUEXX8N766170", PYVIN),
    ("1FVACWCT67HY22127", PYVIN),
    ("JTHFE2C24A2504933", PYVIN),
    ("WDBEA30D3HA391172", PYVIN),
    ("1GKLVNED8AJ200101", PYVIN),
    ("1GCFK29K0SE179442", PYVIN),
    ("JKBVNKD167A013982", PYVIN),
    ("KMHDU4ADXAU832403", PYVIN),
    ("2B4FK55J9KR146695", PYVIN),
    ("JH4DA3450HS011682", PYVIN),
    ("JH4DA9350MS000938", PYVIN),
    ("1J4FA29P4YP728937", PYVIN),
    ("1GB0C4EGXGZ280783", LIBVIN),
    ("5GNRNGEE9A8215904", LIBVIN),
]


@pytest.mark.parametrize(("vin", "source"), CHECK_DIGITS, ids=[v for v, _ in CHECK_DIGITS])
def test_public_check_digit(vin: str, source: str) -> None:
    assert check_digit(vin) == vin[8], source
    assert decode(vin).check_digit.valid


def test_public_vin_with_bad_check_digit() -> None:
    """arpuffer/pyvin tests/vin_samples.py: INVALID = 1993 Toyota Corolla with a bad digit."""
    decoded = decode("JT2AE09W5P0038539", reference_date=REFERENCE_DATE)
    assert not decoded.valid
    assert decoded.error_codes == ("check_digit_mismatch",)
    assert decoded.errors[0].position == 9
    assert decoded.check_digit == (True, False, "4", "5")


def test_european_mercedes_year_is_not_claimed() -> None:
    """idlesign/vininfo issue #9 (via vins-dev.json): WDD2470031J059461 is a 2021 car; a
    European Mercedes-Benz VIN does not encode the year at position 10, so 2001 is wrong."""
    decoded = decode("WDD2470031J059461", reference_date=REFERENCE_DATE)
    assert decoded.valid
    assert decoded.model_year != 2001


def _dev_rows() -> list[dict[str, Any] | None]:
    """The rows of tests/data/vins-dev.json, or one ``None`` when the file is missing: then the
    parametrized test below runs once and FAILS (an empty parametrization would only skip)."""
    if not VINS_DEV.is_file():
        return [None]
    rows: list[dict[str, Any] | None] = json.loads(VINS_DEV.read_text("utf-8"))["vins"]
    return rows


DEV_ROWS = _dev_rows()


def test_dev_corpus_is_there() -> None:
    """The in-repo corpus exists and has rows (a missing file fails, never skips)."""
    rows = load_json(VINS_DEV)["vins"]
    assert len(rows) >= 20, f"{VINS_DEV.name} has only {len(rows)} rows"


@pytest.mark.parametrize(
    "row", DEV_ROWS, ids=[row["vin"] if row else "vins-dev.json-missing" for row in DEV_ROWS]
)
def test_dev_corpus(row: dict[str, Any] | None) -> None:
    if row is None:
        pytest.fail(missing(VINS_DEV), pytrace=False)
    assert row["src"], "every row names its public source"
    decoded = decode(row["vin"], reference_date=REFERENCE_DATE)
    if "make" in row:
        assert decoded.make == row["make"]
    if "year" in row:
        assert decoded.model_year == row["year"]
    if "country_code" in row:
        assert decoded.country_code == row["country_code"]
    if "wmi" in row:
        assert decoded.wmi == row["wmi"]
    assert decoded.valid is row.get("valid", True)
    if "check_digit_required" in row:
        assert decoded.check_digit.required is row["check_digit_required"]
    if "error" in row:
        assert row["error"] in decoded.error_codes
        problem = decoded.errors[decoded.error_codes.index(row["error"])]
        assert problem.position == row.get("position", problem.position)
    if "expected_check_digit" in row:
        assert decoded.check_digit.expected == row["expected_check_digit"]
    if "check_digit_computed" in row:
        assert check_digit(row["vin"]) == row["check_digit_computed"]
        assert decoded.check_digit.expected == row["check_digit_computed"]
