"""Manifests: every media type, exact bytes, headers, validation, deletion, digests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    ACCEPT_ALL,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_DIGEST,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Api,
    assert_error,
    config_bytes,
    descriptor,
    digest_of,
    docker_manifest,
    dumps,
    empty_descriptor,
    index_of,
    oci_manifest,
    random_bytes,
    unique_repo,
)
from tests.conftest import RegistryServer


def _image(api: Api, repo: str, media_type: str = OCI_MANIFEST, **extra: Any) -> tuple[bytes, str]:
    config = config_bytes()
    layers = [random_bytes(50), random_bytes(60)]
    api.push_blobs(repo, config, *layers)
    m = (
        docker_manifest(config, layers)
        if media_type == DOCKER_MANIFEST
        else oci_manifest(config, layers, **extra)
    )
    body = dumps(m)
    return body, media_type


def _oci_manifest(api: Api, repo: str) -> tuple[bytes, str]:
    return _image(api, repo)


def _oci_manifest_odd_bytes(api: Api, repo: str) -> tuple[bytes, str]:
    """Unusual whitespace and key order: the registry must hand back these exact bytes."""
    config = config_bytes()
    layer = random_bytes(70)
    api.push_blobs(repo, config, layer)
    c, lyr = descriptor(config, OCI_CONFIG), descriptor(layer, OCI_LAYER)
    text = (
        '{\n\t"layers" : [ {"size":' + str(lyr["size"]) + ',   "digest": "' + lyr["digest"] + '",'
        ' "mediaType":"' + lyr["mediaType"] + '"} ],\r\n'
        '   "config":{"digest":"' + c["digest"] + '","size":' + str(c["size"]) + ","
        '"mediaType":"' + c["mediaType"] + '"},'
        '"schemaVersion":2 ,  "mediaType" : "' + OCI_MANIFEST + '",\n'
        ' "annotations": {"z": "1", "a": "\\u00e9t\\u00e9"}  }\n\n'
    )
    return text.encode(), OCI_MANIFEST


def _oci_manifest_without_media_type(api: Api, repo: str) -> tuple[bytes, str]:
    config = config_bytes()
    layer = random_bytes(30)
    api.push_blobs(repo, config, layer)
    return dumps(oci_manifest(config, [layer], media_type_field=False)), OCI_MANIFEST


def _docker_manifest(api: Api, repo: str) -> tuple[bytes, str]:
    return _image(api, repo, DOCKER_MANIFEST)


def _oci_index(api: Api, repo: str) -> tuple[bytes, str]:
    children = []
    for _ in range(2):
        body, mt = _image(api, repo)
        assert api.put_manifest(repo, digest_of(body), body, mt).status_code == 201
        children.append((body, mt))
    return dumps(index_of(children)), OCI_INDEX


def _oci_index_without_media_type(api: Api, repo: str) -> tuple[bytes, str]:
    body, _mt = _oci_index(api, repo)
    idx = json.loads(body)
    del idx["mediaType"]
    return dumps(idx), OCI_INDEX


def _docker_list(api: Api, repo: str) -> tuple[bytes, str]:
    children = []
    for _ in range(2):
        body, mt = _image(api, repo, DOCKER_MANIFEST)
        assert api.put_manifest(repo, digest_of(body), body, mt).status_code == 201
        children.append((body, mt))
    return dumps(index_of(children, DOCKER_LIST)), DOCKER_LIST


def _artifact(api: Api, repo: str) -> tuple[bytes, str]:
    data = random_bytes(90)
    api.push_blobs(repo, EMPTY_JSON, data)
    m = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1+json",
        "config": empty_descriptor(),
        "layers": [descriptor(data, "application/vnd.example.sbom.layer.v1")],
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    return dumps(m), OCI_MANIFEST


def _artifact_empty_layers(api: Api, repo: str) -> tuple[bytes, str]:
    api.push_blob(repo, EMPTY_JSON)
    m = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.marker",
        "config": empty_descriptor(),
        "layers": [empty_descriptor()],
    }
    return dumps(m), OCI_MANIFEST


def _oci_index_empty(api: Api, repo: str) -> tuple[bytes, str]:
    api.push_blob(repo, random_bytes(3))  # the repository exists
    return (
        b'{"schemaVersion":2,"mediaType":"' + OCI_INDEX.encode() + b'","manifests":[]}',
        OCI_INDEX,
    )


KINDS: dict[str, Callable[[Api, str], tuple[bytes, str]]] = {
    "oci-manifest": _oci_manifest,
    "oci-manifest-odd-bytes": _oci_manifest_odd_bytes,
    "oci-manifest-no-mediatype": _oci_manifest_without_media_type,
    "docker-manifest": _docker_manifest,
    "oci-index": _oci_index,
    "oci-index-no-mediatype": _oci_index_without_media_type,
    "oci-index-empty": _oci_index_empty,
    "docker-list": _docker_list,
    "artifact": _artifact,
    "artifact-empty-layers": _artifact_empty_layers,
}


def _check_served(r: httpx.Response, body: bytes, media_type: str, head: bool = False) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media_type
    assert r.headers["docker-content-digest"] == digest_of(body)
    assert r.headers["content-length"] == str(len(body))
    assert r.content == (b"" if head else body)


@pytest.mark.parametrize("kind", list(KINDS))
def test_put_get_head_delete_by_tag_and_digest(api: Api, repo: str, kind: str) -> None:
    body, media_type = KINDS[kind](api, repo)
    d = digest_of(body)
    r = api.put_manifest(repo, "v1", body, media_type)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    assert api.upload_path(r).endswith(f"/v2/{repo}/manifests/{d}") or api.upload_path(r).endswith(
        f"/v2/{repo}/manifests/v1"
    )
    for ref in ("v1", d):
        _check_served(api.get_manifest(repo, ref), body, media_type)
        _check_served(api.get_manifest(repo, ref, "HEAD"), body, media_type, head=True)
    # Location leads to the manifest.
    _check_served(
        api.client.get(api.upload_path(r), headers={"Accept": ACCEPT_ALL}), body, media_type
    )
    # Delete by digest: both references go.
    r = api.client.delete(f"/v2/{repo}/manifests/{d}")
    assert r.status_code == 202, r.text
    assert_error(api.get_manifest(repo, d), 404, "MANIFEST_UNKNOWN")
    assert_error(api.get_manifest(repo, d, "HEAD"), 404)
    r = api.get_manifest(repo, "v1")
    assert_error(r, 404, "MANIFEST_UNKNOWN")
    # No tag may be left listed that resolves to nothing.
    r = api.tags(repo)
    if r.status_code == 200:
        assert "v1" not in (r.json().get("tags") or [])
    else:
        assert_error(r, 404, "NAME_UNKNOWN")


@pytest.mark.parametrize("kind", ["oci-manifest", "oci-index", "artifact"])
def test_put_by_digest_without_tag(api: Api, repo: str, kind: str) -> None:
    body, media_type = KINDS[kind](api, repo)
    d = digest_of(body)
    r = api.put_manifest(repo, d, body, media_type)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    _check_served(api.get_manifest(repo, d), body, media_type)
    assert "v1" not in (api.tags(repo).json().get("tags") or [])


def test_put_by_sha512_digest(api: Api, repo: str) -> None:
    body, media_type = _oci_manifest(api, repo)
    d512 = digest_of(body, "sha512")
    r = api.put_manifest(repo, d512, body, media_type)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] in (d512, digest_of(body))
    got = api.get_manifest(repo, d512)
    assert got.status_code == 200, got.text
    assert got.content == body
    assert got.headers["content-type"] == media_type
    assert got.headers["docker-content-digest"] in (d512, digest_of(body))


def test_put_by_digest_that_does_not_match_the_body_is_400(api: Api, repo: str) -> None:
    body, media_type = _oci_manifest(api, repo)
    wrong = digest_of(body + b" ")
    r = api.put_manifest(repo, wrong, body, media_type)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(api.get_manifest(repo, wrong), 404, "MANIFEST_UNKNOWN")
    assert_error(api.get_manifest(repo, digest_of(body)), 404, {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"})


def test_put_by_sha512_digest_that_does_not_match_is_400(api: Api, repo: str) -> None:
    body, media_type = _oci_manifest(api, repo)
    wrong = digest_of(body + b"\n", "sha512")
    assert_error(api.put_manifest(repo, wrong, body, media_type), 400, "DIGEST_INVALID")


def test_retag_moves_the_tag(api: Api, repo: str) -> None:
    a, mt = _oci_manifest(api, repo)
    b, _ = _oci_manifest(api, repo)
    assert api.put_manifest(repo, "latest", a, mt).status_code == 201
    assert api.put_manifest(repo, "latest", b, mt).status_code == 201
    _check_served(api.get_manifest(repo, "latest"), b, mt)
    # The old manifest is still there by digest.
    _check_served(api.get_manifest(repo, digest_of(a)), a, mt)


def test_same_manifest_pushed_twice_is_idempotent(api: Api, repo: str) -> None:
    body, mt = _oci_manifest(api, repo)
    for _ in range(2):
        r = api.put_manifest(repo, "same", body, mt)
        assert r.status_code == 201
        assert r.headers["docker-content-digest"] == digest_of(body)


def test_tag_delete_removes_only_the_tag(api: Api, repo: str) -> None:
    body, mt = _oci_manifest(api, repo)
    d = digest_of(body)
    assert api.put_manifest(repo, "gone", body, mt).status_code == 201
    assert api.put_manifest(repo, "kept", body, mt).status_code == 201
    r = api.client.delete(f"/v2/{repo}/manifests/gone")
    assert r.status_code == 202, r.text
    assert_error(api.get_manifest(repo, "gone"), 404, "MANIFEST_UNKNOWN")
    _check_served(api.get_manifest(repo, d), body, mt)
    _check_served(api.get_manifest(repo, "kept"), body, mt)
    tags = api.tags(repo).json()["tags"]
    assert "gone" not in tags and "kept" in tags
    # Deleting it again: unknown.
    assert_error(api.client.delete(f"/v2/{repo}/manifests/gone"), 404, "MANIFEST_UNKNOWN")


def test_unknown_references_are_404_manifest_unknown(api: Api, repo: str) -> None:
    _oci_manifest(api, repo)  # the repository exists (it has blobs)
    body, mt = _oci_manifest(api, repo)
    assert api.put_manifest(repo, "exists", body, mt).status_code == 201
    unknown = digest_of(random_bytes(16))
    for method in ("GET", "HEAD"):
        assert_error(api.get_manifest(repo, "nosuchtag", method), 404, "MANIFEST_UNKNOWN")
        assert_error(api.get_manifest(repo, unknown, method), 404, "MANIFEST_UNKNOWN")
    assert_error(api.client.delete(f"/v2/{repo}/manifests/{unknown}"), 404, "MANIFEST_UNKNOWN")
    assert_error(api.client.delete(f"/v2/{repo}/manifests/nosuchtag"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("ref", ["latest", digest_of(b"nothing")])
def test_manifest_in_unknown_repository_is_404(api: Api, ref: str) -> None:
    r = api.get_manifest(unique_repo("nothere"), ref)
    assert_error(r, 404, {"NAME_UNKNOWN", "MANIFEST_UNKNOWN"})


def test_blob_endpoint_does_not_serve_manifests_of_other_repositories(api: Api, repo: str) -> None:
    body, mt = _oci_manifest(api, repo)
    d = digest_of(body)
    assert api.put_manifest(repo, "t", body, mt).status_code == 201
    other = unique_repo("other")
    api.push_blob(other, random_bytes(5))
    assert_error(api.get_manifest(other, d), 404, "MANIFEST_UNKNOWN")


# ---- validation


def _unchanged(api: Api, repo: str, ref: str, body: bytes) -> None:
    assert_error(api.get_manifest(repo, ref), 404, {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"})
    assert_error(api.get_manifest(repo, digest_of(body)), 404, {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"})


@pytest.mark.parametrize(
    ("body", "media_type"),
    [
        (b"{not json", OCI_MANIFEST),
        (b"", OCI_MANIFEST),
        (b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'"', OCI_MANIFEST),
        (b"[]", OCI_MANIFEST),
        (b'"a string"', OCI_MANIFEST),
        (b"\xff\xfe{}", OCI_MANIFEST),
        (b"{not json", OCI_INDEX),
        (b"{not json", DOCKER_MANIFEST),
        (b"{not json", DOCKER_LIST),
    ],
    ids=[
        "garbage",
        "empty",
        "truncated",
        "array",
        "string",
        "bad-utf8",
        "index",
        "docker",
        "docker-list",
    ],
)
def test_malformed_manifest_is_400_manifest_invalid(
    api: Api, repo: str, body: bytes, media_type: str
) -> None:
    api.push_blob(repo, random_bytes(4))
    r = api.put_manifest(repo, "bad", body, media_type)
    assert_error(r, 400, "MANIFEST_INVALID")
    assert_error(api.get_manifest(repo, "bad"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize(
    ("body_type", "content_type"),
    [
        (DOCKER_MANIFEST, OCI_MANIFEST),
        (OCI_MANIFEST, DOCKER_MANIFEST),
        (OCI_INDEX, OCI_MANIFEST),
        (OCI_MANIFEST, OCI_INDEX),
        (DOCKER_LIST, OCI_INDEX),
    ],
)
def test_media_type_inconsistent_with_content_type_is_400(
    api: Api, repo: str, body_type: str, content_type: str
) -> None:
    config = config_bytes()
    layer = random_bytes(20)
    api.push_blobs(repo, config, layer)
    if body_type in (OCI_INDEX, DOCKER_LIST):
        child, _ = _oci_manifest(api, repo)
        assert api.put_manifest(repo, digest_of(child), child, OCI_MANIFEST).status_code == 201
        m = index_of([(child, OCI_MANIFEST)], media_type=body_type)
    else:
        m = oci_manifest(config, [layer])
        m["mediaType"] = body_type
    body = dumps(m)
    r = api.put_manifest(repo, "mixed", body, content_type)
    assert_error(r, 400, "MANIFEST_INVALID")
    _unchanged(api, repo, "mixed", body)


def test_wrong_schema_version_is_400(api: Api, repo: str) -> None:
    config = config_bytes()
    api.push_blob(repo, config)
    m = oci_manifest(config, [])
    m["schemaVersion"] = 3
    assert_error(api.put_manifest(repo, "v3", m), 400, "MANIFEST_INVALID")


def test_manifest_without_config_is_400(api: Api, repo: str) -> None:
    layer = random_bytes(10)
    api.push_blob(repo, layer)
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [descriptor(layer, OCI_LAYER)]}
    assert_error(api.put_manifest(repo, "noconfig", m), 400, {"MANIFEST_INVALID"})


@pytest.mark.parametrize("missing", ["layer", "config", "both"])
@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_manifest_referencing_unknown_blob_is_400_manifest_blob_unknown(
    api: Api, repo: str, missing: str, media_type: str
) -> None:
    config = config_bytes()
    layer = random_bytes(33)
    if missing == "layer":
        api.push_blob(repo, config)
    elif missing == "config":
        api.push_blob(repo, layer)
    else:
        api.push_blob(repo, random_bytes(3))
    m = (
        docker_manifest(config, [layer])
        if media_type == DOCKER_MANIFEST
        else oci_manifest(config, [layer])
    )
    body = dumps(m)
    r = api.put_manifest(repo, "incomplete", body, media_type)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    _unchanged(api, repo, "incomplete", body)


def test_manifest_referencing_a_blob_of_another_repository_is_400(api: Api, repo: str) -> None:
    config = config_bytes()
    layer = random_bytes(44)
    api.push_blob(repo, config)
    api.push_blob(unique_repo("elsewhere"), layer)  # in the registry, not in this repository
    body = dumps(oci_manifest(config, [layer]))
    assert_error(api.put_manifest(repo, "scoped", body, OCI_MANIFEST), 400, "MANIFEST_BLOB_UNKNOWN")
    _unchanged(api, repo, "scoped", body)


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_index_with_missing_child_manifest_is_400_manifest_blob_unknown(
    api: Api, repo: str, media_type: str
) -> None:
    child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    present, _ = _image(api, repo, child_type)
    assert api.put_manifest(repo, digest_of(present), present, child_type).status_code == 201
    absent, _ = _image(api, repo, child_type)  # blobs pushed, manifest never
    body = dumps(index_of([(present, child_type), (absent, child_type)], media_type=media_type))
    r = api.put_manifest(repo, "partial", body, media_type)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    _unchanged(api, repo, "partial", body)


def test_manifest_over_4_mib_is_413_and_not_stored(api: Api, repo: str) -> None:
    config = config_bytes()
    api.push_blob(repo, config)
    m = oci_manifest(config, [], annotations={"padding": "x" * (4 * 1024 * 1024 + 1)})
    body = dumps(m)
    assert len(body) > 4 * 1024 * 1024
    r = api.put_manifest(repo, "huge", body, OCI_MANIFEST)
    assert_error(r, 413)
    _unchanged(api, repo, "huge", body)


def test_manifest_just_under_4_mib_is_accepted(api: Api, repo: str) -> None:
    config = config_bytes()
    api.push_blob(repo, config)
    m = oci_manifest(config, [], annotations={"padding": ""})
    overhead = len(dumps(m))
    m["annotations"]["padding"] = "x" * (4 * 1024 * 1024 - overhead)
    body = dumps(m)
    assert len(body) == 4 * 1024 * 1024
    r = api.put_manifest(repo, "big", body, OCI_MANIFEST)
    assert r.status_code == 201, r.text[:300]
    assert api.get_manifest(repo, "big").content == body


@pytest.mark.parametrize("ref", ["-bad", ".bad", "a" * 129, "bad+tag", "sha256:" + "a" * 10])
def test_bad_tag_on_put_is_400_and_nothing_stored(
    api: Api, server: RegistryServer, repo: str, ref: str
) -> None:
    body, mt = _oci_manifest(api, repo)
    r = api.put_manifest(repo, ref, body, mt)
    assert_error(r, 400, {"TAG_INVALID", "MANIFEST_INVALID", "DIGEST_INVALID", "NAME_INVALID"})
    r = api.tags(repo)
    assert r.status_code in (200, 404)
    if r.status_code == 200:
        assert ref not in (r.json().get("tags") or [])
    assert_error(api.get_manifest(repo, digest_of(body)), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("ref", ["a" * 128, "_underscore", "UPPER.case-1_x", "0"])
def test_valid_unusual_tags_are_accepted(api: Api, repo: str, ref: str) -> None:
    body, mt = _oci_manifest(api, repo)
    assert api.put_manifest(repo, ref, body, mt).status_code == 201
    _check_served(api.get_manifest(repo, ref), body, mt)
    assert ref in api.tags(repo).json()["tags"]


def test_concurrent_pushes_of_the_same_tag_all_succeed(
    server: RegistryServer, api: Api, repo: str
) -> None:
    bodies = [_oci_manifest(api, repo)[0] for _ in range(8)]
    barrier = threading.Barrier(len(bodies))

    def push(body: bytes) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            barrier.wait()
            return c.put(
                f"/v2/{repo}/manifests/shared", content=body, headers={"Content-Type": OCI_MANIFEST}
            ).status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        assert list(pool.map(push, bodies)) == [201] * len(bodies)
    r = api.get_manifest(repo, "shared")
    assert r.status_code == 200
    assert r.content in bodies
    assert r.headers["docker-content-digest"] == digest_of(r.content)
    for body in bodies:
        _check_served(api.get_manifest(repo, digest_of(body)), body, OCI_MANIFEST)
    assert api.tags(repo).json()["tags"].count("shared") == 1


def test_manifest_digest_is_also_readable_through_blob_endpoint_only_if_linked(
    api: Api, repo: str
) -> None:
    """Pushing a manifest never makes arbitrary blobs readable: the config is, an unknown digest is not."""
    body, mt = _oci_manifest(api, repo)
    assert api.put_manifest(repo, "t", body, mt).status_code == 201
    config_digest = json.loads(body)["config"]["digest"]
    assert api.blob_exists(repo, config_digest)
    assert not api.blob_exists(repo, digest_of(random_bytes(8)))


def test_empty_descriptor_digest_constant() -> None:
    assert digest_of(EMPTY_JSON) == EMPTY_DIGEST
