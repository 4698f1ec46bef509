"""Where the tests' reference data lives: tests/data (see tests/data/PROVENANCE.md).

The one place that names these paths for the test suite. A missing file is a test FAILURE,
never a skip: the repository carries its own copies, so a missing one is a broken checkout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA_DIR = Path(__file__).resolve().parent / "data"
PROVENANCE = DATA_DIR / "PROVENANCE.md"
ATTESTATION_VECTORS = DATA_DIR / "attestation-vectors.json"
VINS_DEV = DATA_DIR / "vins-dev.json"


def missing(path: Path) -> str:
    """The failure message for a missing data file."""
    return (
        f"test data file {path} is missing: restore it from version control "
        f"(its source and sha256 are in {PROVENANCE.name})"
    )


def load_json(path: Path) -> Any:
    """The parsed JSON file; fails the calling test (never skips) when the file is missing."""
    if not path.is_file():
        pytest.fail(missing(path), pytrace=False)
    return json.loads(path.read_text("utf-8"))
