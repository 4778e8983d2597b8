"""The code type-checks under mypy --strict, as installed (the pyreg.* namespace)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_mypy_strict(tmp_path: Path) -> None:
    # mypy cannot follow setuptools' editable finder: give it the installed shape as symlinks.
    package = tmp_path / "pyreg"
    package.mkdir()
    for folder in ("oci", "registry", "client", "runtime"):
        (package / folder).symlink_to(ROOT / folder)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "-p", "pyreg"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
