"""Driver conformance: every storage driver behaves alike (the `driver` fixture yields each one).

Only behaviour every backend can offer is checked here. Empty directories are left out on purpose:
the filesystem keeps them, the in-memory and S3 drivers have implicit directories that vanish with
their last file.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import pytest

from pyreg.registry.storage.driver import (
    FileInfo,
    InvalidPath,
    PathNotFound,
    StorageDriver,
)

MiB = 1 << 20


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def read_all(
    driver: StorageDriver, path: str, offset: int = 0, length: int | None = None
) -> bytes:
    return b"".join([chunk async for chunk in driver.reader(path, offset, length)])


async def walk_all(driver: StorageDriver, path: str) -> list[FileInfo]:
    return [info async for info in driver.walk(path)]


async def put_tree(driver: StorageDriver, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        await driver.put_content(path, data)


def test_driver_has_a_name(driver: StorageDriver) -> None:
    assert isinstance(driver.name, str) and driver.name


# get_content / put_content


@pytest.mark.parametrize("size", [0, 11, 5 * MiB], ids=["empty", "small", "5MiB"])
async def test_put_get_round_trip(driver: StorageDriver, size: int) -> None:
    data = payload(size)
    await driver.put_content("/docker/registry/v2/blobs/sha256/ab/ab12/data", data)
    assert await driver.get_content("/docker/registry/v2/blobs/sha256/ab/ab12/data") == data


async def test_put_content_overwrites(driver: StorageDriver) -> None:
    await driver.put_content("/a/b", b"a long first value")
    await driver.put_content("/a/b", b"short")
    assert await driver.get_content("/a/b") == b"short"
    assert (await driver.stat("/a/b")).size == 5


@pytest.mark.parametrize("path", ["/missing", "/a/missing", "/a/b/missing", "/a/b/c/d"])
async def test_get_missing_is_path_not_found(driver: StorageDriver, path: str) -> None:
    await driver.put_content("/a/b", b"x")  # "/a/b/..." has a file as a parent
    with pytest.raises(PathNotFound) as excinfo:
        await driver.get_content(path)
    assert excinfo.value.path == path


async def test_get_directory_is_path_not_found(driver: StorageDriver) -> None:
    await driver.put_content("/a/b/c", b"x")
    for path in ("/a", "/a/b"):
        with pytest.raises(PathNotFound):
            await driver.get_content(path)


# Invalid paths

INVALID_PATHS = [
    "",
    "relative",
    "a/b",
    "/",
    "/a/",
    "//a",
    "/a/../b",
    "/..",
    "/a/..",
    "/a//b",
    "/a/./b",
    "/.",
    "/a b",
    "/a\x00",
    "/a\nb",
    "/a\\b",
    "/a:b",
    "/\u00e9",
]


def operations(path: str, good: str) -> dict[str, Callable[[StorageDriver], Awaitable[object]]]:
    """Every driver call, once per path argument, with `path` in that argument."""

    async def read(d: StorageDriver) -> object:
        return [c async for c in d.reader(path)]

    async def walk(d: StorageDriver) -> object:
        return [i async for i in d.walk(path)]

    return {
        "get_content": lambda d: d.get_content(path),
        "put_content": lambda d: d.put_content(path, b"x"),
        "reader": read,
        "writer": lambda d: d.writer(path),
        "writer-append": lambda d: d.writer(path, append=True),
        "stat": lambda d: d.stat(path),
        "list": lambda d: d.list(path),
        "move-source": lambda d: d.move(path, "/moved"),
        "move-dest": lambda d: d.move(good, path),
        "delete": lambda d: d.delete(path),
        "walk": walk,
    }


@pytest.mark.parametrize("path", INVALID_PATHS, ids=repr)
async def test_invalid_paths_are_refused(driver: StorageDriver, path: str) -> None:
    await driver.put_content("/a/x", b"keep")
    await driver.put_content("/b", b"keep")
    before = {info.path: info.size async for info in driver.walk("/a")}
    for op_name, op in operations(path, good="/b").items():
        with pytest.raises(InvalidPath) as excinfo:
            await op(driver)
        assert excinfo.value.path == path, op_name
    # Nothing was touched: the source of the refused move is still there, nothing appeared.
    assert {info.path: info.size async for info in driver.walk("/a")} == before
    assert await driver.get_content("/b") == b"keep"
    assert await driver.get_content("/a/x") == b"keep"
    for absent in ("/moved", "/relative", "/a/b"):
        with pytest.raises(PathNotFound):
            await driver.stat(absent)


async def test_delete_of_the_root_is_refused(driver: StorageDriver) -> None:
    await driver.put_content("/a/b", b"x")
    with pytest.raises(InvalidPath):
        await driver.delete("/")
    assert await driver.get_content("/a/b") == b"x"


async def test_valid_path_characters(driver: StorageDriver) -> None:
    path = "/A-Z_a.z/0-9/.hidden/x..y/-_.-"
    await driver.put_content(path, b"ok")
    assert await driver.get_content(path) == b"ok"


# reader

READER_DATA = payload(2 * MiB + 5, seed=1)
N = len(READER_DATA)


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, None),
        (3, None),
        (3, 4),
        (0, 0),
        (MiB - 1, 2),  # across a chunk boundary of the filesystem driver
        (MiB, MiB + 1),
        (N - 2, 10),  # a length past the end stops at the end
        (N, None),  # at the end: nothing
        (N, 5),
        (N + 10, None),
    ],
)
async def test_reader_offset_and_length(
    driver: StorageDriver, offset: int, length: int | None
) -> None:
    await driver.put_content("/r/data", READER_DATA)
    end = None if length is None else offset + length
    assert await read_all(driver, "/r/data", offset, length) == READER_DATA[offset:end]


async def test_reader_chunks_are_not_empty(driver: StorageDriver) -> None:
    await driver.put_content("/r/data", READER_DATA)
    chunks = [c async for c in driver.reader("/r/data")]
    assert chunks and all(chunks)
    await driver.put_content("/r/empty", b"")
    assert [c async for c in driver.reader("/r/empty")] == []


async def test_reader_of_missing_is_path_not_found_on_first_use(driver: StorageDriver) -> None:
    stream = driver.reader("/missing")  # nothing happens before the first read
    with pytest.raises(PathNotFound):
        await anext(aiter(stream))


async def test_reader_of_directory_is_path_not_found(driver: StorageDriver) -> None:
    await driver.put_content("/a/b/c", b"x")
    with pytest.raises(PathNotFound):
        await read_all(driver, "/a/b")


# writer


async def test_writer_round_trip(driver: StorageDriver) -> None:
    chunks = [payload(n, seed=n) for n in (1, 1000, MiB + 3, 0, 17)]
    w = await driver.writer("/_uploads/u1/data")
    assert w.size == 0
    total = 0
    for chunk in chunks:
        assert await w.write(chunk) == len(chunk)
        total += len(chunk)
        assert w.size == total
    await w.commit()
    await w.close()
    assert await driver.get_content("/_uploads/u1/data") == b"".join(chunks)
    assert (await driver.stat("/_uploads/u1/data")).size == total


async def test_writer_accepts_bytes_like(driver: StorageDriver) -> None:
    w = await driver.writer("/w")
    await w.write(bytearray(b"ab"))
    await w.write(memoryview(b"xcdx")[1:3])
    assert w.size == 4
    await w.commit()
    await w.close()
    assert await driver.get_content("/w") == b"abcd"


async def test_writer_append_continues_after_commit(driver: StorageDriver) -> None:
    w = await driver.writer("/_uploads/u1/data")
    await w.write(b"hello ")
    await w.commit()
    await w.close()
    w = await driver.writer("/_uploads/u1/data", append=True)
    assert w.size == 6
    await w.write(b"world")
    assert w.size == 11
    await w.commit()
    await w.close()
    assert await driver.get_content("/_uploads/u1/data") == b"hello world"


async def test_writer_close_keeps_bytes_for_append(driver: StorageDriver) -> None:
    w = await driver.writer("/_uploads/u1/data")
    await w.write(b"part one,")
    await w.close()  # no commit: the bytes stay for a later writer
    w = await driver.writer("/_uploads/u1/data", append=True)
    assert w.size == 9
    await w.write(b" part two")
    await w.commit()
    await w.close()
    assert await driver.get_content("/_uploads/u1/data") == b"part one, part two"


async def test_writer_append_to_missing_starts_empty(driver: StorageDriver) -> None:
    w = await driver.writer("/new/file", append=True)
    assert w.size == 0
    await w.write(b"abc")
    await w.commit()
    await w.close()
    assert await driver.get_content("/new/file") == b"abc"


async def test_writer_without_append_replaces(driver: StorageDriver) -> None:
    await driver.put_content("/f", b"old content")
    w = await driver.writer("/f")
    assert w.size == 0
    await w.write(b"new")
    await w.commit()
    await w.close()
    assert await driver.get_content("/f") == b"new"


async def test_writer_cancel_removes(driver: StorageDriver) -> None:
    w = await driver.writer("/_uploads/u1/data")
    await w.write(b"discard me")
    await w.cancel()
    with pytest.raises(PathNotFound):
        await driver.stat("/_uploads/u1/data")
    with pytest.raises(PathNotFound):
        await driver.get_content("/_uploads/u1/data")


async def test_writer_cancel_after_append_removes_everything(driver: StorageDriver) -> None:
    w = await driver.writer("/u/data")
    await w.write(b"first")
    await w.commit()
    await w.close()
    w = await driver.writer("/u/data", append=True)
    await w.write(b"second")
    await w.cancel()
    with pytest.raises(PathNotFound):
        await driver.get_content("/u/data")


# stat


async def test_stat_file(driver: StorageDriver) -> None:
    before = time.time()
    await driver.put_content("/a/b/file", b"12345")
    info = await driver.stat("/a/b/file")
    assert info.path == "/a/b/file"
    assert info.size == 5
    assert info.is_dir is False
    # Filesystem timestamps may be truncated to the clock tick: allow a little slack.
    assert before - 2 <= info.mtime <= time.time() + 2


async def test_stat_directory(driver: StorageDriver) -> None:
    await driver.put_content("/a/b/file", b"12345")
    for path in ("/a", "/a/b"):
        info = await driver.stat(path)
        assert info.path == path
        assert info.is_dir is True


async def test_stat_missing_is_path_not_found(driver: StorageDriver) -> None:
    await driver.put_content("/a/file", b"x")
    for path in ("/missing", "/a/missing", "/a/file/below"):
        with pytest.raises(PathNotFound):
            await driver.stat(path)


# list


async def test_list_gives_full_child_paths(driver: StorageDriver) -> None:
    await put_tree(
        driver,
        {
            "/r/file1": b"1",
            "/r/file2": b"22",
            "/r/sub/deep/x": b"x",
            "/r/sub2/y": b"y",
            "/r-sibling/z": b"z",
        },
    )
    assert sorted(await driver.list("/r")) == ["/r/file1", "/r/file2", "/r/sub", "/r/sub2"]
    assert sorted(await driver.list("/r/sub")) == ["/r/sub/deep"]
    assert await driver.list("/r/sub/deep") == ["/r/sub/deep/x"]


async def test_list_follows_changes(driver: StorageDriver) -> None:
    await put_tree(driver, {"/r/a": b"", "/r/b": b""})
    await driver.delete("/r/a")
    await driver.put_content("/r/c/d", b"")
    assert sorted(await driver.list("/r")) == ["/r/b", "/r/c"]


async def test_list_missing_is_path_not_found(driver: StorageDriver) -> None:
    await driver.put_content("/r/file", b"x")
    for path in ("/missing", "/r/missing", "/r/file"):  # a file has no children
        with pytest.raises(PathNotFound):
            await driver.list(path)


# move


async def test_move_creates_parents(driver: StorageDriver) -> None:
    await driver.put_content("/_uploads/u1/data", b"blob")
    await driver.move("/_uploads/u1/data", "/blobs/sha256/ab/ab12/data")
    assert await driver.get_content("/blobs/sha256/ab/ab12/data") == b"blob"
    with pytest.raises(PathNotFound):
        await driver.stat("/_uploads/u1/data")


async def test_move_replaces_dest(driver: StorageDriver) -> None:
    await driver.put_content("/src", b"new")
    await driver.put_content("/d/dest", b"old and longer")
    await driver.move("/src", "/d/dest")
    assert await driver.get_content("/d/dest") == b"new"
    with pytest.raises(PathNotFound):
        await driver.get_content("/src")


async def test_move_of_written_file(driver: StorageDriver) -> None:
    w = await driver.writer("/_uploads/u1/data")
    await w.write(b"abc")
    await w.commit()
    await w.close()
    await driver.move("/_uploads/u1/data", "/blob")
    assert await driver.get_content("/blob") == b"abc"


async def test_move_missing_source_is_path_not_found(driver: StorageDriver) -> None:
    await driver.put_content("/d/dest", b"keep")
    with pytest.raises(PathNotFound) as excinfo:
        await driver.move("/missing", "/d/dest")
    assert excinfo.value.path == "/missing"
    assert await driver.get_content("/d/dest") == b"keep"
    with pytest.raises(PathNotFound):
        await driver.move("/missing/deeper", "/elsewhere/x")
    with pytest.raises(PathNotFound):
        await driver.stat("/elsewhere/x")


# delete


async def test_delete_file(driver: StorageDriver) -> None:
    await put_tree(driver, {"/d/a": b"a", "/d/b": b"b"})
    await driver.delete("/d/a")
    with pytest.raises(PathNotFound):
        await driver.get_content("/d/a")
    assert await driver.get_content("/d/b") == b"b"
    assert await driver.list("/d") == ["/d/b"]


async def test_delete_directory_tree(driver: StorageDriver) -> None:
    await put_tree(
        driver,
        {
            "/repo/_layers/sha256/aa/link": b"1",
            "/repo/_layers/sha256/bb/link": b"2",
            "/repo/_manifests/tags/latest/current/link": b"3",
            "/repo/top": b"4",
            "/repo2/_layers/link": b"keep",  # shares a name prefix with the deleted tree
            "/repo-x": b"keep",
        },
    )
    await driver.delete("/repo")
    for path in ("/repo", "/repo/_layers", "/repo/_layers/sha256/aa/link", "/repo/top"):
        with pytest.raises(PathNotFound):
            await driver.stat(path)
    with pytest.raises(PathNotFound):
        await driver.list("/repo")
    assert await driver.get_content("/repo2/_layers/link") == b"keep"
    assert await driver.get_content("/repo-x") == b"keep"


async def test_delete_subtree_keeps_siblings(driver: StorageDriver) -> None:
    await put_tree(driver, {"/a/b/c": b"1", "/a/bc": b"2", "/a/b2/c": b"3"})
    await driver.delete("/a/b")
    assert sorted(await driver.list("/a")) == ["/a/b2", "/a/bc"]


async def test_delete_missing_is_path_not_found(driver: StorageDriver) -> None:
    await driver.put_content("/d/file", b"x")
    for path in ("/missing", "/d/missing", "/d/file/below"):
        with pytest.raises(PathNotFound):
            await driver.delete(path)
    await driver.delete("/d/file")
    with pytest.raises(PathNotFound):
        await driver.delete("/d/file")


# walk


async def test_walk_yields_every_file_and_directory(driver: StorageDriver) -> None:
    files = {
        "/w/a": b"a",
        "/w/b/c": b"cc",
        "/w/b/d/e": b"eee",
        "/w/b/d/f": b"",
        "/w/g/h/i/j": b"jjjj",
        "/w-sibling/x": b"no",
        "/other/y": b"no",
    }
    await put_tree(driver, files)
    infos = await walk_all(driver, "/w")
    got = {(i.path, i.is_dir, 0 if i.is_dir else i.size) for i in infos}
    dirs = {"/w/b", "/w/b/d", "/w/g", "/w/g/h", "/w/g/h/i"}
    expected = {(p, False, len(d)) for p, d in files.items() if p.startswith("/w/")}
    expected |= {(p, True, 0) for p in dirs}
    assert got == expected
    assert len(infos) == len(got)  # nothing twice


async def test_walk_yields_directories_before_their_contents(driver: StorageDriver) -> None:
    await put_tree(driver, {"/w/a/b/c": b"", "/w/a/d": b"", "/w/e/f": b"", "/w/g": b""})
    order = [i.path for i in await walk_all(driver, "/w")]
    for i, path in enumerate(order):
        parent = path.rpartition("/")[0]
        if parent != "/w":
            assert parent in order[:i], f"{path} came before its directory {parent}"


async def test_walk_of_subtree_and_missing(driver: StorageDriver) -> None:
    await put_tree(driver, {"/w/a/b": b"", "/w/c": b""})
    assert [i.path for i in await walk_all(driver, "/w/a")] == ["/w/a/b"]
    for path in ("/missing", "/w/missing", "/w/c"):  # a file is not walkable
        with pytest.raises(PathNotFound):
            await walk_all(driver, path)


# redirect_url


async def test_redirect_url(driver: StorageDriver) -> None:
    await driver.put_content("/blob", b"x")
    url = await driver.redirect_url("/blob")
    assert url is None or url.startswith(("http://", "https://"))


# Concurrency


async def test_concurrent_put_content_leaves_one_complete_value(driver: StorageDriver) -> None:
    values = [payload(64 * 1024 + i, seed=i) for i in range(24)]
    await asyncio.gather(*(driver.put_content("/race/data", v) for v in values))
    assert await driver.get_content("/race/data") in values
    assert await driver.list("/race") == ["/race/data"]


async def test_readers_never_see_a_partial_put(driver: StorageDriver) -> None:
    a, b = payload(3 * MiB, seed=1), payload(2 * MiB + 7, seed=2)
    await driver.put_content("/atomic", a)
    done = asyncio.Event()
    seen: list[int] = []

    async def writer() -> None:
        try:
            for i in range(20):
                await driver.put_content("/atomic", b if i % 2 == 0 else a)
                await asyncio.sleep(0)  # let readers in between puts on a driver that never waits
        finally:
            done.set()

    async def reader(streaming: bool) -> None:
        while not done.is_set():
            got = await (
                read_all(driver, "/atomic") if streaming else driver.get_content("/atomic")
            )
            assert got == a or got == b, f"partial read of {len(got)} bytes"
            seen.append(len(got))
            await asyncio.sleep(0)

    await asyncio.gather(writer(), reader(False), reader(False), reader(True), reader(True))
    assert seen
    assert await driver.get_content("/atomic") == a
