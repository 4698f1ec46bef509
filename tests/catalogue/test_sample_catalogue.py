"""Tests of the embedded SAMPLE parts catalogue (gateway/catalogue/sample.py + sample.sqlite)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.catalogue.sample import DEFAULT_PATH, SampleCatalogue

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "scripts" / "build_catalogue.py"
CATEGORY_IDS = [
    "brakes",
    "filters",
    "ignition",
    "suspension",
    "cooling",
    "electrical",
    "body",
    "engine",
    "steering",
    "exhaust",
]


@pytest.fixture(scope="module")
def cat() -> SampleCatalogue:
    return SampleCatalogue()


def features(vin: str, year: int | None, make: str | None = None) -> dict[str, Any]:
    """What the gateway passes: no serial number, computed here by plain slicing."""
    wmi = vin[:3] + vin[11:14] if vin[2] == "9" else vin[:3]
    return {
        "wmi": wmi,
        "vds": vin[3:8],
        "make": make,
        "make_candidates": [],
        "model_year": year,
        "model_year_candidates": [year] if year else [],
        "country_code": None,
        "plant_code": vin[10],
    }


# --- the file -------------------------------------------------------------------------------


def test_file_exists_and_is_marked_sample() -> None:
    assert DEFAULT_PATH.name == "sample.sqlite"
    assert DEFAULT_PATH.is_file()
    con = sqlite3.connect(f"file:{DEFAULT_PATH}?mode=ro", uri=True)
    meta = dict(con.execute("SELECT key, value FROM meta"))
    sources = dict(con.execute("SELECT ref, description FROM sources"))
    type_sources = {r[0] for r in con.execute("SELECT DISTINCT source FROM vehicle_types")}
    con.close()
    # every curated rule names its public source
    assert type_sources <= set(sources)
    assert all(sources.values())
    assert any(s.startswith("curated:") for s in type_sources)
    assert meta["sample"] == "true"
    assert "SAMPLE" in meta["notice"]
    assert "SYNTHETIC" in meta["notice"]
    assert "vPIC" in meta["vpic_source"]


def test_catalogue_size_and_coverage(cat: SampleCatalogue) -> None:
    assert DEFAULT_PATH.stat().st_size < 8_000_000
    makes = set(cat.meta["makes"].split(", "))
    for make in ["Toyota", "Honda", "Ford", "Volkswagen", "BMW", "Mercedes-Benz", "Audi",
                 "Skoda", "SEAT", "Renault", "Peugeot", "Fiat", "Lada", "Tesla", "Kia",
                 "Hyundai"]:  # fmt: skip
        assert make in makes
    assert int(cat.meta["count_vehicle_types"]) > 5000


def test_categories(cat: SampleCatalogue) -> None:
    cats = cat.categories()
    assert [c["id"] for c in cats] == CATEGORY_IDS
    assert {"id": "brakes", "name": "Brakes"} in cats
    assert all(c["name"] and c["name"][0].isupper() for c in cats)


# --- matching real public VINs ----------------------------------------------------------

# (VIN, model year given explicitly, expected make, text expected in the model, public source)
PUBLIC_VINS = [
    ("1HGCM82633A004352", 2003, "Honda", "Accord", "Wikipedia 'Vehicle identification number'"),
    (
        "1HGCM82643A004352",
        2003,
        "Honda",
        "Accord",
        "tests/data/vins-dev.json: cardog-ai/corgi tests",
    ),
    ("1FTMW1T88MFA00001", 2021, "Ford", "F-150", "vins-dev.json: davidpeckham/vpic-api tests"),
    ("JT2AE09W4P0038539", 1993, "Toyota", "Corolla", "vins-dev.json: arpuffer/pyvin tests"),
    ("2GCEC13C981202392", 2008, "Chevrolet", "Silverado", "vins-dev.json: h3/python-libvin tests"),
    ("TRUSC28N711268458", 2001, "Audi", "TT", "vins-dev.json: h3/python-libvin tests"),
    ("VNKJTUD36FA838549", 2015, "Toyota", "Yaris", "vins-dev.json: h3/python-libvin tests"),
    ("YV1902FH5D1796335", 2013, "Volvo", "S60", "vins-dev.json: h3/python-libvin tests"),
    ("KNDJT2A54D7883468", 2013, "Kia", "Soul", "vins-dev.json: h3/python-libvin tests"),
    ("JH4DC4340RS003205", 1994, "Acura", "Integra", "vins-dev.json: davidpeckham/vin tests"),
    ("KM8K2CAB4PU001140", 2023, "Hyundai", "Kona", "vins-dev.json: cardog-ai/corgi tests"),
    ("1C6RR7LT2JS179571", 2018, "Ram", "1500", "vins-dev.json: cardog-ai/corgi tests"),
    ("WVWZZZ1KZ6W612305", 2006, "Volkswagen", "Golf V", "vins-dev.json: sunrise-php/vin tests"),
    ("WP0ZZZ99ZTS392124", 1996, "Porsche", "911", "vins-dev.json: vin_parser (Rust) README"),
    ("XTAGFK330JY144213", 2018, "Lada", "Vesta", "vins-dev.json: idlesign/vininfo test_lada.py"),
    ("VF1LM1B0H36666155", 2003, "Renault", "Megane II", "vins-dev.json: idlesign/vininfo README"),
    ("WDD2470031J059461", 2019, "Mercedes-Benz", "B-Class", "vins-dev.json: vininfo issue #9"),
]


@pytest.mark.parametrize(
    ("vin", "year", "make", "model", "source"), PUBLIC_VINS, ids=[r[0] for r in PUBLIC_VINS]
)
def test_public_vin_matches(
    cat: SampleCatalogue, vin: str, year: int, make: str, model: str, source: str
) -> None:
    assert source
    matches = cat.match(features(vin, year))
    assert matches, f"no match for {vin}"
    best = matches[0]
    assert best["make"] == make
    assert model in best["model"]
    assert best["years"]["from"] <= year <= best["years"]["to"]
    assert best["id"].startswith("vt_")
    assert set(best) == {"id", "make", "model", "years", "body", "engine", "market", "source"}
    assert best["source"] == "vpic" or best["source"].startswith("curated:")


def test_match_make_agrees_when_given(cat: SampleCatalogue) -> None:
    best = cat.match(features("1HGCM82633A004352", 2003, make="Honda"))[0]
    assert (best["make"], best["model"]) == ("Honda", "Accord")


def test_match_returns_alternatives_best_first(cat: SampleCatalogue) -> None:
    # Without a model year, the Accord VDS fits several model-year runs / engines.
    f = features("1HGCM82633A004352", None)
    matches = cat.match(f)
    assert len(matches) >= 2
    assert all(m["model"] == "Accord" for m in matches)
    assert len({m["id"] for m in matches}) == len(matches)
    assert cat.match(f) == matches  # deterministic order


def test_model_year_candidates_used_when_year_unknown(cat: SampleCatalogue) -> None:
    f = features("WVWZZZ1KZ6W612305", None)
    f["model_year_candidates"] = [2036, 2006]
    best = cat.match(f)[0]
    assert "Golf V" in best["model"]


def test_other_candidate_year_ranks_after_model_year(cat: SampleCatalogue) -> None:
    # vins-dev.json (arpuffer/pyvin tests): position 10 'P' reads 1993 or 2023; a decoder may
    # pick 2023 when the check digit does not validate. The 1993 Corolla is still found.
    f = features("JT2AE09W5P0038539", 2023)
    assert cat.match(f) == []
    f["model_year_candidates"] = [2023, 1993]
    best = cat.match(f)[0]
    assert (best["make"], best["model"]) == ("Toyota", "Corolla")
    assert best["years"]["from"] <= 1993 <= best["years"]["to"]


def test_year_filters_out_other_generations(cat: SampleCatalogue) -> None:
    ids_2003 = {m["id"] for m in cat.match(features("1HGCM82633A004352", 2003))}
    ids_2015 = {m["id"] for m in cat.match(features("1HGCM82633A004352", 2015))}
    assert ids_2003
    assert not ids_2003 & ids_2015


def test_rest_of_world_year_falls_back_to_pattern(cat: SampleCatalogue) -> None:
    # Mercedes-Benz rest-of-world VINs do not carry the model year at position 10: a decoder
    # reading '1' there says 2001; the series still identifies the vehicle.
    best = cat.match(features("WDD2470031J059461", 2001))[0]
    assert best["make"] == "Mercedes-Benz"
    assert "247" in best["model"]


@pytest.mark.parametrize(
    "vin",
    [
        "1M8GDM9AXKP042788",  # Wikipedia VIN example: Motor Coach Industries bus
        "SCBEC9ZA1EC225243",  # vins-dev.json: Bentley (not a catalogue make)
        "YT9NN1U14KA007175",  # vins-dev.json: Koenigsegg, six-character WMI
    ],
)
def test_unknown_make_gives_empty_list(cat: SampleCatalogue, vin: str) -> None:
    assert cat.match(features(vin, 2019)) == []


def test_garbage_features_give_empty_list(cat: SampleCatalogue) -> None:
    assert cat.match({"wmi": "", "vds": ""}) == []
    assert cat.match({"wmi": "WVW", "vds": "ZZZ"}) == []
    assert cat.match({"wmi": "WVW", "vds": "ZZZ1K", "model_year": 1950}) != []  # year ignored
    assert cat.match({"wmi": "1HG", "vds": "CM826", "model_year": "not a year"}) != []


# --- vehicle types and parts ------------------------------------------------------------


def test_vehicle_type_lookup(cat: SampleCatalogue) -> None:
    best = cat.match(features("1HGCM82633A004352", 2003))[0]
    assert cat.vehicle_type(best["id"]) == best
    assert cat.vehicle_type("vt_does_not_exist") is None


def test_parts_all_and_filtered_by_category(cat: SampleCatalogue) -> None:
    tid = cat.match(features("WVWZZZ1KZ6W612305", 2006))[0]["id"]
    parts = cat.parts(tid)
    assert len(parts) >= 20
    assert {p["category"] for p in parts} == set(CATEGORY_IDS)
    for p in parts:
        assert set(p) == {"part_number", "name", "category", "brand", "fits_note", "sample"}
        assert p["sample"] is True
        assert p["part_number"] and p["name"] and p["brand"]
    brakes = cat.parts(tid, ["brakes"])
    assert brakes and all(p["category"] == "brakes" for p in brakes)
    assert "Front brake pad set" in {p["name"] for p in brakes}
    two = cat.parts(tid, ["filters", "ignition"])
    assert {p["category"] for p in two} == {"filters", "ignition"}
    assert cat.parts(tid, []) == []
    assert cat.parts(tid, ["no_such_category"]) == []
    assert cat.parts("vt_does_not_exist") == []
    assert cat.parts(tid) == parts  # deterministic


def test_electric_vehicle_has_no_ignition_or_exhaust_parts(cat: SampleCatalogue) -> None:
    # constructed features (no VIN): Tesla Fremont WMI, position 4 = model '3' (vPIC schema)
    f = {"wmi": "5YJ", "vds": "3E1EA", "model_year": 2019, "plant_code": "F"}
    tesla = cat.match(f)[0]
    assert (tesla["make"], tesla["model"]) == ("Tesla", "Model 3")
    cats = {p["category"] for p in cat.parts(tesla["id"])}
    assert "brakes" in cats
    assert "ignition" not in cats
    assert "exhaust" not in cats


def test_parts_follow_the_vehicle(cat: SampleCatalogue) -> None:
    """Chassis parts are shared by the types of one model and differ between models."""
    accords = cat.match(features("1HGCM82633A004352", None))
    assert len(accords) >= 2

    def pads(tid: str) -> list[tuple[str, str]]:
        return [(p["brand"], p["part_number"]) for p in cat.parts(tid, ["brakes"])]

    assert pads(accords[0]["id"]) == pads(accords[1]["id"])
    golf = cat.match(features("WVWZZZ1KZ6W612305", 2006))[0]["id"]
    assert pads(golf) != pads(accords[0]["id"])


# --- the build ------------------------------------------------------------------------------


def _build(out: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, str(BUILD), "--quiet", "--out", str(out), *args], check=True, timeout=600
    )


def _type_ids(path: Path) -> list[str]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    ids = [r[0] for r in con.execute("SELECT id FROM vehicle_types ORDER BY id")]
    con.close()
    return ids


def test_build_is_deterministic(tmp_path: Path) -> None:
    """Curated rules only (no vPIC download): two builds give identical ids and bytes."""
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    _build(a, "--no-vpic")
    _build(b, "--no-vpic")
    ids = _type_ids(a)
    assert ids and ids == _type_ids(b)
    assert a.read_bytes() == b.read_bytes()
    # the curated types of the shipped file are the ones this build makes
    assert set(ids) <= set(_type_ids(DEFAULT_PATH))
    small = SampleCatalogue(a)
    assert "Golf V" in small.match(features("WVWZZZ1KZ6W612305", 2006))[0]["model"]


def _vpic_db() -> Path | None:
    default = "/tmp/vpic/package/dist/db/vpic.lite.db"  # noqa: S108 (where it was unpacked)
    for cand in (os.environ.get("VPIC_DB"), default):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


@pytest.mark.slow
@pytest.mark.vpic  # opt-in: `VPIC_DB=... pytest -m vpic` (deselected by default, see pyproject)
def test_full_build_reproduces_shipped_type_ids(tmp_path: Path) -> None:
    db = _vpic_db()
    if db is None:
        pytest.fail("the vPIC database is not unpacked: set VPIC_DB (gateway/catalogue/README.md)")
    out = tmp_path / "full.sqlite"
    _build(out, "--vpic", str(db))
    assert _type_ids(out) == _type_ids(DEFAULT_PATH)
