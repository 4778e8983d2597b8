"""Applying layers: whiteouts, opaque directories, links, modes, and refusal of unsafe entries."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from pyreg.oci.digest import Digest
from pyreg.runtime import LayerError
from pyreg.runtime.layers import LayerCache, unpack_layers
from pyreg.runtime.unpack import LayerApplier
from tests.runtime.images import (
    directory,
    file,
    hardlink,
    layer,
    opaque,
    symlink,
    whiteout,
    write_layout,
)

ROOT = os.geteuid() == 0


def apply(root: Path, *layers: bytes, overlay: bool = False) -> LayerApplier:
    root.mkdir(exist_ok=True)
    applier = LayerApplier(root, overlay=overlay)
    for i, raw in enumerate(layers):
        applier.apply(io.BytesIO(raw), f"layer{i}")
    applier.finish()
    return applier


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_whiteouts_delete_from_lower_layers_only(tmp_path: Path) -> None:
    base = layer([directory("a"), file("a/x", b"x"), file("a/y", b"y"), directory("b"),
                  file("b/z")])
    top = layer([whiteout("a/x"), whiteout("b"), file("a/new", b"n"), whiteout("a/new")])
    apply(tmp_path / "r", base, top)
    assert tree(tmp_path / "r") == {"a", "a/y", "a/new"}


def test_opaque_directory_hides_every_lower_entry(tmp_path: Path) -> None:
    base = layer([directory("d"), file("d/old"), directory("d/sub"), file("d/sub/old2"),
                  file("keep")])
    top = layer([directory("d"), file("d/early"), opaque("d"), directory("d/sub"),
                 file("d/sub/new2"), file("d/new")])
    apply(tmp_path / "r", base, top)
    assert tree(tmp_path / "r") == {"d", "d/early", "d/sub", "d/sub/new2", "d/new", "keep"}


def test_hardlinks_share_an_inode_within_and_across_layers(tmp_path: Path) -> None:
    apply(tmp_path / "r", layer([file("f", b"data"), hardlink("g", "f")]),
          layer([hardlink("h", "./f")]))
    r = tmp_path / "r"
    assert (r / "f").stat().st_ino == (r / "g").stat().st_ino == (r / "h").stat().st_ino
    assert (r / "h").read_bytes() == b"data"


def test_symlinks_kept_and_followed_inside_the_root(tmp_path: Path) -> None:
    apply(tmp_path / "r",
          layer([directory("usr"), directory("usr/lib"), symlink("lib", "usr/lib"),
                 symlink("etc2", "/etc"), directory("etc")]),
          layer([file("lib/x", b"1"), file("etc2/passwd", b"inside")]))
    r = tmp_path / "r"
    assert os.readlink(r / "lib") == "usr/lib"
    assert (r / "usr/lib/x").read_bytes() == b"1"
    # An absolute link target means the container's /etc: the host's is untouched.
    assert (r / "etc/passwd").read_bytes() == b"inside"
    assert os.readlink(r / "etc2") == "/etc"


def test_modes_setuid_mtimes_and_xattrs(tmp_path: Path) -> None:
    apply(tmp_path / "r", layer([
        directory("ro", 0o555), file("ro/f", b"x", 0o4755), file("g", b"", 0o2750),
        file("x", b"", 0o644, xattrs={"user.pyreg": "yes"}),
    ]))
    r = tmp_path / "r"
    assert stat.S_IMODE((r / "ro").stat().st_mode) == 0o555
    assert stat.S_IMODE((r / "ro/f").stat().st_mode) == 0o4755
    assert (r / "ro/f").stat().st_mtime == 1_700_000_000
    assert (r / "ro").stat().st_mtime == 1_700_000_000
    if ROOT:
        assert stat.S_IMODE((r / "g").stat().st_mode) == 0o2750
    try:
        assert os.getxattr(r / "x", "user.pyreg") == b"yes"
    except OSError:
        pytest.skip("no user xattrs on this filesystem")


def test_a_file_replaces_a_directory_and_a_symlink(tmp_path: Path) -> None:
    apply(tmp_path / "r", layer([directory("d"), file("d/x"), symlink("s", "/etc/passwd")]),
          layer([file("d", b"now a file"), file("s", b"not through the link")]))
    r = tmp_path / "r"
    assert (r / "d").read_bytes() == b"now a file"
    assert not (r / "s").is_symlink() and (r / "s").read_bytes() == b"not through the link"


@pytest.mark.skipif(not ROOT, reason="ownership and device nodes need root")
def test_ownership_and_device_nodes_as_root(tmp_path: Path) -> None:
    import tarfile

    dev = tarfile.TarInfo("null")
    dev.type, dev.mode, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 0o666, 1, 3
    apply(tmp_path / "r", layer([file("owned", b"", 0o4755, uid=1000, gid=1000), (dev, None)]))
    st = (tmp_path / "r/owned").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o4755)
    assert stat.S_ISCHR((tmp_path / "r/null").lstat().st_mode)


MALICIOUS = {
    "dotdot": [file("../evil", b"x")],
    "dotdot-inside": [directory("a"), file("a/../../evil", b"x")],
    "absolute": [file("/evil", b"x")],
    "symlink-escape": [symlink("esc", "../../.."), file("esc/evil", b"x")],
    "nested-symlink-escape": [directory("a"), symlink("a/up", "../.."), file("a/up/evil")],
    "hardlink-outside": [hardlink("h", "../../etc/passwd")],
    "hardlink-absolute": [hardlink("h", "/etc/passwd")],
    "hardlink-through-symlink": [symlink("esc", "../../../etc"), hardlink("h", "esc/passwd")],
    "whiteout-escape": [symlink("esc", "../.."), whiteout("esc/victim")],
}


@pytest.mark.parametrize("kind", sorted(MALICIOUS))
def test_malicious_layers_are_refused_and_leave_nothing(tmp_path: Path, kind: str) -> None:
    (tmp_path / "victim").write_text("keep")
    layout = tmp_path / "layout"
    raw = layer(MALICIOUS[kind])
    write_layout(layout, [raw])
    blob = next(p for p in (layout / "blobs/sha256").iterdir() if p.stat().st_size < 4096
                and p.read_bytes()[:2] == b"\x1f\x8b")
    digest = Digest("sha256", blob.name)
    target = tmp_path / "store" / "rootfs"
    target.parent.mkdir()
    with pytest.raises(LayerError) as caught:
        unpack_layers(target, [(blob, digest, Digest.from_bytes(raw))])
    message = str(caught.value)
    assert str(digest) in message and "entry" in message
    assert not target.exists() and list(target.parent.iterdir()) == []
    assert (tmp_path / "victim").read_text() == "keep"
    assert not (tmp_path / "evil").exists() and not Path("/evil").exists()


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_unpack_layers_checks_diff_ids(tmp_path: Path, compression: str) -> None:
    from pyreg.runtime.image import load_image

    layers = [layer([file("a", b"1")]), layer([file("b", b"2"), whiteout("a")])]
    write_layout(tmp_path / "layout", layers, compression=compression)
    image = load_image(tmp_path / "layout", "latest")
    unpack_layers(tmp_path / "rootfs", image.layer_blobs())
    assert tree(tmp_path / "rootfs") == {"b"}
    blob, digest, _diff_id = image.layer_blobs()[0]
    with pytest.raises(LayerError, match="diff_id"):
        unpack_layers(tmp_path / "other", [(blob, digest, Digest.from_bytes(b"wrong"))])
    assert not (tmp_path / "other").exists()


@pytest.mark.skipif(not ROOT, reason="overlay whiteouts are device nodes and trusted xattrs")
def test_overlay_format_layers_in_the_cache(tmp_path: Path) -> None:
    from pyreg.runtime.image import load_image

    layers = [
        layer([directory("usr", 0o711), directory("usr/lib"), symlink("lib", "usr/lib"),
               directory("d"), file("d/old"), file("gone"), file("big", b"B" * 10)]),
        layer([file("lib/x"), whiteout("gone"), directory("d"), opaque("d"), file("d/new"),
               hardlink("big2", "big")]),
    ]
    write_layout(tmp_path / "layout", layers)
    image = load_image(tmp_path / "layout", "latest")
    cache = LayerCache(tmp_path / "layers")
    lower, upper = cache.ensure(image.layer_blobs())
    gone = (upper / "gone").lstat()
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(upper / "d", "trusted.overlay.opaque") == b"y"
    # lib is a symlink in the lower layer: the entry lands in usr/lib, with usr's metadata kept.
    assert (upper / "usr/lib/x").is_file() and not (upper / "lib").exists()
    assert stat.S_IMODE((upper / "usr").stat().st_mode) == 0o711
    assert (upper / "big2").read_bytes() == b"B" * 10
    before = upper.stat().st_ino
    assert cache.ensure(image.layer_blobs()) == [lower, upper]
    assert upper.stat().st_ino == before


@pytest.mark.parametrize("cache", [False, True], ids=["copy", "overlay-cache"])
def test_a_lower_layers_symlink_cannot_carry_a_later_layer_out(tmp_path: Path, cache: bool
                                                               ) -> None:
    """The escaping symlink and the entry written through it come in different layers: in the
    layer cache, the second layer is unpacked alone and must look at the first one's link."""
    from pyreg.runtime.image import load_image

    if cache and not ROOT:
        pytest.skip("the layer cache's whiteouts need root")
    layers = [layer([directory("a"), symlink("a/up", "../../../..")]),
              layer([file("a/up/evil", b"x")])]
    write_layout(tmp_path / "layout", layers)
    blobs = load_image(tmp_path / "layout", "latest").layer_blobs()
    with pytest.raises(LayerError) as caught:
        if cache:
            LayerCache(tmp_path / "store" / "layers").ensure(blobs)
        else:
            (tmp_path / "store").mkdir()
            unpack_layers(tmp_path / "store" / "rootfs", blobs)
    assert str(blobs[1][1]) in str(caught.value) and "'a/up/evil'" in str(caught.value)
    assert not (tmp_path / "store" / "rootfs").exists()
    assert not list((tmp_path / "store").rglob(".tmp-*")) and not Path("/evil").exists()
    if cache:  # the first layer is fine and stays cached; the second is not kept half-done
        assert [p.name for p in (tmp_path / "store/layers/sha256").iterdir()] == [
            blobs[0][2].encoded]


def test_prune_collects_what_a_killed_extraction_left(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "layers")
    busy, dead = "a" * 64, "b" * 64
    for encoded in (busy, dead):
        partial = tmp_path / "layers" / f".tmp-{encoded}-x1y2"
        partial.mkdir(parents=True)
        (partial / "half").write_text("written")
    with cache._lock(Digest("sha256", busy)):  # an extraction in progress keeps its directory
        assert cache.prune(set(), set()) == []
    assert [p.name for p in (tmp_path / "layers").glob(".tmp-*")] == [f".tmp-{busy}-x1y2"]
