"""The registry's spec suite, run once more with token auth switched on.

Every request of tests/api and tests/registry then goes through the Bearer challenge, the
built-in token server and token verification: auth must change nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
def test_spec_suite_passes_with_token_auth() -> None:
    env = {**os.environ, "PYREG_TEST_AUTH": "token"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "tests.auth.suite", "-p", "no:cacheprovider",
         "tests/api", "tests/registry"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout.splitlines()[-1]
