"""Summarize a py-spy raw profile (``bench_lookup.py --profile DIR``) of the event-loop thread.

    .venv/bin/python loadtests/profile_summary.py PROFILE.txt [--top 30]

py-spy's raw format is one collapsed stack per line with its sample count. Only the stacks of
the thread running the event loop count (other threads, such as aiosqlite's, are left out),
and each function is counted once per stack, so a row is the share of event-loop samples in
which that function was on the stack (inclusive), by function and file name. Frames of the
process entry (uvicorn's runner, the CLI) are dropped: they are on every stack.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

ENTRY_FILES = ("cli.py", "runners.py", "server.py", "_compat.py", "vin-gateway")
ENTRY_FRAMES = frozenset({"run (main.py)"})  # uvicorn.main.run


def frame_name(frame: str) -> str:
    """``function (file.py)`` from py-spy's ``function (path/file.py:line)``."""
    if " (" not in frame:
        return frame
    name, where = frame.split(" (", 1)
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1].rstrip(')')})"


def summarize(path: Path) -> tuple[int, list[tuple[str, int]]]:
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or "runners.py" not in stack:  # the event-loop thread only
            continue
        samples = int(count)
        total += samples
        names = {frame_name(f) for f in stack.split(";")}
        for name in names:
            entry = name in ENTRY_FRAMES or name.endswith(tuple(f"({e})" for e in ENTRY_FILES))
            if not entry and "<module>" not in name:
                inclusive[name] += samples
    return total, inclusive.most_common()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    total, rows = summarize(args.profile)
    print(f"event-loop samples: {total}")
    print("| share | function (file) |\n|---:|---|")
    for name, samples in rows[: args.top]:
        print(f"| {100 * samples / total:.1f}% | `{name}` |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
