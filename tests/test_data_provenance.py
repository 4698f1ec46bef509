"""The copied test data is what tests/data/PROVENANCE.md says it is, byte for byte.

Each row of PROVENANCE.md's table names a file of tests/data and its sha256. A file that is
missing, differs from its recorded sha256, or sits in tests/data without a row is a failure:
the copies are never edited by hand, only copied again (and the table updated).
"""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.testdata import ATTESTATION_VECTORS, DATA_DIR, PROVENANCE, VINS_DEV, missing

#: A table row: | `file` | `sha256` | ...
ROW = re.compile(r"^\|\s*`([^`/]+)`\s*\|\s*`([0-9a-f]{64})`\s*\|", re.MULTILINE)


def recorded() -> dict[str, str]:
    """file name -> recorded sha256, from PROVENANCE.md."""
    if not PROVENANCE.is_file():
        pytest.fail(missing(PROVENANCE), pytrace=False)
    rows = ROW.findall(PROVENANCE.read_text("utf-8"))
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), f"a file is listed twice in {PROVENANCE.name}"
    return dict(rows)


def sha256_of(name: str) -> str:
    return hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest()


def test_every_listed_file_is_there_and_unchanged() -> None:
    listed = recorded()
    absent = sorted(name for name in listed if not (DATA_DIR / name).is_file())
    assert not absent, f"listed in {PROVENANCE.name} but missing from {DATA_DIR}: {absent}"
    changed = {
        name: {"recorded": digest, "actual": sha256_of(name)}
        for name, digest in listed.items()
        if sha256_of(name) != digest
    }
    assert not changed, (
        f"changed since copied (copy the file again and update {PROVENANCE.name}): {changed}"
    )


def test_the_test_data_files_are_listed() -> None:
    """The files the tests read are under provenance (a table that lost a row fails here)."""
    listed = recorded()
    for path in (ATTESTATION_VECTORS, VINS_DEV):
        assert path.name in listed, f"{path.name} has no row in {PROVENANCE.name}"


def test_no_unlisted_file_in_the_data_folder() -> None:
    listed = recorded()
    present = {
        p.name
        for p in DATA_DIR.iterdir()
        if p.is_file() and p != PROVENANCE and not p.name.startswith(".")
    }
    unlisted = sorted(present - listed.keys())
    assert not unlisted, f"files in {DATA_DIR} without a row in {PROVENANCE.name}: {unlisted}"
