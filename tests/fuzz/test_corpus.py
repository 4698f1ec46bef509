"""The committed fuzz corpus (tests/fuzz/corpus/<target>/) replayed through the fuzz targets,
without atheris: every seed, and every crash once found and added, runs in the normal suite, so
a regression of a past crash fails here (docs/fuzzing.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parent / "corpus"
#: Per input, in seconds: generous (an input takes well under a millisecond), the same bound as
#: the fuzzers' libFuzzer -timeout (tests/fuzz/harness.py).
PER_INPUT_S = 5.0


def corpus_files(target: str) -> list[Path]:
    folder = CORPUS / target
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_corpus_is_there(target: str) -> None:
    files = corpus_files(target)
    assert len(files) >= 20, f"tests/fuzz/corpus/{target} holds {len(files)} inputs"


@pytest.mark.parametrize(
    ("target", "path"),
    [
        pytest.param(target, path, id=f"{target}/{path.name}")
        for target in sorted(TARGETS)
        for path in corpus_files(target)
    ],
)
def test_corpus_input(target: str, path: Path) -> None:
    data = path.read_bytes()
    started = time.perf_counter()
    TARGETS[target](data)
    elapsed = time.perf_counter() - started
    assert elapsed < PER_INPUT_S, f"{elapsed:.1f} s for one input (bound: {PER_INPUT_S} s)"
