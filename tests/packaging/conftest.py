"""The package as a user gets it: a wheel built from this tree, installed from the lock into a
brand-new virtual environment without dev extras, outside the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# pip must not see the suite's own site-packages, nor build with whatever sits in the tree
CLEAN_ENV = {
    k: v for k, v in os.environ.items() if not k.startswith(("VINGW_", "PYTHON", "VIRTUAL_ENV"))
}


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, env=CLEAN_ENV, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done  # type: ignore[no-any-return]


def tracked_files() -> list[str]:
    """What a clone has: tracked files and new ones not ignored (the tree about to be committed)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    return [f for f in listed if (ROOT / f).is_file()]


@pytest.fixture(scope="session")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of the tree, as a fresh clone has it: no .venv, no var/, no build/ (an
    in-tree build/ left by an earlier build would hide a missing package-data pattern)."""
    copy = tmp_path_factory.mktemp("clone")
    for name in tracked_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    return copy


@pytest.fixture(scope="session")
def wheel(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build --wheel` of the clean copy (build isolation: the pinned setuptools)."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(clone)])
    (built,) = out.glob("vin_gateway-*.whl")
    return built


@pytest.fixture(scope="session")
def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with requirements/runtime.txt (hashes required) and the wheel (no deps):
    exactly the README's first command, with the wheel in place of the source tree."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True, clear=True)
    python = str(env_dir / "bin" / "python")
    run([python, "-m", "pip", "install", "--quiet", "--require-hashes",
         "-r", str(ROOT / "requirements" / "runtime.txt")])  # fmt: skip
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)])
    run([python, "-m", "pip", "check"])
    return env_dir
