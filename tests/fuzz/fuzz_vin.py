"""Fuzz the ``vin`` library's public API (decode, parse, normalize, check_digit) with atheris.

    .venv/bin/python tests/fuzz/fuzz_vin.py [libFuzzer options] [corpus dir...]
    .venv/bin/python tests/fuzz/fuzz_vin.py -runs=1000 /tmp/new tests/fuzz/corpus/vin
        (libFuzzer writes new inputs into the first directory: keep it a scratch one)
    .venv/bin/python tests/fuzz/fuzz_vin.py crash-<sha1>        (replay one reproducer)

What is checked: tests/fuzz/targets.py (vin_target); how to run it: docs/fuzzing.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.harness import main

if __name__ == "__main__":
    main("vin", instrument=["vin"], max_len=256)
