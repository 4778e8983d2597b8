"""Two registry processes on different ports sharing one bucket: stateless replicas.

Whatever one replica is told, the other knows at once, because nothing that matters lives in a
process: an upload started on one continues and finishes on the other (its multipart upload and
its tail are in the bucket), a manifest pushed through one is pulled through the other, and the
tags listed through either are the same.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from pyreg.registry.app import create_app
from pyreg.registry.config import Config
from pyreg.registry.storage.s3 import S3Driver
from tests.api.helpers import OCI_MANIFEST, config_bytes, digest_of, dumps, oci_manifest
from tests.conftest import RegistryServer
from tests.interop.clients import Skopeo
from tests.interop.images import Layout, assert_identical
from tests.s3.registries import fresh_root, start_s3_pyreg
from tests.s3.seaweed import SeaweedServer, s3_driver

pytestmark = pytest.mark.slow

MiB = 1 << 20


@pytest.fixture
def replicas(seaweedfs: SeaweedServer, tmp_path: Path) -> Iterator[tuple[RegistryServer, ...]]:
    root = fresh_root()
    servers = [start_s3_pyreg(seaweedfs, tmp_path / name, root) for name in ("a", "b")]
    try:
        yield tuple(servers)
    finally:
        for server in servers:
            server.stop()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def patch(client: httpx.Client, location: str, data: bytes, offset: int) -> httpx.Response:
    r = client.patch(location, content=data, headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{offset}-{offset + len(data) - 1}",
    })
    assert r.status_code == 202, f"PATCH at {offset}: {r.status_code} {r.text}"
    assert r.headers["range"] == f"0-{offset + len(data) - 1}"
    return r


def on(server: RegistryServer, location: str) -> str:
    """The same upload URL on another replica (only the host differs)."""
    return urljoin(server.url, httpx.URL(location).raw_path.decode())


def test_chunked_upload_started_on_one_replica_finishes_on_the_other(
    replicas: tuple[RegistryServer, RegistryServer],
) -> None:
    a, b = replicas
    # Chunks that fill S3 parts, fall short of one, and straddle one: every kind of state the
    # bucket holds between requests (parts, a tail, both) is picked up by the other process.
    data = os.urandom(6 * MiB + 3 * MiB + 4 * MiB + 123)
    cuts = [0, 6 * MiB, 9 * MiB, 13 * MiB, len(data)]
    repo = "replicas/chunked"
    with httpx.Client(timeout=60) as client:
        r = client.post(f"{a.url}/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = urljoin(a.url, r.headers["location"])
        for n, (start, end) in enumerate(itertools.pairwise(cuts)):
            server = (a, b)[n % 2]
            location = on(server, location)
            status = client.get(location)
            expected = f"0-{start - 1}" if start else "0-0"
            assert status.status_code == 204 and status.headers["range"] == expected, (
                f"upload status on {server.host}: {status.status_code} {status.headers}")
            r = patch(client, location, data[start:end], start)
            location = urljoin(server.url, r.headers["location"])
        r = client.put(on(a, location), params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        for server in (a, b):
            got = client.get(f"{server.url}/v2/{repo}/blobs/{sha256(data)}",
                             follow_redirects=True)
            assert got.status_code == 200 and hashlib.sha256(got.content).digest() == \
                hashlib.sha256(data).digest()
    assert not a.storage.files(f"docker/registry/v2/repositories/{repo}/_uploads")


def test_manifests_and_tags_are_the_same_through_either_replica(
    replicas: tuple[RegistryServer, RegistryServer],
) -> None:
    a, b = replicas
    repo = "replicas/app"
    with httpx.Client(timeout=60) as client:
        def push(server: RegistryServer, tag: str) -> tuple[bytes, str]:
            config = config_bytes()
            r = client.post(f"{server.url}/v2/{repo}/blobs/uploads/",
                            params={"digest": digest_of(config)}, content=config)
            assert r.status_code == 201, r.text
            body = dumps(oci_manifest(config, []))
            r = client.put(f"{server.url}/v2/{repo}/manifests/{tag}", content=body,
                           headers={"Content-Type": OCI_MANIFEST})
            assert r.status_code == 201, r.text
            return body, digest_of(body)

        def pull(server: RegistryServer, ref: str) -> httpx.Response:
            return client.get(f"{server.url}/v2/{repo}/manifests/{ref}",
                              headers={"Accept": OCI_MANIFEST})

        def tags(server: RegistryServer) -> list[str]:
            r = client.get(f"{server.url}/v2/{repo}/tags/list")
            assert r.status_code == 200, r.text
            return list(r.json()["tags"])

        body, digest = push(a, "v1")
        for ref in ("v1", digest):
            r = pull(b, ref)  # at once: no delay, no retry
            assert r.status_code == 200 and r.content == body
            assert r.headers["docker-content-digest"] == digest
        assert tags(a) == tags(b) == ["v1"]

        # The tag moves through b: a serves the new manifest at once (a's manifest cache is by
        # digest, so it cannot hold the old one for the tag).
        pull(a, "v1")
        body2, digest2 = push(b, "v1")
        assert pull(a, "v1").content == body2
        push(b, "v2")
        assert tags(a) == tags(b) == ["v1", "v2"]

        # A delete through one is seen through the other.
        assert client.delete(f"{a.url}/v2/{repo}/manifests/v2").status_code == 202
        assert pull(b, "v2").status_code == 404
        assert tags(a) == tags(b) == ["v1"]
        assert client.get(f"{b.url}/v2/_catalog").json() == \
            client.get(f"{a.url}/v2/_catalog").json() == {"repositories": [repo]}
        assert digest2 != digest


@pytest.mark.interop
def test_skopeo_pushes_through_one_replica_and_pulls_through_the_other(
    replicas: tuple[RegistryServer, RegistryServer], skopeo: Skopeo, image: Layout,
    tmp_path: Path,
) -> None:
    a, b = replicas
    skopeo.copy(image.ref, f"docker://{a.host}/replicas/skopeo:v1")
    dest = tmp_path / "pulled"
    # Blob GETs through b are redirects to presigned URLs of the bucket: skopeo follows them.
    skopeo.copy(f"docker://{b.host}/replicas/skopeo:v1", f"oci:{dest}:v1")
    assert_identical(image, dest, "v1")
    assert skopeo.list_tags(f"docker://{a.host}/replicas/skopeo") == \
        skopeo.list_tags(f"docker://{b.host}/replicas/skopeo") == ["v1"]


async def test_purge_removes_stale_uploads_and_aborts_their_parts(
    seaweedfs: SeaweedServer, request: pytest.FixtureRequest,
) -> None:
    """An abandoned upload (parts of a multipart upload in flight, a tail, its startedat) goes
    whole when it is old enough, its multipart upload aborted; a recent one stays."""
    driver: S3Driver = s3_driver(seaweedfs, request)
    config = Config()
    config.storage.driver = "s3"
    config.storage.delete_enabled = True
    app = create_app(config, driver=driver)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://r", timeout=60) as c:
        ids = []
        for _ in range(2):
            r = await c.post("/v2/x/blobs/uploads/")
            r = await c.patch(r.headers["location"], content=os.urandom(6 * MiB + 10))
            assert r.status_code == 202, r.text
            ids.append(r.headers["docker-upload-uuid"])
    old, new = ids
    uploads = "/docker/registry/v2/repositories/x/_uploads"
    long_ago = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await driver.put_content(f"{uploads}/{old}/startedat", long_ago.encode())

    def in_flight() -> set[str]:
        listed = driver.client.list_multipart_uploads(Bucket=driver.bucket.name,
                                                      Prefix=driver.bucket.key(uploads))
        return {u["Key"].split("/")[-2] for u in listed.get("Uploads", [])}

    assert in_flight() == {old, new}
    reg = app.app.state.registry  # type: ignore[attr-defined]
    purged = await reg.uploads.purge(3600)
    assert [p.rsplit("/", 1)[1] for p in purged] == [old]
    assert in_flight() == {new}
    assert await driver.list(uploads) == [f"{uploads}/{new}"]
