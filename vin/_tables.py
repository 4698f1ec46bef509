"""The data tables, loaded once at import time and turned into fast lookup structures.

The JSON files under ``vin/_data/`` are described in docs/vin-library.md. Everything that can
be worked out ahead of a decode is worked out here: the origin of every two-character prefix
(country, region, check-digit policy, model-year regime), the origin of every WMI with a
country override, the model-year candidates per year code, and the compiled VDS regexes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any, NamedTuple

from .checkdigit import ALPHABET, NOT_REQUIRED, POLICIES, REQUIRED, WHEN_PRESENT

__all__ = [
    "CAR_LIKE",
    "WMI",
    "YEAR_CODES",
    "Origin",
    "Tables",
    "VdsRule",
    "WmiInfo",
    "load_tables",
    "origin_for",
    "year_table",
]

#: Model-year regimes of an origin (what position 10 means and which rules apply).
NORTH_AMERICA = "north_america"  # 49 CFR 565: year required, position-7 rule
CHINA = "china"  # GB 16735: year required, no position-7 rule
EUROPE = "europe"  # year optional, no position-7 rule
OTHER = "other"  # position-7 rule only when a required check digit validates

_NA_FIRST = frozenset("12345")
_EU_FIRST = frozenset("STUVWXYZ")

#: Vehicle types the 49 CFR 565.15(b) position-7 rule is written for.
CAR_LIKE: frozenset[str] = frozenset({"car", "mpv", "light_truck"})

#: Position 10 codes in cycle order: A=1980 ... Y=2000, 1=2001 ... 9=2009, then again from 2010.
YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"
_YEAR_BASE: dict[str, int] = {code: 1980 + i for i, code in enumerate(YEAR_CODES)}

#: ``year_at_10`` values.
ALWAYS = "always"
NEVER = "never"
IF_CHECK_DIGIT_VALID = "if_check_digit_valid"


class Origin(NamedTuple):
    """Where a VIN comes from, as far as positions 1-2 (and a WMI override) tell."""

    country_code: str | None
    country: str | None
    region: str | None
    policy: str  # check-digit policy
    regime: str  # model-year regime


class VdsRule(NamedTuple):
    """One ``vds_makes.json`` rule: ``pattern`` matched against positions 4-8."""

    pattern: re.Pattern[str]
    year_from: int | None
    year_to: int | None
    make: str


class WmiInfo(NamedTuple):
    """One ``wmi.json`` row, with its origin and its VDS rules attached."""

    manufacturer: str | None
    make: str | None
    make_candidates: tuple[str, ...]
    vehicle_type: str | None
    year_at_10: str  # ALWAYS (also for null), NEVER or IF_CHECK_DIGIT_VALID
    source: str | None
    car_like: bool
    origin: Origin
    rules: tuple[VdsRule, ...]


class Tables(NamedTuple):
    """All lookup structures."""

    regions: dict[str, str]
    names: dict[str, str]
    prefixes: dict[str, str]
    policies: dict[str, str]
    origins: dict[str, Origin]  # every two-character prefix of alphabet characters
    wmi: dict[str, WmiInfo]


_POLICY_CONSTANTS = {policy: policy for policy in POLICIES}


def origin_for(
    prefix: str,
    country_code: str | None,
    regions: Mapping[str, str],
    names: Mapping[str, str],
    policies: Mapping[str, str],
) -> Origin:
    """The origin of a VIN starting with ``prefix`` whose country is ``country_code``."""
    first = prefix[:1]
    if first in _NA_FIRST:
        policy, regime = REQUIRED, NORTH_AMERICA
    else:
        policy = _POLICY_CONSTANTS.get(policies.get(country_code or "", ""), "")
        if not policy:
            policy = NOT_REQUIRED if first in _EU_FIRST else WHEN_PRESENT
        if country_code == "CN":
            regime = CHINA
        elif first in _EU_FIRST:
            regime = EUROPE
        else:
            regime = OTHER
    country = names.get(country_code) if country_code else None
    return Origin(country_code, country, regions.get(first), policy, regime)


_YEAR_AT_10 = {NEVER: NEVER, IF_CHECK_DIGIT_VALID: IF_CHECK_DIGIT_VALID}


def _year_at_10(value: Any) -> str:
    """The interned constant (decode compares with ``is``); null and unknown mean always."""
    return _YEAR_AT_10.get(value, ALWAYS) if isinstance(value, str) else ALWAYS


def _int_or_none(value: Any) -> int | None:
    return int(value) if value is not None else None


def build_tables(
    countries: Mapping[str, Any], wmi: Mapping[str, Any], vds_makes: Mapping[str, Any]
) -> Tables:
    """Turn the three JSON documents into :class:`Tables`."""
    regions: dict[str, str] = dict(countries.get("regions") or {})
    names: dict[str, str] = dict(countries.get("names") or {})
    prefixes: dict[str, str] = dict(countries.get("prefixes") or {})
    policies: dict[str, str] = dict(countries.get("check_digit") or {})

    origins: dict[str, Origin] = {}
    for a in sorted(ALPHABET):
        for b in sorted(ALPHABET):
            prefix = a + b
            origins[prefix] = origin_for(prefix, prefixes.get(prefix), regions, names, policies)

    rules: dict[str, list[VdsRule]] = {}
    for key, rows in (vds_makes.get("rules") or {}).items():
        rules[key] = [
            VdsRule(re.compile(row[0]), _int_or_none(row[1]), _int_or_none(row[2]), row[3])
            for row in rows
        ]

    columns: list[str] = list(wmi.get("columns") or [])
    index = {name: i for i, name in enumerate(columns)}

    def column(row: list[Any], name: str) -> Any:
        i = index.get(name)
        return row[i] if i is not None and i < len(row) else None

    table: dict[str, WmiInfo] = {}
    for key, row in (wmi.get("wmi") or {}).items():
        override = column(row, "country_code")
        if override:
            origin = origin_for(key[:2], override, regions, names, policies)
        else:
            origin = origins.get(key[:2]) or origin_for(
                key[:2], prefixes.get(key[:2]), regions, names, policies
            )
        make = column(row, "make") or None
        candidates: Iterable[str] = () if make else (column(row, "make_candidates") or ())
        vehicle_type = column(row, "vehicle_type") or None
        table[key] = WmiInfo(
            manufacturer=column(row, "manufacturer") or None,
            make=make,
            make_candidates=tuple(candidates),
            vehicle_type=vehicle_type,
            year_at_10=_year_at_10(column(row, "year_at_10")),
            source=column(row, "source") or None,
            car_like=vehicle_type in CAR_LIKE,
            origin=origin,
            rules=tuple(rules.get(key, ())),
        )
    return Tables(regions, names, prefixes, policies, origins, table)


def _read(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath("_data", name).read_text("utf-8"))


def load_tables() -> Tables:
    """Read ``vin/_data/*.json`` and build the tables."""
    return build_tables(_read("countries.json"), _read("wmi.json"), _read("vds_makes.json"))


class YearEntry(NamedTuple):
    """Model-year candidates for one position-10 code, under the three rankings."""

    plain: tuple[int, ...]  # most recent first
    numeric: tuple[int, ...]  # position 7 numeric: 1980-2009 first, the rest after
    alphabetic: tuple[int, ...]  # position 7 alphabetic: 2010-2039 first, the rest after
    numeric_car: tuple[int, ...]  # the same, car/MPV/light truck: only the rule's year
    alphabetic_car: tuple[int, ...]


def _rank(plain: tuple[int, ...], low: int, high: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    preferred = [y for y in plain if low <= y <= high]
    if not preferred:  # the rule's year is out of range: the rule cannot help
        return plain, plain
    rest = [y for y in plain if not low <= y <= high]
    return tuple(preferred + rest), tuple(preferred)


def _build_year_table(reference_year: int) -> dict[str, YearEntry]:
    last = reference_year + 1
    table: dict[str, YearEntry] = {}
    for code, base in _YEAR_BASE.items():
        plain = tuple(range(base, last + 1, 30))[::-1]
        numeric, numeric_car = _rank(plain, 1980, 2009)
        alphabetic, alphabetic_car = _rank(plain, 2010, 2039)
        table[code] = YearEntry(plain, numeric, alphabetic, numeric_car, alphabetic_car)
    return table


_YEAR_TABLES: dict[int, dict[str, YearEntry]] = {}


def year_table(reference_year: int) -> dict[str, YearEntry]:
    """Model-year candidates per position-10 code for a reference year (memoized per year)."""
    table = _YEAR_TABLES.get(reference_year)
    if table is None:
        table = _YEAR_TABLES[reference_year] = _build_year_table(reference_year)
    return table


TABLES = load_tables()
WMI = TABLES.wmi
ORIGINS = TABLES.origins
