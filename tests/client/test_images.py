"""`pyreg images` as docker shows them: unpacked sizes, and dangling images (loaded without a name,
or left behind when their tag moved) addressable by ID until `image prune`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import zstandard

from pyreg.client.commands.images import human_size, unpacked_size
from pyreg.client.store import ImageStore
from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest
from pyreg.oci.manifest import Descriptor
from tests.client.cli import Pyreg
from tests.client.conftest import put_image
from tests.client.images import SampleImage, make_layer


def test_size_is_the_unpacked_size(tmp_path: Path) -> None:
    pyreg = Pyreg(tmp_path)
    image = SampleImage([make_layer(5000), make_layer(70_000)])
    put_image(ImageStore(pyreg.root), image, "a/b:1")
    unpacked = sum(len(gzip.decompress(data)) for data, _ in image.layers)
    assert unpacked > image.total()  # random bytes: the tar is bigger than its gzip
    row = pyreg("images").out.splitlines()[1].split()
    assert row[-1] == human_size(unpacked)
    assert json.loads(pyreg("inspect", "a/b:1").out)[0]["Size"] == unpacked
    # zstd frames carry their size; a plain tar is its own size
    store = ImageStore(pyreg.root)
    raw = b"x" * 3000
    for data, media in ((zstandard.ZstdCompressor().compress(raw), mediatypes.OCI_LAYER_ZSTD),
                        (raw, mediatypes.OCI_LAYER)):
        digest = store.put_blob(data)
        assert unpacked_size(store, Descriptor(media, digest, len(data))) == 3000
    absent = Descriptor(mediatypes.OCI_LAYER_GZIP, Digest.from_bytes(b"absent"), 123)
    assert unpacked_size(store, absent) == 123


def layout_without_names(directory: Path, image: SampleImage) -> Path:
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for digest, data in {**image.blobs(), image.digest: image.manifest}.items():
        (blobs / digest.encoded).write_bytes(data)
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entry = {"mediaType": image.media_type, "digest": str(image.digest), "size": len(image.manifest)}
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return directory


def test_untagged_load_is_kept_until_prune(tmp_path: Path) -> None:
    pyreg = Pyreg(tmp_path / "home")
    image = SampleImage([make_layer(100)])
    image_id = Digest.from_bytes(image.config)
    loaded = pyreg("load", "-i", str(layout_without_names(tmp_path / "layout", image)))
    assert loaded.out == f"Loaded image ID: {image_id}\n", loaded.err
    rows = pyreg("images").out.splitlines()
    assert rows[1].split()[:3] == ["<none>", "<none>", image_id.encoded[:12]]
    assert json.loads(pyreg("inspect", image_id.encoded[:12]).out)[0]["Id"] == str(image_id)
    # a later collection (rmi of something else) keeps it
    other = SampleImage([make_layer(50)])
    put_image(ImageStore(pyreg.root), other, "x/y:1")
    assert pyreg("rmi", "x/y:1").code == 0
    assert pyreg("inspect", image_id.encoded[:12]).code == 0
    pruned = pyreg("image", "prune", "-f")
    assert f"deleted: {image.digest}" in pruned.out
    assert pyreg("images", "-q").out == ""


def test_a_moved_tag_leaves_the_old_image_dangling(tmp_path: Path) -> None:
    pyreg = Pyreg(tmp_path)
    store = ImageStore(pyreg.root)
    old, new = SampleImage([make_layer(100)]), SampleImage([make_layer(100)])
    put_image(store, old, "a/b:1")
    put_image(store, new, "a/b:1")
    rows = [r.split() for r in pyreg("images").out.splitlines()[1:]]
    assert sorted(r[:2] for r in rows) == [["<none>", "<none>"], ["a/b", "1"]]
    old_id = Digest.from_bytes(old.config).encoded[:12]
    assert json.loads(pyreg("inspect", old_id).out)[0]["RepoTags"] == []
    # tagged again: no longer dangling, and listed once
    assert pyreg("tag", old_id, "a/b:2").code == 0
    assert sorted(r.split()[1] for r in pyreg("images").out.splitlines()[1:]) == ["1", "2"]


def test_save_to_stdout_and_load_from_stdin(tmp_path: Path) -> None:
    import io

    from pyreg.client.cli import main
    from pyreg.client.environment import Environment

    pyreg = Pyreg(tmp_path / "home")
    image = SampleImage([make_layer(1000)])
    put_image(ImageStore(pyreg.root), image, "a/b:1")
    out = io.TextIOWrapper(io.BytesIO(), write_through=True)
    env = Environment(stdout=out, stderr=io.StringIO(), environ=pyreg.environ)
    assert main(["save", "a/b:1"], env) == 0
    data = out.buffer.getvalue()
    assert len(data) > image.total()
    terminal = Environment(stdout=io.StringIO(), stderr=(err := io.StringIO()), environ=pyreg.environ,
                           stdout_isatty=True)
    assert main(["save", "a/b:1"], terminal) == 1 and "cowardly refusing" in err.getvalue()
    other = Pyreg(tmp_path / "other")
    env = Environment(stdin=io.TextIOWrapper(io.BytesIO(data)), stdout=(got := io.StringIO()),
                      stderr=io.StringIO(), environ=other.environ)
    assert main(["load"], env) == 0 and got.getvalue() == "Loaded image: a/b:1\n"
    assert not any((other.root / "ingest").iterdir())  # the spooled copy is gone
    empty = Environment(stdin=io.TextIOWrapper(io.BytesIO()), stderr=(err := io.StringIO()),
                        environ=other.environ)
    assert main(["load"], empty) == 1 and "stdin is empty" in err.getvalue()
    # docker's SIZE in history too: the layer as unpacked
    assert human_size(len(gzip.decompress(image.layers[0][0]))) in pyreg("history", "a/b:1").out


def test_save_by_id_saves_no_name(tmp_path: Path) -> None:
    pyreg = Pyreg(tmp_path / "home")
    image = SampleImage([make_layer(100)])
    put_image(ImageStore(pyreg.root), image, "a/b:1")
    image_id = Digest.from_bytes(image.config)
    assert pyreg("save", "-o", str(tmp_path / "byid.tar"), image_id.encoded[:12]).code == 0
    other = Pyreg(tmp_path / "other")
    assert other("load", "-i", str(tmp_path / "byid.tar")).out == f"Loaded image ID: {image_id}\n"
