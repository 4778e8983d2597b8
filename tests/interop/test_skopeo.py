"""skopeo pushes, pulls, inspects, lists, deletes and copies between repositories.

Each test runs against pyreg and against distribution (the oracle): see ``target_with_oracle``.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import RegistryServer
from tests.interop.clients import Skopeo
from tests.interop.conftest import is_pyreg
from tests.interop.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    Layout,
    assert_identical,
    host_arch,
    read_layout,
    sha256,
)

pytestmark = pytest.mark.interop

ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def get_manifest(server: RegistryServer, repo: str, reference: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT})


def assert_served(server: RegistryServer, repo: str, built: Layout, tag: str) -> None:
    """The registry serves the manifest bytes as pushed, with its media type and digest, and every blob."""
    for reference in (tag, built.top.digest):
        r = get_manifest(server, repo, reference)
        assert r.status_code == 200, f"GET manifest {repo}:{reference}: {r.status_code} {r.text}"
        assert r.content == built.blob(built.top.digest)
        assert r.headers["docker-content-digest"] == built.top.digest
        assert r.headers["content-type"] == built.top.media_type
    for image in built.images:
        r = get_manifest(server, repo, image.manifest.digest)
        assert r.status_code == 200 and r.content == built.blob(image.manifest.digest)
        for digest in image.blob_digests:
            r = httpx.get(f"{server.url}/v2/{repo}/blobs/{digest}", follow_redirects=True)
            assert r.status_code == 200, f"GET blob {repo}@{digest}: {r.status_code} {r.text}"
            assert sha256(r.content) == digest


def test_push_and_pull_multi_layer_image(
    target_with_oracle: RegistryServer, skopeo: Skopeo, image: Layout, tmp_path: Path
) -> None:
    host = target_with_oracle.host
    skopeo.copy(image.ref, f"docker://{host}/interop/busybox:v1")
    assert_served(target_with_oracle, "interop/busybox", image, "v1")

    pulled = tmp_path / "pulled"
    skopeo.copy(f"docker://{host}/interop/busybox:v1", f"oci:{pulled}:v1")
    assert_identical(image, pulled, "v1")


def test_push_and_pull_multi_platform_index(
    target_with_oracle: RegistryServer, skopeo: Skopeo, index_image: Layout, tmp_path: Path
) -> None:
    host = target_with_oracle.host
    ref = f"docker://{host}/interop/multi:multi"
    skopeo.copy(index_image.ref, ref, "--all")
    assert_served(target_with_oracle, "interop/multi", index_image, "multi")
    assert skopeo.inspect_raw(ref) == index_image.blob(index_image.top.digest)

    pulled = tmp_path / "pulled"
    skopeo.copy(ref, f"oci:{pulled}:multi", "--all")
    assert_identical(index_image, pulled, "multi")

    # Without --all skopeo picks the host's platform out of the index, by digest.
    single = tmp_path / "single"
    skopeo.copy(ref, f"oci:{single}:host")
    top, _ = read_layout(single, "host")
    by_arch = {img.arch: img for img in index_image.images}
    assert top.digest == by_arch[host_arch()].manifest.digest


def test_inspect_list_tags_and_delete(
    target_with_oracle: RegistryServer, skopeo: Skopeo, image: Layout, index_image: Layout
) -> None:
    host = target_with_oracle.host
    repo = f"docker://{host}/interop/tags"
    for tag in ("v2", "latest", "v1"):
        skopeo.copy(image.ref, f"{repo}:{tag}")
    skopeo.copy(index_image.ref, f"{repo}:multi", "--all")

    assert skopeo.inspect_raw(f"{repo}:v2") == image.blob(image.top.digest)
    info = skopeo.inspect(f"{repo}:latest")
    assert info["Digest"] == image.top.digest
    assert info["Layers"] == [layer.digest for layer in image.images[0].layers]
    assert sorted(info["RepoTags"]) == ["latest", "multi", "v1", "v2"]
    tags = skopeo.list_tags(repo)
    assert sorted(tags) == ["latest", "multi", "v1", "v2"]
    if is_pyreg(target_with_oracle):
        assert tags == sorted(tags), (
            "the spec wants tags in lexical order (distribution 2.8 ignores it)"
        )

    # Deleting the index removes it and its tag, not the child manifests nor the other tags.
    skopeo.delete(f"{repo}:multi")
    assert (
        get_manifest(target_with_oracle, "interop/tags", index_image.top.digest).status_code == 404
    )
    assert get_manifest(target_with_oracle, "interop/tags", "multi").status_code == 404
    assert skopeo("inspect", "--tls-verify=false", f"{repo}:multi", check=False).returncode != 0
    assert sorted(skopeo.list_tags(repo)) == ["latest", "v1", "v2"]
    for child in index_image.images:
        assert (
            get_manifest(target_with_oracle, "interop/tags", child.manifest.digest).status_code
            == 200
        )

    # Deleting a manifest by digest takes every tag that pointed to it along.
    skopeo.delete(f"{repo}@{image.top.digest}")
    for reference in ("v1", "v2", "latest", image.top.digest):
        r = get_manifest(target_with_oracle, "interop/tags", reference)
        assert r.status_code == 404, f"{reference}: {r.status_code}"
        assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_copy_between_repositories_mounts_blobs(
    target_with_oracle: RegistryServer, skopeo: Skopeo, image: Layout, tmp_path: Path
) -> None:
    host = target_with_oracle.host
    skopeo.copy(image.ref, f"docker://{host}/team-a/app:v1")
    for digest in image.images[0].blob_digests:
        r = httpx.head(f"{target_with_oracle.url}/v2/team-b/app/blobs/{digest}")
        assert r.status_code == 404, (
            "a repository must not see blobs before they are linked into it"
        )

    result = skopeo(
        "--debug",
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"docker://{host}/team-a/app:v1",
        f"docker://{host}/team-b/app:v1",
    )
    mounts = [line for line in result.stderr.splitlines() if "Trying to mount" in line]
    assert len(mounts) == len(image.images[0].layers), result.stderr[-3000:]
    assert all("from=team-a%2Fapp" in line for line in mounts)
    # skopeo logs "mount OK" only for a 201 answer; a 202 would have fallen back to an upload.
    assert result.stderr.count("mount OK") == len(mounts), result.stderr[-3000:]

    for digest in image.images[0].blob_digests:
        r = httpx.head(f"{target_with_oracle.url}/v2/team-b/app/blobs/{digest}")
        assert r.status_code == 200, f"HEAD team-b/app@{digest}: {r.status_code}"
        assert int(r.headers["content-length"]) == len(image.blob(digest))
        assert r.headers["docker-content-digest"] == digest
    assert_served(target_with_oracle, "team-b/app", image, "v1")

    pulled = tmp_path / "pulled"
    skopeo.copy(f"docker://{host}/team-b/app:v1", f"oci:{pulled}:v1")
    assert_identical(image, pulled, "v1")
    catalog = httpx.get(f"{target_with_oracle.url}/v2/_catalog").json()
    assert catalog == {"repositories": ["team-a/app", "team-b/app"]}
    assert json.loads(skopeo.inspect_raw(f"docker://{host}/team-b/app:v1")) == json.loads(
        image.blob(image.top.digest)
    )


CONVERSIONS = {
    # skopeo options → (top-level media type, media type of every layer)
    "docker-schema2": (
        ["--format", "v2s2"],
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ),
    "docker-manifest-list": (
        ["--format", "v2s2", "--all"],
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ),
    "oci-zstd": (
        ["--dest-compress-format", "zstd"],
        OCI_MANIFEST,
        "application/vnd.oci.image.layer.v1.tar+zstd",
    ),
}


@pytest.mark.parametrize("conversion", sorted(CONVERSIONS))
def test_push_converted_formats(
    conversion: str,
    target_with_oracle: RegistryServer,
    skopeo: Skopeo,
    image: Layout,
    index_image: Layout,
    tmp_path: Path,
) -> None:
    """What skopeo writes in Docker's formats or with zstd layers is served back byte for byte."""
    options, media_type, layer_type = CONVERSIONS[conversion]
    source = index_image if "--all" in options else image
    repo = f"interop/{conversion}"
    ref = f"docker://{target_with_oracle.host}/{repo}:v1"
    skopeo.copy(source.ref, ref, *options)

    raw = skopeo.inspect_raw(ref)
    top = json.loads(raw)
    assert top["mediaType"] == media_type
    r = get_manifest(target_with_oracle, repo, "v1")
    assert r.status_code == 200 and r.content == raw
    assert r.headers["content-type"] == media_type
    assert r.headers["docker-content-digest"] == sha256(raw)

    # dir: keeps the manifests and blobs exactly as the registry serves them.
    manifests = [top] if "manifests" not in top else []
    for child in top.get("manifests", []):
        r = get_manifest(target_with_oracle, repo, child["digest"])
        assert r.status_code == 200 and sha256(r.content) == child["digest"]
        assert r.headers["content-type"] == child["mediaType"]
        manifests.append(r.json())
    pulled = tmp_path / "dir"
    skopeo.copy(ref, f"dir:{pulled}")
    host_manifest = json.loads((pulled / "manifest.json").read_bytes())
    assert host_manifest in manifests
    for manifest in manifests:
        assert [layer["mediaType"] for layer in manifest["layers"]] == [layer_type] * 3
    for layer in [*host_manifest["layers"], host_manifest["config"]]:
        data = (pulled / layer["digest"].split(":")[1]).read_bytes()
        assert sha256(data) == layer["digest"] and len(data) == layer["size"]
