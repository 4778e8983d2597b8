"""Filesystem driver specifics: temporary files, crash safety, fsync, permissions, the disk layout."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyreg.registry.storage import filesystem
from pyreg.registry.storage.driver import InvalidPath, PathNotFound, StorageError
from pyreg.registry.storage.filesystem import FilesystemDriver
from tests.storage.test_drivers import INVALID_PATHS, operations, payload, walk_all

MiB = 1 << 20


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def fs(root: Path) -> FilesystemDriver:
    return FilesystemDriver(str(root))


def tmp_leftovers(root: Path) -> list[str]:
    return [
        os.path.join(d, n)
        for d, dirs, files in os.walk(root)
        for n in dirs + files
        if n.startswith(".tmp-")
    ]


def tree(top: Path) -> dict[str, bytes | None]:
    """Every entry under `top`: file contents, None for a directory."""
    out: dict[str, bytes | None] = {}
    for d, dirs, files in os.walk(top):
        for n in dirs:
            out[os.path.relpath(os.path.join(d, n), top)] = None
        for n in files:
            out[os.path.relpath(os.path.join(d, n), top)] = Path(d, n).read_bytes()
    return out


def test_paths_map_onto_the_root(fs: FilesystemDriver, root: Path) -> None:
    assert fs.full_path("/docker/registry/v2/blobs") == str(root / "docker/registry/v2/blobs")


async def test_layout_on_disk(fs: FilesystemDriver, root: Path) -> None:
    await fs.put_content("/docker/registry/v2/repositories/lib/x/_layers/sha256/ab/link", b"l")
    assert (
        root / "docker/registry/v2/repositories/lib/x/_layers/sha256/ab/link"
    ).read_bytes() == b"l"


@pytest.mark.parametrize("path", INVALID_PATHS, ids=repr)
async def test_invalid_paths_never_reach_the_disk(
    fs: FilesystemDriver, tmp_path: Path, path: str
) -> None:
    await fs.put_content("/b", b"keep")
    before = tree(tmp_path)  # the root's parent: "relative" would land next to the root
    for op_name, op in operations(path, good="/b").items():
        with pytest.raises(InvalidPath):
            await op(fs)
        assert tree(tmp_path) == before, op_name


# Temporary files


async def test_no_tmp_leftovers_after_successful_operations(
    fs: FilesystemDriver, root: Path
) -> None:
    await fs.put_content("/a/b/c", b"1")
    await fs.put_content("/a/b/c", b"2")
    await fs.put_content("/a/d/e", b"3")
    await fs.move("/a/b/c", "/a/moved")
    w = await fs.writer("/u/data")
    await w.write(b"x")
    await w.commit()
    await w.close()
    w = await fs.writer("/u/data", append=True)
    await w.write(b"y")
    await w.commit()
    await w.close()
    w = await fs.writer("/u/cancelled")
    await w.write(b"z")
    await w.cancel()
    await fs.delete("/a/d")
    assert tmp_leftovers(root) == []
    assert tree(root) == {"a": None, "a/b": None, "a/moved": b"2", "u": None, "u/data": b"xy"}


def simulate_crash_leftovers(root: Path) -> None:
    """What a crash leaves behind: a put's temporary file, a delete's renamed tree."""
    (root / "a/sub").mkdir(parents=True)
    (root / "a/file").write_bytes(b"real")
    (root / "a/sub/x").write_bytes(b"real")
    (root / "a/.tmp-0123abcd").write_bytes(b"half a write")
    (root / "a/.tmp-doomed/inner").mkdir(parents=True)
    (root / "a/.tmp-doomed/inner/f").write_bytes(b"half a delete")


async def test_tmp_files_are_not_listed(fs: FilesystemDriver, root: Path) -> None:
    simulate_crash_leftovers(root)
    assert sorted(await fs.list("/a")) == ["/a/file", "/a/sub"]


async def test_tmp_directories_are_not_walked(fs: FilesystemDriver, root: Path) -> None:
    simulate_crash_leftovers(root)
    assert not [i.path for i in await walk_all(fs, "/a") if i.path.startswith("/a/.tmp-doomed")]


async def test_tmp_files_are_not_walked(fs: FilesystemDriver, root: Path) -> None:
    simulate_crash_leftovers(root)
    assert sorted(i.path for i in await walk_all(fs, "/a")) == ["/a/file", "/a/sub", "/a/sub/x"]


# Crash safety: a failure part-way through leaves the old file, never a part of the new one


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
async def test_failed_put_keeps_old_content(
    fs: FilesystemDriver, root: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    await fs.put_content("/a/b", b"old")

    def boom(*args: object) -> None:
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(os, fail_at, boom)
    with pytest.raises(StorageError):
        await fs.put_content("/a/b", b"new content")
    monkeypatch.undo()
    assert await fs.get_content("/a/b") == b"old"
    assert tmp_leftovers(root) == []


async def test_failed_delete_of_tree_hides_it_at_once(
    fs: FilesystemDriver, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fs.put_content("/repo/a/b", b"1")
    await fs.put_content("/repo/c", b"2")
    await fs.put_content("/keep", b"3")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(shutil, "rmtree", boom)
    with pytest.raises(StorageError):
        await fs.delete("/repo")
    monkeypatch.undo()
    # The tree was renamed away before the removal failed: readers never see half of it.
    with pytest.raises(PathNotFound):
        await fs.stat("/repo")
    assert [n for n in os.listdir(root) if not n.startswith(".tmp-")] == ["keep"]


# fsync


@pytest.fixture
def fsync_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record, in order, the path of every fsync and every os.replace as "replace:<dest>"."""
    log: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        log.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        real_replace(src, dst, **kwargs)
        log.append(f"replace:{dst}")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    yield log


def require_proc() -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")


async def test_put_content_fsyncs_file_then_directory(
    fs: FilesystemDriver, root: Path, fsync_log: list[str]
) -> None:
    require_proc()
    (root / "a").mkdir()
    await fs.put_content("/a/b", b"data")
    directory = str(root / "a")
    [tmp_sync, replaced, dir_sync] = fsync_log
    assert os.path.dirname(tmp_sync) == directory
    assert os.path.basename(tmp_sync).startswith(".tmp-")
    assert replaced == f"replace:{root / 'a/b'}"
    assert dir_sync == directory


async def test_put_content_makes_new_directories_durable(
    fs: FilesystemDriver, root: Path, fsync_log: list[str]
) -> None:
    require_proc()
    await fs.put_content("/new/dir/file", b"data")
    for directory in (root, root / "new", root / "new/dir"):
        assert str(directory) in fsync_log


async def test_writer_commit_fsyncs_the_file(
    fs: FilesystemDriver, root: Path, fsync_log: list[str]
) -> None:
    require_proc()
    (root / "u").mkdir()
    w = await fs.writer("/u/data")
    await w.write(b"x")
    assert fsync_log == []  # nothing is synced before commit
    await w.commit()
    await w.close()
    # The file, then (it is new) its directory entry.
    assert fsync_log == [str(root / "u/data"), str(root / "u")]


async def test_writer_commit_makes_a_new_file_durable(
    fs: FilesystemDriver, root: Path, fsync_log: list[str]
) -> None:
    require_proc()
    (root / "u").mkdir(parents=True)
    w = await fs.writer("/u/data")
    await w.write(b"x")
    await w.commit()
    await w.close()
    assert str(root / "u") in fsync_log


async def test_move_fsyncs_the_destination_directory(
    fs: FilesystemDriver, root: Path, fsync_log: list[str]
) -> None:
    require_proc()
    await fs.put_content("/up/data", b"x")
    (root / "blobs").mkdir()
    fsync_log.clear()
    await fs.move("/up/data", "/blobs/data")
    assert fsync_log == [f"replace:{root / 'blobs/data'}", str(root / "blobs"), str(root / "up")]


# Permissions


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_created_modes(fs: FilesystemDriver, root: Path, umask_022: None) -> None:
    await fs.put_content("/d/put", b"x")
    w = await fs.writer("/w/written")
    await w.write(b"x")
    await w.close()
    await fs.put_content("/m/src", b"x")
    await fs.move("/m/src", "/m2/moved")

    def mode(p: str) -> int:
        return stat.S_IMODE(os.stat(root / p).st_mode)

    assert {p: mode(p) for p in ("d/put", "w/written", "m2/moved")} == dict.fromkeys(
        ("d/put", "w/written", "m2/moved"), 0o644
    )
    assert {p: mode(p) for p in ("d", "w", "m2")} == dict.fromkeys(("d", "w", "m2"), 0o755)


async def test_permission_errors_are_storage_errors(
    fs: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fs.put_content("/f", b"x")
    # Whichever way the driver opens files: the builtin, or os.open.
    monkeypatch.setattr(filesystem, "open", _denied_open, raising=False)
    monkeypatch.setattr(os, "open", _denied_open)
    with pytest.raises(StorageError):
        await fs.get_content("/f")


def _denied_open(*args: Any, **kwargs: Any) -> Any:
    raise PermissionError(errno.EACCES, "Permission denied (simulated)")


# Symlinks: the driver trusts the root's contents


async def test_symlinks_inside_the_root_are_followed(
    fs: FilesystemDriver, root: Path, tmp_path: Path
) -> None:
    """The path grammar keeps callers inside the root; a symlink placed in the root by whoever
    manages the disk (say, blobs on another volume) is followed, even out of the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_bytes(b"outside")
    root.mkdir(exist_ok=True)
    (root / "link").symlink_to(outside)
    assert await fs.get_content("/link/f") == b"outside"
    await fs.put_content("/link/g", b"written through the link")
    assert (outside / "g").read_bytes() == b"written through the link"


async def test_delete_of_a_symlink_removes_only_the_link(
    fs: FilesystemDriver, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_bytes(b"outside")
    root.mkdir(exist_ok=True)
    (root / "link").symlink_to(outside)
    await fs.delete("/link")
    assert not (root / "link").exists()
    assert (outside / "f").read_bytes() == b"outside"


# Streaming reads


async def test_large_read_streams_in_1mib_chunks(fs: FilesystemDriver) -> None:
    data = payload(5 * MiB + 3)
    await fs.put_content("/big", data)
    chunks = [c async for c in fs.reader("/big")]
    assert [len(c) for c in chunks] == [MiB] * 5 + [3]
    assert b"".join(chunks) == data
    chunks = [c async for c in fs.reader("/big", offset=MiB // 2, length=2 * MiB)]
    assert [len(c) for c in chunks] == [MiB, MiB]
    assert b"".join(chunks) == data[MiB // 2 : MiB // 2 + 2 * MiB]


async def test_reader_keeps_the_file_it_opened(fs: FilesystemDriver) -> None:
    old, new = payload(3 * MiB, seed=1), payload(3 * MiB, seed=2)
    await fs.put_content("/big", old)
    stream = fs.reader("/big")
    first = await anext(stream)
    await fs.put_content("/big", new)
    rest = [c async for c in stream]
    assert first + b"".join(rest) == old
    stream = fs.reader("/big")
    first = await anext(stream)
    await fs.delete("/big")
    rest = [c async for c in stream]
    assert first + b"".join(rest) == new
