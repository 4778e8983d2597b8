"""The on-disk layout after a push is distribution's, key for key."""

from __future__ import annotations

import hashlib

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

V2 = "docker/registry/v2"


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

    stored = server.storage  # a directory, or keys in a bucket
    for data in (config, layer, body):
        d = digest_of(data)
        h = _hex(d)
        blob = stored.read(f"{V2}/blobs/sha256/{h[:2]}/{h}/data")
        assert blob == data
        assert hashlib.sha256(blob).hexdigest() == h
    r = f"{V2}/repositories/{repo}"

    def link(path: str) -> str:
        return stored.read(f"{r}/{path}/link").decode()

    for data in (config, layer):
        d = digest_of(data)
        assert link(f"_layers/sha256/{_hex(d)}") == d
    assert link(f"_manifests/revisions/sha256/{_hex(md)}") == md
    assert link("_manifests/tags/v1/current") == md
    assert link(f"_manifests/tags/v1/index/sha256/{_hex(md)}") == md

    # Retagging keeps the tag's history in its index.
    config2 = config_bytes()
    api.push_blob(repo, config2)
    body2 = dumps(oci_manifest(config2, [layer]))
    md2 = digest_of(body2)
    assert api.put_manifest(repo, "v1", body2, OCI_MANIFEST).status_code == 201
    assert link("_manifests/tags/v1/current") == md2
    assert link(f"_manifests/tags/v1/index/sha256/{_hex(md)}") == md
    assert link(f"_manifests/tags/v1/index/sha256/{_hex(md2)}") == md2

    # A tag delete removes the tag directory; the revision stays.
    assert api.client.delete(f"/v2/{repo}/manifests/v1").status_code == 202
    assert not stored.exists(f"{r}/_manifests/tags/v1")
    assert stored.exists(f"{r}/_manifests/revisions/sha256/{_hex(md2)}/link")


def test_blobs_are_stored_once_across_repositories(api: Api, server: RegistryServer) -> None:
    data = random_bytes(2048)
    d = digest_of(data)
    repos = [unique_repo("dedup") for _ in range(3)]
    for repo in repos:
        api.push_blob(repo, data)
    stored = server.storage
    h = _hex(d)
    found = [p for p in stored.files(f"{V2}/blobs") if p.endswith(f"/{h}/data")]
    assert found == [f"{V2}/blobs/sha256/{h[:2]}/{h}/data"]
    for repo in repos:
        assert stored.read(f"{V2}/repositories/{repo}/_layers/sha256/{h}/link").decode() == d


def test_finished_and_cancelled_uploads_leave_no_upload_state(
    api: Api, server: RegistryServer
) -> None:
    repo = unique_repo("uploads")
    api.push_blob(repo, random_bytes(100))
    r = api.start_upload(repo)
    assert api.client.delete(api.upload_path(r)).status_code == 204
    # Empty directories may remain; no upload data or state may.
    assert not server.storage.files(f"{V2}/repositories/{repo}/_uploads")
