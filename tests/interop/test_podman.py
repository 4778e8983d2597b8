"""podman pulls, pushes and runs images through the registry, on a throwaway store."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import RegistryServer
from tests.interop.clients import Podman, Skopeo
from tests.interop.images import Layout, host_arch, read_layout

pytestmark = pytest.mark.interop

TLS = "--tls-verify=false"


def test_pull_and_run_an_image_pushed_by_skopeo(
    target: RegistryServer, skopeo: Skopeo, podman: Podman, image: Layout
) -> None:
    ref = f"{target.host}/interop/podman-pull:v1"
    skopeo.copy(image.ref, f"docker://{ref}")

    podman("pull", "--quiet", TLS, ref)
    assert podman.image_digest(ref) == image.top.digest
    assert podman.run_container(ref, "echo", "hello from pyreg") == "hello from pyreg\n"
    # The default command prints the marker of layer 2; layer 3's whiteout removed a file.
    assert podman.run_container(ref) == image.images[0].marker
    listing = podman.run_container(ref, "ls", "/etc").split()
    assert "pyreg-test" in listing and "passwd" in listing and "pyreg-removed" not in listing


def test_push_then_pull_back_identical(
    target: RegistryServer, skopeo: Skopeo, podman: Podman, image: Layout, tmp_path: Path
) -> None:
    podman("pull", "--quiet", image.ref)
    images = podman("images", "--format", "{{.ID}}").stdout.split()
    assert len(images) == 1, images
    ref = f"{target.host}/interop/podman-push:v1"
    podman("tag", images[0], ref)

    digest_file = tmp_path / "digest"
    podman("push", "--quiet", TLS, "--digestfile", str(digest_file), ref)
    pushed = digest_file.read_text().strip()
    r = httpx.head(
        f"{target.url}/v2/interop/podman-push/manifests/v1",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    assert r.status_code == 200 and r.headers["docker-content-digest"] == pushed

    # Pulled back into an empty store: the same manifest digest, and it runs.
    podman.reset()
    podman("pull", "--quiet", TLS, ref)
    assert podman.image_digest(ref) == pushed
    assert podman.run_container(ref, "cat", "/usr/share/pyreg/layer3") == "third layer for amd64\n"

    # skopeo reads the pushed image back blob for blob, as podman wrote it.
    pulled = tmp_path / "pulled"
    skopeo.copy(f"docker://{ref}", f"oci:{pulled}:v1")
    raw = skopeo.inspect_raw(f"docker://{ref}")
    assert raw == (pulled / "blobs" / "sha256" / pushed.split(":")[1]).read_bytes()


def test_multi_platform_pull_and_manifest_push(
    target: RegistryServer, skopeo: Skopeo, podman: Podman, index_image: Layout, tmp_path: Path
) -> None:
    """podman pulls the host's image out of an index; `podman manifest push --all` round-trips it."""
    ref = f"{target.host}/interop/podman-multi:multi"
    skopeo.copy(index_image.ref, f"docker://{ref}", "--all")
    podman("pull", "--quiet", TLS, ref)
    assert podman.image_digest(ref) == index_image.top.digest
    by_arch = {img.arch: img for img in index_image.images}
    assert podman.run_container(ref) == by_arch[host_arch()].marker

    copy_ref = f"{target.host}/interop/podman-multi-copy:multi"
    podman("manifest", "create", "interop-list")
    podman("manifest", "add", TLS, "--all", "interop-list", f"docker://{ref}")
    podman("manifest", "push", TLS, "--all", "interop-list", f"docker://{copy_ref}")

    # The list is podman's own document, but the images in it are ours, byte for byte.
    pushed = json.loads(skopeo.inspect_raw(f"docker://{copy_ref}"))
    assert [m["digest"] for m in pushed["manifests"]] == [
        img.manifest.digest for img in index_image.images
    ]
    pulled = tmp_path / "pulled"
    skopeo.copy(f"docker://{copy_ref}", f"oci:{pulled}:multi", "--all")
    _, blobs = read_layout(pulled, "multi")
    for img in index_image.images:
        for digest in (img.manifest.digest, *img.blob_digests):
            assert blobs[digest] == index_image.blob(digest), digest
