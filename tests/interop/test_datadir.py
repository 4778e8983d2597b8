"""One data directory, two registries: what pyreg writes distribution serves, and the reverse.

A user migrating from ``registry:2`` points pyreg at the old directory; one going back points
distribution at pyreg's. Both ways, every image comes back digest for digest, with its tags, and
the catalog is the same.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import RegistryServer
from tests.interop.clients import Skopeo
from tests.interop.conftest import StartRegistry, is_pyreg
from tests.interop.images import Layout, assert_identical

pytestmark = pytest.mark.interop

V2 = "docker/registry/v2"


def push_everything(server: RegistryServer, skopeo: Skopeo, image: Layout, index: Layout) -> None:
    host = server.host
    for tag in ("v1", "latest"):
        skopeo.copy(image.ref, f"docker://{host}/migrate/app:{tag}")
    skopeo.copy(index.ref, f"docker://{host}/migrate/multi:multi", "--all")
    skopeo.copy(image.ref, f"docker://{host}/deep/nested/path/app:v1")
    # Retagging moves a tag: its history (the tag's index/ links) must carry over too.
    skopeo.copy(index.ref, f"docker://{host}/migrate/app:moving", "--all")
    skopeo.copy(image.ref, f"docker://{host}/migrate/app:moving")


EXPECTED_TAGS = {
    "deep/nested/path/app": ["v1"],
    "migrate/app": ["latest", "moving", "v1"],
    "migrate/multi": ["multi"],
}


def assert_layout(server: RegistryServer, image: Layout, index: Layout) -> None:
    """distribution's layout, key for key (see the architecture note), in the server's storage."""
    stored = server.storage
    for digest in image.all_digests() | index.all_digests():
        hex_ = digest.split(":")[1]
        assert f"{V2}/blobs/sha256/{hex_[:2]}/{hex_}/data" in stored.files(f"{V2}/blobs"), digest
    repo = f"{V2}/repositories/migrate/app"
    top = image.top.digest.split(":")[1]

    def link(path: str) -> str:
        return stored.read(f"{repo}/{path}/link").decode()

    for layer in image.images[0].blob_digests:
        assert link(f"_layers/sha256/{layer.split(':')[1]}") == layer
    assert link(f"_manifests/revisions/sha256/{top}") == image.top.digest
    assert link("_manifests/tags/moving/current") == image.top.digest
    history = f"{repo}/_manifests/tags/moving/index/sha256/"
    names = {p[len(history):].split("/")[0] for p in stored.files(history)}
    assert names == {top, index.top.digest.split(":")[1]}


def assert_serves_everything(
    server: RegistryServer, skopeo: Skopeo, image: Layout, index: Layout, tmp_path: Path
) -> None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    catalog = httpx.get(f"{server.url}/v2/_catalog")
    assert catalog.status_code == 200, catalog.text
    assert sorted(catalog.json()["repositories"]) == sorted(EXPECTED_TAGS)
    for repo, tags in EXPECTED_TAGS.items():
        r = httpx.get(f"{server.url}/v2/{repo}/tags/list")
        assert r.status_code == 200, f"{repo}: {r.status_code} {r.text}"
        assert r.json()["name"] == repo and sorted(r.json()["tags"]) == tags
    pulls = [
        ("migrate/app:v1", image, "v1", []),
        ("migrate/app:latest", image, "latest", []),
        ("migrate/app:moving", image, "moving", []),
        ("deep/nested/path/app:v1", image, "v1", []),
        ("migrate/multi:multi", index, "multi", ["--all"]),
    ]
    for n, (ref, built, tag, extra) in enumerate(pulls):
        dest = tmp_path / f"pulled-{n}"
        skopeo.copy(f"docker://{server.host}/{ref}", f"oci:{dest}:{tag}", *extra)
        assert_identical(built, dest, tag)


@pytest.mark.parametrize(
    ("writer", "reader"), [("pyreg", "distribution"), ("distribution", "pyreg")]
)
def test_data_directory_interchange(
    writer: str,
    reader: str,
    registries: StartRegistry,
    skopeo: Skopeo,
    image: Layout,
    index_image: Layout,
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    first = registries(writer, root)
    push_everything(first, skopeo, image, index_image)
    first.stop()
    assert_layout(first, image, index_image)

    second = registries(reader, root)
    assert_serves_everything(second, skopeo, image, index_image, tmp_path / "second")

    # The reader writes into the same tree; the writer, started again, sees it.
    skopeo.copy(f"docker://{second.host}/migrate/app:v1", f"docker://{second.host}/moved/app:v2")
    r = httpx.delete(f"{second.url}/v2/migrate/app/manifests/latest")
    if is_pyreg(second):
        assert r.status_code == 202, f"tag delete: {r.status_code} {r.text}"
    else:
        # distribution 2.8 cannot delete a tag alone (it answers 400/405 UNSUPPORTED).
        skopeo.copy(
            f"docker://{second.host}/migrate/app:v1", f"docker://{second.host}/migrate/app:latest"
        )
    second.stop()

    third = registries(writer, root)
    tags = httpx.get(f"{third.url}/v2/moved/app/tags/list").json()["tags"]
    assert tags == ["v2"]
    dest = tmp_path / "third"
    skopeo.copy(f"docker://{third.host}/moved/app:v2", f"oci:{dest}:v2")
    assert_identical(image, dest, "v2")
    if is_pyreg(second):
        r = httpx.get(
            f"{third.url}/v2/migrate/app/manifests/latest", headers={"Accept": image.top.media_type}
        )
        assert r.status_code == 404, f"deleted tag still served: {r.status_code}"
        r = httpx.get(
            f"{third.url}/v2/migrate/app/manifests/v1", headers={"Accept": image.top.media_type}
        )
        assert r.status_code == 200 and r.content == image.blob(image.top.digest)
