"""What every benchmark's ``--write-docs`` shares: the machine's load average as printed, and
replacing the benchmark's own marked section of docs/benchmarks.md (appended, after an intro,
the first time) without touching anything else in the file."""

from __future__ import annotations

import os
from pathlib import Path


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def replace_section(path: Path, begin: str, end: str, lines: list[str], intro: str = "") -> None:
    """``lines`` runs from ``begin`` to ``end`` (both markers included)."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + "\n".join(lines) + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + intro + "\n".join(lines) + "\n"
    path.write_text(text)
