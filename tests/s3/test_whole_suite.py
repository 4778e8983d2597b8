"""The registry's whole suite, run once more with every registry on S3 (SeaweedFS).

The spec tests (tests/api, tests/registry) and the interop tests with real clients (skopeo, podman,
docker, distribution as the oracle on the same bucket) then store everything in the bucket; the
tests that look at the stored layout read it there (`RegistryServer.storage`). See
`tests/s3/suite.py` for how registries are started.

In-process apps (tests/registry, `create_app(config)` on a directory) get the S3 driver too,
under the prefix standing for their directory. Two of their tests write or read files in that
directory behind the app's back, which has no meaning on S3; they are deselected below by name,
and their S3 counterparts are elsewhere:
- `test_sha512_upload_is_verified_by_rehashing` reads the blob's file: sha512 uploads on S3 are
  covered by tests/api (test_sha512_blob_push_and_get, test_put_with_sha512_digest) and the
  layout by tests/api/test_layout.py, both run here;
- `test_purge_removes_only_stale_uploads` back-dates a `startedat` file on disk: its S3
  counterpart is tests/s3/test_replicas.py::test_purge_removes_stale_uploads_and_aborts_their_parts.
`test_read_only_mode_serves_reads_and_refuses_writes` runs: what it checks is the app's answers;
its last line (no `_uploads` files on disk) holds trivially on S3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent.parent
IN_PROCESS = "tests/registry/test_uploads.py"


@pytest.mark.slow
@pytest.mark.interop
def test_whole_suite_passes_on_s3() -> None:
    require_tool("weed")
    env = {**os.environ, "PYREG_TEST_STORAGE": "s3"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.s3.suite", "-p", "no:cacheprovider",
         "tests/api", "tests/registry", "tests/interop",
         # Files on disk behind the app's back (see the module docstring).
         "--deselect", f"{IN_PROCESS}::test_sha512_upload_is_verified_by_rehashing",
         "--deselect", f"{IN_PROCESS}::test_purge_removes_only_stale_uploads"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=1800,
    )
    elapsed = time.monotonic() - started
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-3000:]
    assert " passed" in summary, summary
    assert "skipped" not in summary or not os.environ.get("CI"), summary
    print(f"S3 whole suite: {summary} ({elapsed:.0f} s)")
