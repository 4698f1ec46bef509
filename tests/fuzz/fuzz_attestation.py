"""Fuzz the attestation verifier (gateway/security/attestation.py) with atheris: arbitrary bytes
as the VIN-Attestation header, or payloads signed in-process by a registered key.

    .venv/bin/python tests/fuzz/fuzz_attestation.py [libFuzzer options] [corpus dir...]
    .venv/bin/python tests/fuzz/fuzz_attestation.py -runs=1000 /tmp/n tests/fuzz/corpus/attestation
        (libFuzzer writes new inputs into the first directory: keep it a scratch one)
    .venv/bin/python tests/fuzz/fuzz_attestation.py crash-<sha1>  (replay one reproducer)

What is checked: tests/fuzz/targets.py (attestation_target); how to run it: docs/fuzzing.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.harness import main

if __name__ == "__main__":
    main("attestation", instrument=["gateway.security", "jose"], max_len=9000)
