#!/usr/bin/env python3
"""Micro-benchmark of SampleCatalogue.match() (the embedded SAMPLE catalogue).

    .venv/bin/python loadtests/bench_catalogue_match.py [--seconds 3] [--vins PATH]

Prints the load time, the match rate on a corpus of public VINs (default: the development
corpus tests/data/vins-dev.json, plus a few built-in public VINs), and matches per second over
that corpus. In-process only: no network, no server.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.catalogue.sample import SampleCatalogue  # noqa: E402
from loadtests.public_vins import VINS_DEV_FILE, dev_rows  # noqa: E402

# (VIN, model year or None, expected make): public example VINs
BUILTIN = [
    ("1HGCM82633A004352", 2003, "Honda"),  # Wikipedia "Vehicle identification number"
    ("WVWZZZ1KZ6W612305", 2006, "Volkswagen"),  # sunrise-php/vin tests
    ("WP0ZZZ99ZTS392124", 1996, "Porsche"),  # vin_parser (Rust) README
    ("1M8GDM9AXKP042788", 2019, None),  # Wikipedia example: a bus, not in the catalogue
]


def features(vin: str, year: int | None) -> dict[str, Any]:
    return {
        "wmi": vin[:3] + vin[11:14] if vin[2] == "9" else vin[:3],
        "vds": vin[3:8],
        "make": None,
        "make_candidates": [],
        "model_year": year,
        "model_year_candidates": [year] if year else [],
        "country_code": None,
        "plant_code": vin[10],
    }


def load_corpus(path: Path | None) -> list[tuple[str, int | None, str | None]]:
    rows: list[tuple[str, int | None, str | None]] = list(BUILTIN)
    for v in dev_rows(path or VINS_DEV_FILE):
        vin = str(v["vin"]).strip().upper()
        if len(vin) == 17:
            rows.append((vin, v.get("year"), v.get("make")))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument(
        "--vins", type=Path, default=None, help="JSON corpus (default tests/data/vins-dev.json)"
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    cat = SampleCatalogue()
    print(f"load: {time.perf_counter() - t0:.2f} s ({cat.rule_count} match rules)")

    corpus = load_corpus(args.vins)
    feats = [features(vin, year) for vin, year, _make in corpus]
    with_make = [(f, make) for f, (_v, _y, make) in zip(feats, corpus, strict=True) if make]
    found = sum(1 for f, _m in with_make if cat.match(f))
    right = sum(1 for f, m in with_make if (r := cat.match(f)) and r[0]["make"] == m)
    print(
        f"match rate: {found}/{len(with_make)} VINs with a known make found a type, "
        f"{right}/{len(with_make)} with the right make (corpus of {len(corpus)} VINs)"
    )
    for (vin, year, make), f in zip(corpus, feats, strict=True):
        r = cat.match(f)
        best = (
            f"{r[0]['make']} {r[0]['model']} {r[0]['years']['from']}-{r[0]['years']['to']}"
            if r
            else "-"
        )
        print(f"  {vin} {year or '????'} {make or '?':<14} -> {best}")

    n = 0
    deadline = time.perf_counter() + args.seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for f in feats:
            cat.match(f)
        n += len(feats)
    elapsed = time.perf_counter() - start
    print(f"{n / elapsed:,.0f} matches/s ({elapsed / n * 1e6:.1f} us per match, 1 thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
