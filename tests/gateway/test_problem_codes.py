"""Every problem code the gateway can send is documented, with its status, in docs/problems.md."""

from __future__ import annotations

import re
from pathlib import Path

import gateway.main  # noqa: F401 - imports every module that defines a GatewayError
from gateway.exceptions import GatewayError

DOC = Path(__file__).resolve().parents[2] / "docs" / "problems.md"


def all_errors(cls: type[GatewayError] = GatewayError) -> dict[str, int]:
    found: dict[str, int] = {}
    for sub in cls.__subclasses__():
        found[sub.code] = sub.status
        found.update(all_errors(sub))
    return found


def test_every_code_is_documented_with_its_status() -> None:
    rows = dict(
        (code, int(status))
        for status, code in re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", DOC.read_text(), re.M)
    )
    codes = all_errors()
    assert len(codes) > 40
    assert {c: s for c, s in codes.items() if rows.get(c) != s} == {}
    assert set(rows) - set(codes) == set(), "documented codes the gateway never sends"
