"""`pyreg-registry serve` on S3 configured by the environment alone, as the compose stack does it:
`REGISTRY_STORAGE=s3` replaces the file's filesystem storage and `REGISTRY_STORAGE_S3_*` fill it in;
with two worker processes, and two such registries sharing the bucket as replicas."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.conftest import RegistryServer
from tests.interop.clients import Skopeo
from tests.interop.images import Layout, assert_identical
from tests.s3.registries import MINIMAL, s3_environ, serve_from_environment
from tests.s3.seaweed import BUCKET, SECRET_KEY, SeaweedServer
from tests.s3.suite import S3View

pytestmark = [pytest.mark.slow, pytest.mark.interop]

KiB = 1024


@pytest.fixture
def env_replicas(seaweedfs: SeaweedServer, tmp_path: Path) -> Iterator[list[RegistryServer]]:
    root = f"/env-{uuid.uuid4().hex[:12]}"
    env = s3_environ(seaweedfs, root)
    servers: list[RegistryServer] = []
    try:
        for _ in range(2):
            server = serve_from_environment(env, 2, tmp_path)
            server.view = S3View(seaweedfs.shared_client(), BUCKET, root.strip("/"))
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            server.stop()  # SIGTERM: uvicorn's supervisor stops its workers


def test_effective_config_is_s3_with_secrets_masked(seaweedfs: SeaweedServer) -> None:
    env = s3_environ(seaweedfs, "/shown")
    out = subprocess.run([sys.executable, "-m", "pyreg.registry.cli", "config", str(MINIMAL)],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert "s3:" in out and "filesystem" not in out
    assert f"regionendpoint: {seaweedfs.endpoint}" in out
    assert SECRET_KEY not in out


def test_two_replicas_of_two_workers_from_the_environment(
    env_replicas: list[RegistryServer], skopeo: Skopeo, image: Layout, tmp_path: Path
) -> None:
    a, b = env_replicas
    # A chunked upload hopping between replicas and, as every request opens a new connection,
    # between the workers of each.
    data = os.urandom(6 * 1024 * KiB + 77)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = httpx.post(f"{a.url}/v2/env/chunked/blobs/uploads/")
    assert r.status_code == 202, r.text
    path = httpx.URL(urljoin(a.url, r.headers["location"])).raw_path.decode()
    step = 1024 * KiB
    for n, start in enumerate(range(0, len(data), step)):
        chunk = data[start : start + step]
        server = (a, b)[n % 2]
        r = httpx.patch(urljoin(server.url, path), content=chunk,
                        headers={"Content-Range": f"{start}-{start + len(chunk) - 1}"})
        assert r.status_code == 202, f"PATCH {start} on {server.host}: {r.status_code} {r.text}"
        path = httpx.URL(urljoin(server.url, r.headers["location"])).raw_path.decode()
    r = httpx.put(urljoin(b.url, path), params={"digest": digest})
    assert r.status_code == 201, r.text
    got = httpx.get(f"{a.url}/v2/env/chunked/blobs/{digest}", follow_redirects=True)
    assert got.content == data

    # Real clients through either replica; blobs come from the bucket by presigned redirects.
    skopeo.copy(image.ref, f"docker://{a.host}/env/app:v1")
    dest = tmp_path / "pulled"
    skopeo.copy(f"docker://{b.host}/env/app:v1", f"oci:{dest}:v1")
    assert_identical(image, dest, "v1")
    stored = {p.split("/")[-2] for p in a.storage.files("docker/registry/v2/blobs")
              if p.endswith("/data")}
    assert {d.split(":")[1] for d in image.all_digests()} | {digest[7:]} == stored
