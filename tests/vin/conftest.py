"""Shared fixtures of the ``vin`` library tests (plain pytest, no web imports)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest

import vin.decode
from vin import _tables

#: The module (``vin.decode`` the attribute is the function it defines).
decode_module = sys.modules["vin.decode"]

#: Every test that looks at model years decodes as of this date (candidates up to 2025).
REFERENCE_DATE = date(2024, 6, 1)

COLUMNS = [
    "manufacturer",
    "make",
    "make_candidates",
    "vehicle_type",
    "country_code",
    "year_at_10",
    "source",
]

SYNTHETIC_COUNTRIES: dict[str, Any] = {
    "sources": ["test"],
    "regions": {
        "1": "North America",
        "J": "Asia",
        "L": "Asia",
        "W": "Europe",
        "9": "South America",
    },
    "prefixes": {"1A": "US", "JA": "JP", "LA": "CN", "WA": "DE", "9A": "BR", "JB": "KP"},
    "names": {"US": "United States", "JP": "Japan", "CN": "China", "DE": "Germany"},
    "check_digit": {"US": "required", "CN": "required", "DE": "not_required", "KP": "bogus"},
}


def wmi_row(
    manufacturer: str | None = "Maker",
    make: str | None = "Make",
    candidates: list[str] | None = None,
    vehicle_type: str | None = "car",
    country_code: str | None = None,
    year_at_10: str | None = None,
) -> list[Any]:
    return [manufacturer, make, candidates or [], vehicle_type, country_code, year_at_10, "test"]


SYNTHETIC_WMI: dict[str, Any] = {
    "sources": ["test"],
    "columns": COLUMNS,
    "wmi": {
        "1AA": wmi_row(make="Carmake", vehicle_type="car"),
        "1AB": wmi_row(make="Truckmake", vehicle_type="truck"),
        "1AC": wmi_row(make=None, candidates=["Alpha", "Beta", "Gamma"], vehicle_type=None),
        "1AD": wmi_row(make=None, candidates=["Alpha", "Beta"]),
        "1A9": wmi_row(make="Smallgroup"),
        "1A9123": wmi_row(make="Smallcar"),
        "JAA": wmi_row(make="Japanmake"),
        "JAB": wmi_row(make="Nevermake", year_at_10="never"),
        "JAC": wmi_row(make="Checkmake", year_at_10="if_check_digit_valid"),
        "JAD": wmi_row(make="Elsewhere", country_code="DE"),
        "LAA": wmi_row(make="Chinamake"),
        "WAA": wmi_row(make="Euromake"),
        "1AN": wmi_row(make="Nayear", year_at_10="never"),
        "1AE": wmi_row(make=None, candidates=["Xmake", "Ymake"]),
        "1AF": wmi_row(manufacturer=None, make=None, vehicle_type=None),
    },
}

SYNTHETIC_VDS: dict[str, Any] = {
    "sources": ["test"],
    "rules": {
        "1AC": [
            ["A", None, None, "Alpha"],
            ["B", 2010, None, "Beta"],
            ["B", None, 2009, "Gamma"],
            ["C", None, None, "Alpha"],
            ["C", None, None, "Beta"],
            ["[CD]", None, None, "Alpha"],
        ],
        "1AD": [["Z", None, None, "Alpha"]],
    },
}


@pytest.fixture
def synthetic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Swap the decoder's tables for the small synthetic ones above; yields ``decode``."""
    tables = _tables.build_tables(SYNTHETIC_COUNTRIES, SYNTHETIC_WMI, SYNTHETIC_VDS)
    monkeypatch.setattr(_tables, "TABLES", tables)
    monkeypatch.setattr(decode_module, "_WMI", tables.wmi)
    monkeypatch.setattr(decode_module, "_ORIGINS", tables.origins)

    def run(text: object, reference_date: date = REFERENCE_DATE) -> vin.DecodedVIN:
        return decode_module.decode(text, reference_date=reference_date)

    yield run


def with_check_digit(vin17: str) -> str:
    """``vin17`` with its computed check digit at position 9."""
    from vin import check_digit

    return vin17[:8] + check_digit(vin17) + vin17[9:]
