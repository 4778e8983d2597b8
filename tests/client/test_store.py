"""The local store: an OCI layout with blobs once, names in index.json, locks and collection."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from pyreg.client.errors import ImageNotFound, IntegrityError
from pyreg.client.store import ImageStore, default_root
from pyreg.oci.digest import Digest
from pyreg.oci.imageref import parse_reference
from pyreg.oci.layout import IMAGE_NAME, REF_NAME
from tests.client.conftest import put_image
from tests.client.images import SampleImage, make_layer


def test_default_root() -> None:
    assert default_root({"PYREG_ROOT": "/r"}) == Path("/r")
    assert default_root({"XDG_DATA_HOME": "/x"}) == Path("/x/pyreg")
    assert default_root({"HOME": "/h"}) == Path("/h/.local/share/pyreg")


def test_layout_names_and_resolution(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    image = SampleImage([make_layer(100)])
    put_image(store, image, "busybox")
    put_image(store, image, "127.0.0.1:5000/x/y:v1")
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp_path / "index.json").read_text())
    assert [m["annotations"][REF_NAME] for m in index["manifests"]] == [
        "docker.io/library/busybox:latest", "127.0.0.1:5000/x/y:v1"]
    assert index["manifests"][0]["annotations"][IMAGE_NAME] == "docker.io/library/busybox:latest"
    assert store.resolve("busybox").descriptor.digest == image.digest
    config_id = Digest.from_bytes(image.config)
    assert store.resolve(config_id.encoded[:12]).name is not None  # an image ID prefix
    assert store.resolve(f"x/y@{image.digest}".replace("x/y", "127.0.0.1:5000/x/y")).tag == "v1"
    with pytest.raises(ImageNotFound, match="No such image: other"):
        store.resolve("other")
    # the same name again replaces, not duplicates
    put_image(store, image, "busybox:latest")
    assert len(store.images()) == 2


def test_blobs_once_and_collection(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    base = make_layer(1000)
    one, two = SampleImage([base, make_layer(10)]), SampleImage([base, make_layer(20)])
    put_image(store, one, "a:1")
    put_image(store, two, "b:1")
    assert len(os.listdir(tmp_path / "blobs" / "sha256")) == 7  # base once, 2 layers, 2 configs, 2 manifests
    store.remove(parse_reference("a:1"))
    deleted = store.collect()
    assert Digest.from_bytes(base[0]) not in deleted and len(deleted) == 3
    store.remove(parse_reference("b:1"))
    assert len(store.collect()) == 4
    assert os.listdir(tmp_path / "blobs" / "sha256") == []


def test_ingest_verifies_and_resumes(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    data = os.urandom(5000)
    digest = Digest.from_bytes(data)
    ingest = store.ingest(digest, len(data))
    ingest.write(data[:2000])
    ingest.close()  # interrupted: the partial stays
    ingest = store.ingest(digest, len(data))
    assert ingest.offset == 2000
    ingest.write(data[2000:])
    ingest.commit()
    ingest.close()
    assert store.read_blob(digest) == data
    bad = store.ingest(Digest.from_bytes(b"other"), 5)
    bad.write(b"12345")
    with pytest.raises(IntegrityError, match="digest mismatch"):
        bad.commit()
    bad.discard()
    assert not store.has_blob(Digest.from_bytes(b"other"))
    with pytest.raises(IntegrityError):
        store.put_blob(b"abc", Digest.from_bytes(b"abd"))


def test_sources_record(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    d = Digest.from_bytes(b"x")
    store.record_sources("reg:5000", "a/b", [d])
    store.record_sources("reg:5000", "c", [d])
    assert store.sources("reg:5000", d) == ["c", "a/b"]
    assert store.sources("other", d) == []


def _tag_many(root: str, prefix: str) -> None:
    store = ImageStore(Path(root))
    image = SampleImage([make_layer(10)])
    for i in range(20):
        put_image(store, image, f"{prefix}:{i}")


def test_two_processes_write_the_index_at_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_tag_many, args=(str(tmp_path), p)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(ImageStore(tmp_path).images()) == 40  # no lost update
