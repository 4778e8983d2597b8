"""The on-disk layout after a push is distribution's, key for key."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.api.helpers import (
    OCI_MANIFEST,
    Api,
    config_bytes,
    digest_of,
    dumps,
    oci_manifest,
    random_bytes,
    unique_repo,
)
from tests.conftest import RegistryServer


def _hex(d: str) -> str:
    return d.split(":", 1)[1]


def test_layout_after_push(api: Api, server: RegistryServer) -> None:
    repo = unique_repo("layout")
    config = config_bytes()
    layer = random_bytes(4096)
    api.push_blobs(repo, config, layer)
    body = dumps(oci_manifest(config, [layer]))
    md = digest_of(body)
    assert api.put_manifest(repo, "v1", body, OCI_MANIFEST).status_code == 201

    v2 = Path(server.root) / "docker/registry/v2"
    for data in (config, layer, body):
        d = digest_of(data)
        h = _hex(d)
        blob = v2 / "blobs/sha256" / h[:2] / h / "data"
        assert blob.read_bytes() == data
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == h
    r = v2 / "repositories" / repo
    for data in (config, layer):
        d = digest_of(data)
        assert (r / "_layers/sha256" / _hex(d) / "link").read_text() == d
    assert (r / "_manifests/revisions/sha256" / _hex(md) / "link").read_text() == md
    assert (r / "_manifests/tags/v1/current/link").read_text() == md
    assert (r / "_manifests/tags/v1/index/sha256" / _hex(md) / "link").read_text() == md

    # Retagging keeps the tag's history in its index.
    config2 = config_bytes()
    api.push_blob(repo, config2)
    body2 = dumps(oci_manifest(config2, [layer]))
    md2 = digest_of(body2)
    assert api.put_manifest(repo, "v1", body2, OCI_MANIFEST).status_code == 201
    assert (r / "_manifests/tags/v1/current/link").read_text() == md2
    assert (r / "_manifests/tags/v1/index/sha256" / _hex(md) / "link").read_text() == md
    assert (r / "_manifests/tags/v1/index/sha256" / _hex(md2) / "link").read_text() == md2

    # A tag delete removes the tag directory; the revision stays.
    assert api.client.delete(f"/v2/{repo}/manifests/v1").status_code == 202
    assert not (r / "_manifests/tags/v1").exists()
    assert (r / "_manifests/revisions/sha256" / _hex(md2) / "link").exists()


def test_blobs_are_stored_once_across_repositories(api: Api, server: RegistryServer) -> None:
    data = random_bytes(2048)
    d = digest_of(data)
    repos = [unique_repo("dedup") for _ in range(3)]
    for repo in repos:
        api.push_blob(repo, data)
    v2 = Path(server.root) / "docker/registry/v2"
    h = _hex(d)
    found = [p for p in (v2 / "blobs").rglob("data") if p.parent.name == h]
    assert found == [v2 / "blobs/sha256" / h[:2] / h / "data"]
    for repo in repos:
        assert (v2 / "repositories" / repo / "_layers/sha256" / h / "link").read_text() == d


def test_finished_and_cancelled_uploads_leave_no_upload_state(
    api: Api, server: RegistryServer
) -> None:
    repo = unique_repo("uploads")
    api.push_blob(repo, random_bytes(100))
    r = api.start_upload(repo)
    assert api.client.delete(api.upload_path(r)).status_code == 204
    uploads = Path(server.root) / "docker/registry/v2/repositories" / repo / "_uploads"
    # Empty directories may remain; no upload data or state may.
    assert not uploads.exists() or not [p for p in uploads.rglob("*") if p.is_file()]
