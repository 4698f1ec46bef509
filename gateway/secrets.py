"""Secrets generated at first start into the secrets dir (``<data dir>/secrets``, git-ignored).

In production mount the same files (or set the variables) for every worker and instance. A file
is created once, atomically (O_EXCL), readable by its owner only; concurrent workers starting
together read the winner's file. Nothing here is ever stored in a database.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from pathlib import Path


def load_or_create(directory: Path, name: str, nbytes: int = 32) -> bytes:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    if not path.exists():
        value = base64.urlsafe_b64encode(secrets.token_bytes(nbytes)) + b"\n"
        tmp = directory / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(value)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic create-if-absent: the first worker wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    for _ in range(50):
        raw = path.read_bytes().strip()
        if raw:
            return base64.urlsafe_b64decode(raw)
        time.sleep(0.02)
    raise RuntimeError(f"secret file {path} is empty")
