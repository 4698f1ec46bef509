"""The atheris side of the fuzz targets (``tests/fuzz/targets.py``): libFuzzer options and the
instrumentation of the code under test. Run through the ``fuzz_*.py`` scripts, never by pytest.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: libFuzzer options every run gets unless the command line sets them: a per-input time bound
#: (seconds; a slower input is a failure, written as a timeout-* reproducer) and a memory bound.
DEFAULTS = {"-timeout": "5", "-rss_limit_mb": "2048"}


def main(target: str, *, instrument: Sequence[str], max_len: int) -> None:
    """Fuzz ``target`` with coverage from the ``instrument`` packages (the code under test)."""
    import atheris

    with atheris.instrument_imports(include=list(instrument)):
        from tests.fuzz import targets

    given = {arg.partition("=")[0] for arg in sys.argv[1:] if arg.startswith("-")}
    options = {**DEFAULTS, "-max_len": str(max_len)}
    extra = [f"{name}={value}" for name, value in options.items() if name not in given]
    atheris.Setup([sys.argv[0], *extra, *sys.argv[1:]], targets.TARGETS[target])
    atheris.Fuzz()
