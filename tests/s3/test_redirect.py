"""Blob GETs on S3: a 307 to a presigned URL by default (bytes flow from the bucket, as with
distribution), or streamed by the registry with `storage.redirect.disable: true`; HEAD is always
answered by the registry from the object's metadata."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from tests.conftest import RegistryServer
from tests.s3.registries import fresh_root, start_s3_pyreg
from tests.s3.seaweed import SeaweedServer

pytestmark = pytest.mark.slow

MiB = 1 << 20


def push(server: RegistryServer, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = httpx.post(f"{server.url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                   content=data, timeout=60)
    assert r.status_code == 201, r.text
    return digest


def assert_head(server: RegistryServer, repo: str, digest: str, size: int) -> None:
    r = httpx.head(f"{server.url}/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200, r.status_code  # never a redirect
    assert r.headers["docker-content-digest"] == digest
    assert int(r.headers["content-length"]) == size


def test_get_redirects_to_a_presigned_url(seaweedfs: SeaweedServer, tmp_path: Path) -> None:
    server = start_s3_pyreg(seaweedfs, tmp_path, fresh_root())
    try:
        data = os.urandom(6 * MiB + 1)
        digest = push(server, "redirect/on", data)
        assert_head(server, "redirect/on", digest, len(data))
        url = f"{server.url}/v2/redirect/on/blobs/{digest}"
        r = httpx.get(url)
        assert r.status_code == 307
        assert r.headers["docker-content-digest"] == digest
        location = httpx.URL(r.headers["location"])
        assert f"{location.scheme}://{location.host}:{location.port}" == seaweedfs.endpoint
        assert "X-Amz-Signature" in str(location)
        # A client follows it to the bytes, ranges included, with no credentials of its own.
        got = httpx.get(url, follow_redirects=True, timeout=60)
        assert got.status_code == 200 and got.content == data
        part = httpx.get(url, follow_redirects=True, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
    finally:
        server.stop()


def test_redirect_disabled_streams_through_the_registry(
    seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    server = start_s3_pyreg(seaweedfs, tmp_path, fresh_root(), redirect=False)
    try:
        data = os.urandom(6 * MiB + 1)
        digest = push(server, "redirect/off", data)
        assert_head(server, "redirect/off", digest, len(data))
        url = f"{server.url}/v2/redirect/off/blobs/{digest}"
        r = httpx.get(url, timeout=60)
        assert r.status_code == 200 and r.content == data
        assert r.headers["docker-content-digest"] == digest
        part = httpx.get(url, headers={"Range": "bytes=5242870-5242889"})
        assert part.status_code == 206 and part.content == data[5242870:5242890]
        assert part.headers["content-range"] == f"bytes 5242870-5242889/{len(data)}"
    finally:
        server.stop()
