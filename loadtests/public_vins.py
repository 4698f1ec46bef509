"""Public example VINs for the benchmarks and the locust file, and where the dev corpus lives.

``VINS_DEV_FILE`` is the one place the load tests name the development corpus: the in-repo copy
tests/data/vins-dev.json (its provenance: tests/data/PROVENANCE.md). ``PUBLIC_VINS`` are rows of
that corpus or of the tests in tests/vin (Wikipedia, NHTSA vPIC responses, and the test suites
of open VIN decoders).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The development corpus of public VINs (every row names its public source in ``src``).
VINS_DEV_FILE = Path(__file__).resolve().parent.parent / "tests" / "data" / "vins-dev.json"


def dev_rows(path: Path = VINS_DEV_FILE) -> list[dict[str, Any]]:
    """The rows of the corpus. A missing file is an error: it is part of the repository."""
    if not path.is_file():
        raise FileNotFoundError(
            f"VIN corpus {path} is missing (tests/data/vins-dev.json ships with the repository)"
        )
    rows: list[dict[str, Any]] = json.loads(path.read_text("utf-8"))["vins"]
    return rows


PUBLIC_VINS = [
    "1HGCM82633A004352",
    "JH4DC4340RS003205",
    "WVWZZZ1KZ6W612305",
    "1FTMW1T88MFA00001",
    "KM8K2CAB4PU001140",
    "YV1902FH5D1796335",
    "JT2AE09W4P0038539",
    "1C6RR7LT2JS179571",
    "KNDJT2A54D7883468",
    "SCBEC9ZA1EC225243",
    "XTAGFK330JY144213",
    "LFWADRJF011002346",
    "WP0ZZZ99ZTS392124",
]
