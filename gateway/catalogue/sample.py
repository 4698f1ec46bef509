"""Embedded SAMPLE parts catalogue: vehicle-type matching and parts over sample.sqlite.

Standard library only. The SQLite file is built by ``scripts/build_catalogue.py`` (see
``gateway/catalogue/README.md``). Everything needed for matching and parts is loaded into
memory once at construction; afterwards no SQL runs and the object is read-only, so one
instance can be shared between threads.

The catalogue never receives a VIN: ``match()`` gets only the non-serial features of a vehicle
(WMI, positions 4-8, model year, plant code, make).

SAMPLE DATA: vehicle types come from public data (NHTSA vPIC and curated public facts);
part numbers are synthetic and must not be used to order parts.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PATH", "SampleCatalogue"]

DEFAULT_PATH: Path = Path(__file__).resolve().parent / "sample.sqlite"

_ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
_TOKEN = re.compile(r"\[[^\]]*\]|.")
_MAX_MATCHES = 10
_MAX_KEY_CLASS = 4  # classes larger than this are indexed as "any character"

# score weights (higher is better); see match()
_W_MAKE_AGREES = 1.0
_W_MAKE_CANDIDATE = 0.5
_W_MAKE_DISAGREES = -3.0
_W_PLANT_MATCH = 0.5
_W_PLANT_UNKNOWN = -0.5
_W_FALLBACK = -1.0
_W_YEAR_RANK = -1.0
_W_YEAR_IGNORED = -2.0

# a rule: (pattern over positions 4-8, allowed plant codes or None,
#                   type index, fallback flag, specificity)
_Rule = tuple[str, frozenset[str] | None, int, bool, float]


def _norm_make(text: str | None) -> str:
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isalnum()).casefold()


_ANY = frozenset(_ALPHABET)
_token_cache: dict[str, frozenset[str]] = {}


def _token_set(tok: str) -> frozenset[str]:
    """Allowed characters of one pattern token: '*', a character, or a class like [A-DJ3]."""
    cached = _token_cache.get(tok)
    if cached is not None:
        return cached
    if tok == "*":
        out = _ANY
    elif tok.startswith("[") and tok.endswith("]"):
        body = tok[1:-1]
        if body.startswith("^") or "\\" in body:
            rx = re.compile(tok)
            out = frozenset(c for c in _ALPHABET if rx.fullmatch(c))
        else:
            chars: set[str] = set()
            i = 0
            while i < len(body):
                if i + 2 < len(body) and body[i + 1] == "-":
                    lo, hi = ord(body[i]), ord(body[i + 2])
                    chars.update(chr(c) for c in range(lo, hi + 1))
                    i += 3
                else:
                    chars.add(body[i])
                    i += 1
            out = frozenset(chars) & _ANY
    else:
        out = frozenset(tok) & _ANY
    _token_cache[tok] = out
    return out


def _as_year(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Catalogue pattern ('*' any, [..] class, else the character) -> regex over 4-8."""
    return re.compile("".join("." if t == "*" else t for t in _TOKEN.findall(pattern)))


class SampleCatalogue:
    """Read-only, in-memory view of the sample catalogue."""

    def __init__(self, path: Path | str = DEFAULT_PATH) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"sample catalogue not found: {self.path}")
        con = sqlite3.connect(f"file:{self.path.as_posix()}?mode=ro&immutable=1", uri=True)
        try:
            self._load(con)
        finally:
            con.close()

    # -- loading -------------------------------------------------------------------------

    def _load(self, con: sqlite3.Connection) -> None:
        self.meta: dict[str, str] = dict(con.execute("SELECT key, value FROM meta"))
        self._categories: list[tuple[str, str]] = list(
            con.execute("SELECT id, name FROM categories ORDER BY sort")
        )
        cat_order = {c: i for i, (c, _n) in enumerate(self._categories)}

        # vehicle types: index i -> (id, make, model, year_from, year_to, body, engine,
        # market, source, chassis group, engine group)
        self._types: list[tuple[Any, ...]] = []
        num_to_idx: dict[int, int] = {}
        for row in con.execute(
            "SELECT num, id, make, model, year_from, year_to, body, engine, market, source, "
            "chassis_group, engine_group FROM vehicle_types ORDER BY num"
        ):
            num_to_idx[row[0]] = len(self._types)
            self._types.append(row[1:])
        self._by_id: dict[str, int] = {t[0]: i for i, t in enumerate(self._types)}
        self._make_norm: list[str] = [_norm_make(t[1]) for t in self._types]
        self._model_key: list[tuple[str, str]] = [(t[1], t[2]) for t in self._types]

        # parts: group -> [(category order, template order, category, name, brand, pn, note)]
        templates = {
            num: (cat, name, note)
            for num, cat, name, note in con.execute(
                "SELECT num, category, name, fits_note FROM part_templates"
            )
        }
        self._parts: dict[int, list[tuple[Any, ...]]] = {}
        for group, tnum, brand, pn in con.execute(
            "SELECT group_num, template_num, brand, part_number FROM parts"
        ):
            cat, name, note = templates[tnum]
            self._parts.setdefault(group, []).append(
                (cat_order.get(cat, 99), tnum, pn, name, cat, brand, note)
            )
        for lst in self._parts.values():
            lst.sort()

        # match index, per WMI: the two positions of 4-8 that best split its rules are
        # chosen, and rules are bucketed by (year, char at p, char at q), '*' standing for
        # "any character" (wildcards and large classes); plus a year-less index.
        patterns: dict[str, tuple[tuple[frozenset[str], ...], float]] = {}
        by_wmi: dict[str, list[tuple[Any, ...]]] = {}
        for row in con.execute(
            "SELECT wmi, vds_pattern, plant, year_from, year_to, type_num, fallback "
            "FROM match_rules"
        ):
            if row[1] not in patterns:
                patterns[row[1]] = self._compile(row[1])
            by_wmi.setdefault(row[0], []).append(row)
        plant_sets: dict[str, frozenset[str]] = {}
        self._matchers: dict[str, Any] = {}  # pattern -> compiled regex .match (lazy)
        self._index: dict[str, tuple[int, int, dict[tuple[Any, ...], list[_Rule]]]] = {}
        self._index_any: dict[str, dict[tuple[str, str], list[_Rule]]] = {}
        # rules whose model year may be ignored when nothing matches with the year: the
        # curated rest-of-world rules (position 10 is not always a model year outside North
        # America and China); vPIC rules always need the year to agree.
        self._index_year_free: dict[str, dict[tuple[str, str], list[_Rule]]] = {}
        year_free = [not t[8].startswith("vpic") for t in self._types]
        for wmi, rows in by_wmi.items():
            p, q = self._split_positions([(patterns[r[1]][0], r[4] - r[3] + 1) for r in rows])
            idx: defaultdict[tuple[Any, ...], list[_Rule]] = defaultdict(list)
            idx_any: defaultdict[tuple[str, str], dict[tuple[Any, ...], _Rule]] = defaultdict(dict)
            keys_cache: dict[str, list[tuple[str, str]]] = {}
            for _w, pattern, plant, yf, yt, tnum, fallback in rows:
                plant_set = None
                if plant:
                    plant_set = plant_sets.get(plant)
                    if plant_set is None:
                        plant_set = plant_sets[plant] = _token_set(plant)
                rule: _Rule = (
                    pattern,
                    plant_set,
                    num_to_idx[tnum],
                    bool(fallback),
                    patterns[pattern][1],
                )
                keys = keys_cache.get(pattern)
                if keys is None:
                    sets = patterns[pattern][0]
                    ka = sorted(sets[p]) if len(sets[p]) <= _MAX_KEY_CLASS else ["*"]
                    kb = sorted(sets[q]) if len(sets[q]) <= _MAX_KEY_CLASS else ["*"]
                    keys = keys_cache[pattern] = [(a, b) for a in ka for b in kb]
                dedupe = (pattern, plant, tnum, fallback)
                for a, b in keys:
                    for y in range(yf, yt + 1):
                        idx[(y, a, b)].append(rule)
                    idx_any[(a, b)][dedupe] = rule
            self._index[wmi] = (p, q, dict(idx))
            self._index_any[wmi] = {k: list(d.values()) for k, d in idx_any.items()}
            free = {k: [r for r in d.values() if year_free[r[2]]] for k, d in idx_any.items()}
            self._index_year_free[wmi] = {k: v for k, v in free.items() if v}
        self.rule_count = sum(len(rows) for rows in by_wmi.values())

    @staticmethod
    def _split_positions(rules: list[tuple[tuple[frozenset[str], ...], int]]) -> tuple[int, int]:
        """The pair of positions (0-4 in 4-8) minimizing the expected number of rules scanned."""
        n = len(_ALPHABET)
        weight: dict[tuple[float, ...], int] = {}
        for sets, w in rules:
            f = tuple(len(s) / n if len(s) <= _MAX_KEY_CLASS else 1.0 for s in sets)
            weight[f] = weight.get(f, 0) + w
        best = (float("inf"), 0, 1)
        for p in range(5):
            for q in range(p + 1, 5):
                cost = sum(f[p] * f[q] * w for f, w in weight.items())
                best = min(best, (cost, p, q))
        return best[1], best[2]

    @staticmethod
    def _compile(pattern: str) -> tuple[tuple[frozenset[str], ...], float]:
        toks = _TOKEN.findall(pattern)
        if len(toks) != 5:
            raise ValueError(f"bad vds pattern in catalogue: {pattern!r}")
        sets = tuple(_token_set(t) for t in toks)
        n = len(_ALPHABET)
        # information in each position: 1 for a fixed character, 0 for '*'
        spec = round(sum((n - len(s)) / (n - 1) for s in sets), 4)
        return sets, spec

    # -- public API ------------------------------------------------------------------------

    def categories(self) -> list[dict[str, Any]]:
        return [{"id": c, "name": n} for c, n in self._categories]

    def vehicle_type(self, type_id: str) -> dict[str, Any] | None:
        idx = self._by_id.get(type_id)
        return None if idx is None else self._type_dict(idx)

    def match(self, features: dict[str, Any]) -> list[dict[str, Any]]:
        """Rank the vehicle types matching a vehicle's features, best first ([] if none).

        A rule matches when its WMI equals ``features["wmi"]``, its pattern matches VIN
        positions 4-8 (``features["vds"]``, extra characters ignored), its plant code (if any)
        agrees with ``features["plant_code"]``, and its model-year range contains the model
        year (``model_year``, or one of ``model_year_candidates``, ranked lower; with neither,
        the year is ignored). When nothing matches with the year, the year is ignored as a
        last resort for the curated rest-of-world rules (such VINs often do not encode the
        model year at position 10); such matches rank lower. vPIC rules always need the year.

        Score: how much of positions 4-8 the pattern pins down (0-5) + plant code agreement
        + make agreement with ``make`` / ``make_candidates`` - rank of the candidate year;
        engine-unknown fallback rules are dropped when a precise rule of the same make and
        model matched. Ties are broken by type id, so the order is deterministic.
        """
        wmi = str(features.get("wmi") or "").upper()
        entry = self._index.get(wmi)
        if entry is None:
            return []
        p, q, index = entry
        vds = str(features.get("vds") or "").upper()[:5]
        if len(vds) < 5:
            vds = vds.ljust(5, " ")
        a, b = vds[p], vds[q]
        plant = features.get("plant_code")
        plant = str(plant).upper() if plant else None

        # the model year first, then the other candidate years (ranked lower)
        years: list[int] = []
        raw_years = [features.get("model_year"), *(features.get("model_year_candidates") or [])]
        for raw in raw_years:
            y = _as_year(raw)
            if y is not None and y not in years:
                years.append(y)

        scores: dict[int, list[Any]] = {}
        scan = self._scan
        if years:
            for rank, y in enumerate(years):
                bonus = rank * _W_YEAR_RANK
                for key in ((y, a, b), (y, a, "*"), (y, "*", b), (y, "*", "*")):
                    rules = index.get(key)
                    if rules:
                        scan(rules, vds, plant, bonus, scores)
        if not scores:
            if years:
                bonus, index_any = _W_YEAR_IGNORED, self._index_year_free[wmi]
            else:
                bonus, index_any = 0.0, self._index_any[wmi]
            for key2 in ((a, b), (a, "*"), ("*", b), ("*", "*")):
                rules = index_any.get(key2)
                if rules:
                    scan(rules, vds, plant, bonus, scores)
        if not scores:
            return []
        return [self._type_dict(i) for i in self._rank(scores, features)]

    def parts(self, type_id: str, categories: list[str] | None = None) -> list[dict[str, Any]]:
        idx = self._by_id.get(type_id)
        if idx is None:
            return []
        t = self._types[idx]
        wanted = None if categories is None else set(categories)
        rows: list[tuple[Any, ...]] = []
        for group in (t[9], t[10]):
            rows.extend(self._parts.get(group, ()))
        rows.sort()
        return [
            {
                "part_number": pn,
                "name": name,
                "category": cat,
                "brand": brand,
                "fits_note": note,
                "sample": True,
            }
            for _co, _tn, pn, name, cat, brand, note in rows
            if wanted is None or cat in wanted
        ]

    # -- internals -------------------------------------------------------------------------

    def _scan(
        self,
        rules: list[_Rule],
        vds: str,
        plant: str | None,
        bonus: float,
        scores: dict[int, list[Any]],
    ) -> None:
        """Add the matching rules: scores[type index] = [best score, only fallback rules]."""
        matchers = self._matchers
        for pattern, plant_set, idx, fallback, spec in rules:
            m = matchers.get(pattern)
            if m is None:
                m = matchers[pattern] = _pattern_regex(pattern).match
            if m(vds) is None:
                continue
            s = spec + bonus
            if plant_set is not None:
                if plant is None:
                    s += _W_PLANT_UNKNOWN
                elif plant in plant_set:
                    s += _W_PLANT_MATCH
                else:
                    continue
            if fallback:
                s += _W_FALLBACK
            cur = scores.get(idx)
            if cur is None:
                scores[idx] = [s, fallback]
            else:
                if s > cur[0]:
                    cur[0] = s
                if not fallback:
                    cur[1] = False

    def _rank(self, scores: dict[int, list[Any]], features: dict[str, Any]) -> list[int]:
        make = _norm_make(features.get("make"))
        cands = {_norm_make(m) for m in (features.get("make_candidates") or [])} - {""}
        precise = {self._model_key[i] for i, (_s, fb) in scores.items() if not fb}
        ranked: list[tuple[float, str, int]] = []
        for i, (s, fallback) in scores.items():
            if fallback and self._model_key[i] in precise:
                continue  # engine-unknown rule, and a precise rule of the model matched
            tm = self._make_norm[i]
            if make:
                s += _W_MAKE_AGREES if tm == make else _W_MAKE_DISAGREES
            elif tm in cands:
                s += _W_MAKE_CANDIDATE
            ranked.append((-s, self._types[i][0], i))
        ranked.sort()
        return [i for _s, _id, i in ranked[:_MAX_MATCHES]]

    def _type_dict(self, idx: int) -> dict[str, Any]:
        tid, make, model, yf, yt, body, engine, market, source, _cg, _eg = self._types[idx]
        return {
            "id": tid,
            "make": make,
            "model": model,
            "years": {"from": yf, "to": yt},
            "body": body,
            "engine": engine,
            "market": market,
            "source": source,
        }
