"""Fuzz the compact-JWS splitter, python-jose verification and JWK loading
(gateway/security/jws.py, and the access tokens built on it) with atheris.

    .venv/bin/python tests/fuzz/fuzz_jws.py [libFuzzer options] [corpus dir...]
    .venv/bin/python tests/fuzz/fuzz_jws.py -runs=1000 /tmp/new tests/fuzz/corpus/jws
        (libFuzzer writes new inputs into the first directory: keep it a scratch one)
    .venv/bin/python tests/fuzz/fuzz_jws.py crash-<sha1>        (replay one reproducer)

What is checked: tests/fuzz/targets.py (jws_target); how to run it: docs/fuzzing.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.harness import main

if __name__ == "__main__":
    main("jws", instrument=["gateway.security", "jose"], max_len=9000)
