"""Benchmark: ``vin.decode`` against vininfo's full decode, same VINs, same process.

    .venv/bin/python loadtests/bench_vin.py [--count N] [--repeat N] [--tries N] [--min-ratio R]

The VIN list mixes the 17-character rows of tests/data/vins-dev.json with generated VINs
(correct check digit, valid year code) over vininfo's own WMIs, so that vininfo runs its
brand-specific detail extractors (Nissan, Renault, Opel, Lada, ...) where it has them.

vininfo's full decode: ``Vin(num)`` (validation and brand detection), ``annotate()``
(country, manufacturer, region, years), every detail when it has details (model,
body, engine, plant, transmission, serial: code and name) and ``verify_checksum()``.

Each repetition times the whole list with each decoder in chunks of 100 VINs, alternating
decoders, each chunk ``--tries`` times (default 3), keeping the fastest time per chunk and
decoder (timeit's rule: on a shared host the slower runs measure other processes; ``--tries
1`` gives plain single passes); the ratio of the two rates is taken per repetition.
Reported: the MEDIAN rate of each decoder and the MEDIAN of the per-repetition ratios (best
rates printed too). Exit status 1 when that median ratio is below ``--min-ratio``.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import vininfo
from vininfo.dicts import WMI as VININFO_WMI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import vin
from loadtests.public_vins import dev_rows
from vin.checkdigit import ALPHABET

YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"
CHARS = "".join(sorted(ALPHABET))


def dev_vins() -> list[str]:
    vins = [str(row["vin"]) for row in dev_rows()]
    return [num for num in vins if len(num) == 17 and set(num) <= ALPHABET]


def generated_vins(count: int, seed: int = 3779) -> list[str]:
    rng = random.Random(seed)
    wmis = sorted(k for k in VININFO_WMI if len(k) == 3 and set(k) <= ALPHABET and k[2] != "9")
    out = []
    for i in range(count):
        wmi = wmis[i % len(wmis)]
        body = "".join(rng.choice(CHARS) for _ in range(5))
        vis = rng.choice(YEAR_CODES) + rng.choice(CHARS) + "".join(rng.choices("0123456789", k=6))
        draft = f"{wmi}{body}0{vis}"
        out.append(draft[:8] + vin.check_digit(draft) + draft[9:])
    return out


DETAILS = ("model", "body", "engine", "plant", "transmission", "serial")


def vininfo_full(num: str) -> object:
    v = vininfo.Vin(num)
    result: list[object] = [v.annotate(), v.verify_checksum()]
    details = v.details
    if details is not None:
        # details.annotate() str()s every detail and crashes on some (vininfo bug:
        # "__str__ returned non-string"), so read each detail's code and name instead
        for name in DETAILS:
            detail = getattr(details, name, None)
            if detail:
                result.append((detail.code, detail.name))
    return result


def vin_full(num: str) -> object:
    return vin.decode(num)


def timed(function: Callable[[str], object], vins: list[str]) -> float:
    start = time.perf_counter()
    for num in vins:
        function(num)
    return time.perf_counter() - start


def one_repetition(vins: list[str], chunk: int = 100, tries: int = 3) -> tuple[float, float]:
    """(vin.decode rate, vininfo rate) over the whole list.

    The list is cut into chunks of ``chunk`` VINs; each chunk is timed ``tries`` times with
    each decoder, alternating, and the fastest try counts (as timeit does: on a shared, busy
    host the slower tries measure the other processes, not the decoder).
    """
    gc.collect()
    ours = theirs = 0.0
    for i in range(0, len(vins), chunk):
        part = vins[i : i + chunk]
        best_ours = best_theirs = float("inf")
        for _ in range(tries):
            best_ours = min(best_ours, timed(vin_full, part))
            best_theirs = min(best_theirs, timed(vininfo_full, part))
        ours += best_ours
        theirs += best_theirs
    return len(vins) / ours, len(vins) / theirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="generated VINs (default 5000)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument(
        "--tries", type=int, default=3, help="timings per chunk, fastest kept (default 3)"
    )
    parser.add_argument("--min-ratio", type=float, default=3.0, help="fail below (default 3.0)")
    args = parser.parse_args(argv)

    vins = dev_vins() + generated_vins(args.count)
    accepted = []
    for num in vins:  # keep what both accept, so both do a full decode of every VIN
        try:
            vininfo.Vin(num)
        except vininfo.ValidationError:
            continue
        accepted.append(num)
    vins = accepted
    makes = {vin.decode(num).make for num in vins} - {None}
    print(
        f"{len(vins)} VINs ({len(makes)} makes per vin.decode), {args.repeat} repetitions, "
        f"fastest of {args.tries} per 100-VIN chunk"
    )

    for num in vins[:200]:  # warm up both
        vin_full(num)
        vininfo_full(num)

    ours: list[float] = []
    theirs: list[float] = []
    ratios: list[float] = []
    for _ in range(args.repeat):
        rate, their_rate = one_repetition(vins, tries=args.tries)
        ours.append(rate)
        theirs.append(their_rate)
        ratios.append(rate / their_rate)

    ratio = statistics.median(ratios)
    for label, rates in (("vin.decode", ours), ("vininfo (full)", theirs)):
        median, best = statistics.median(rates), max(rates)
        print(f"{label:<15} median {median:10,.0f} decodes/s   best {best:10,.0f}")
    each = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"{'ratio':<15} median {ratio:.2f}x   (per repetition: {each})")
    if ratio < args.min_ratio:
        print(f"FAIL: ratio {ratio:.2f} is below --min-ratio {args.min_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
