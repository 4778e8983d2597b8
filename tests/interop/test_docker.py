"""docker push, pull and run through the registry, with a dockerd that the suite starts itself.

Debian's dockerd (20.10) cannot ``docker load`` an OCI layout, so skopeo turns the built layout
into a docker-archive first. Docker pushes with its streaming PATCH (no Content-Range), HEADs
before each upload, mounts blobs it has pushed to another repository, and writes a Docker
schema2 manifest of its own (recompressed layers): its digest is compared with what the registry
serves and with what ``docker pull`` reports, not with the OCI layout.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import RegistryServer, require_tool
from tests.interop.clients import Docker, Skopeo
from tests.interop.images import Layout

pytestmark = pytest.mark.interop

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="session")
def loaded(docker: Docker, image: Layout, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test image, loaded into the session's dockerd under a local name."""
    skopeo = Skopeo(require_tool("skopeo"), tmp_path_factory.mktemp("skopeo"))
    archive = tmp_path_factory.mktemp("archive") / "image.tar"
    name = "pyreg-interop/busybox:v1"
    skopeo.copy(image.ref, f"docker-archive:{archive}:{name}")
    out = docker("load", "--input", str(archive)).stdout
    assert f"Loaded image: {name}" in out, out
    return name


def test_push_pull_run(target: RegistryServer, docker: Docker, loaded: str, image: Layout) -> None:
    ref = f"{target.host}/interop/docker:v1"
    docker("tag", loaded, ref)
    digest, _ = docker.push(ref)

    r = httpx.get(
        f"{target.url}/v2/interop/docker/manifests/v1", headers={"Accept": DOCKER_MANIFEST}
    )
    assert r.status_code == 200, f"{r.status_code} {r.text}"
    assert r.headers["content-type"] == DOCKER_MANIFEST
    assert r.headers["docker-content-digest"] == digest
    manifest = r.json()
    assert manifest["mediaType"] == DOCKER_MANIFEST and len(manifest["layers"]) == 3
    for layer in manifest["layers"]:
        head = httpx.head(f"{target.url}/v2/interop/docker/blobs/{layer['digest']}")
        assert head.status_code == 200 and int(head.headers["content-length"]) == layer["size"]

    # Forget the image locally, then pull it back: the same manifest digest.
    docker("rmi", ref)
    docker("rmi", loaded)
    pulled = docker("pull", ref).stdout
    assert f"Digest: {digest}" in pulled, pulled
    assert f"{target.host}/interop/docker@{digest}" in docker.repo_digests(ref)
    by_digest = docker("pull", f"{target.host}/interop/docker@{digest}").stdout
    assert f"Digest: {digest}" in by_digest, by_digest

    out = docker("run", "--rm", "--network", "none", ref, "echo", "hello").stdout
    assert out == "hello\n"
    assert docker("run", "--rm", "--network", "none", ref).stdout == image.images[0].marker
    listing = docker("run", "--rm", "--network", "none", ref, "ls", "/etc").stdout.split()
    assert "pyreg-test" in listing and "pyreg-removed" not in listing

    # Restore the local name for the other tests of the session.
    docker("tag", ref, loaded)
    docker("rmi", ref)


def test_push_to_second_repository_mounts(
    target: RegistryServer, docker: Docker, loaded: str
) -> None:
    first = f"{target.host}/interop/docker-a:v1"
    second = f"{target.host}/interop/docker-b:v1"
    docker("tag", loaded, first)
    docker("tag", loaded, second)
    digest_a, _ = docker.push(first)
    digest_b, out = docker.push(second)
    # Docker remembers where it pushed each layer and mounts instead of uploading again.
    mounted = re.findall(r"Mounted from interop/docker-a", out)
    assert len(mounted) == 3, out
    assert digest_a == digest_b

    # A re-push of the same image uploads nothing: every layer already exists.
    _, again = docker.push(second)
    assert again.count("Layer already exists") == 3, again

    for ref in (first, second):
        docker("rmi", ref)
    docker("pull", second)
    assert f"{target.host}/interop/docker-b@{digest_b}" in docker.repo_digests(second)
    docker("rmi", second)


def test_pull_oci_image_pushed_by_skopeo(
    target: RegistryServer, docker: Docker, skopeo: Skopeo, image: Layout, tmp_path: Path
) -> None:
    """docker pulls an OCI manifest (not its own format), and the digest is the one pushed."""
    ref = f"{target.host}/interop/docker-oci:v1"
    skopeo.copy(image.ref, f"docker://{ref}")
    out = docker("pull", ref).stdout
    assert f"Digest: {image.top.digest}" in out, out
    assert f"{target.host}/interop/docker-oci@{image.top.digest}" in docker.repo_digests(ref)
    assert docker("run", "--rm", "--network", "none", ref, "cat", "/etc/pyreg-test").stdout == (
        image.images[0].marker
    )
    docker("rmi", ref)
