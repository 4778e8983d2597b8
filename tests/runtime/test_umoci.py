"""The unpacked root filesystem is file-for-file what `umoci unpack` makes of the same image, and
the overlay composition shows the container the same tree as the per-container copy."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from pyreg.runtime.image import load_image
from pyreg.runtime.layers import unpack_layers
from tests.conftest import require_tool
from tests.runtime.conftest import Runner, require_root_and_busybox
from tests.runtime.images import (
    busybox_layer,
    directory,
    file,
    hardlink,
    layer,
    opaque,
    symlink,
    whiteout,
    write_layout,
)


def _fifo(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.FIFOTYPE, 0o640
    return info, None


LAYERS = [
    busybox_layer([
        directory("a"), file("a/x", b"x"), file("a/y", b"y", 0o600, 1000, 1000),
        directory("d"), file("d/old"), directory("d/sub"), file("d/sub/deep"),
        file("suid", b"#!/bin/sh\n", 0o4755), file("sgid", b"", 0o2755, 0, 10),
        file("shared", b"one inode"), hardlink("shared2", "shared"),
        symlink("abs", "/etc/passwd"), symlink("rel", "../etc/group"), symlink("dangling", "nope"),
        directory("replace-me"), file("replace-me/child"), file("becomes-dir"),
        directory("opt", 0o750, 1000, 10), _fifo("fifo"),
    ]),
    layer([
        whiteout("a/x"), directory("d"), opaque("d"), file("d/new", b"new"),
        file("replace-me", b"now a file"), directory("becomes-dir"), file("becomes-dir/in"),
        hardlink("shared3", "shared"), symlink("abs", "/etc/group"), file("opt/f", b"", 0o400),
    ]),
    layer([
        whiteout("d/new"), file("a/x", b"back"), directory("e"), file("e/f"), whiteout("rel"),
        opaque("e"), file("e/g"),
    ]),
]

Entry = tuple[str, int, int, int, str]


def describe(root: Path) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                detail = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                detail = os.readlink(path)
            else:
                detail = ""
            out[str(path.relative_to(root))] = (
                stat.filemode(kind), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, detail)
    return out


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root_and_busybox()
    path = tmp_path_factory.mktemp("multilayer")
    write_layout(path, LAYERS, {"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    return path


def test_rootfs_matches_umoci_unpack(layout: Path, tmp_path: Path) -> None:
    umoci = require_tool("umoci")
    subprocess.run([umoci, "unpack", "--image", f"{layout}:latest", str(tmp_path / "bundle")],
                   check=True, capture_output=True)
    ours = tmp_path / "ours"
    unpack_layers(ours, load_image(layout, "latest").layer_blobs())
    theirs = describe(tmp_path / "bundle" / "rootfs")
    mine = describe(ours)
    assert sorted(mine) == sorted(theirs)
    assert {k: v for k, v in mine.items() if v != theirs[k]} == {}
    # Spot checks of what the layers mean.
    assert "a/x" in mine and "d/new" not in mine and "d/old" not in mine and "rel" not in mine
    # An opaque marker hides lower layers only: e/f, from the same layer, stays.
    assert mine["e/g"][0].startswith("-") and "e/f" in mine


def test_overlay_shows_the_container_the_same_tree_as_a_copy(layout: Path, tmp_path: Path) -> None:
    listing = ("find / -xdev ! -path /etc/hosts ! -path /etc/hostname ! -path /etc/resolv.conf "
               "! -path /proc ! -path /sys ! -path /dev ! -path / -exec stat -c '%n %A %u %g' {} + "
               "| sort; find / -xdev -type f ! -path '/proc/*' ! -path '/sys/*' -exec md5sum {} + "
               "| sort")
    views = {}
    for mode in ("overlay", "copy"):
        result = Runner(layout, tmp_path / "root")("sh", "-c", listing,
                                                   env={"PYREG_SNAPSHOTTER": mode})
        assert result.returncode == 0, result.stderr
        views[mode] = [line for line in result.stdout.splitlines()
                       if not line.endswith(("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"))]
    assert views["overlay"] == views["copy"]
    assert any(line.startswith("/suid -rwsr-xr-x") for line in views["overlay"])
