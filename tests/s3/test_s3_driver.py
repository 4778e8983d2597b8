"""What only the S3 driver has: multipart writers whose state lives in the bucket, server-side
moves, presigned redirects, a thread pool that overlaps calls, and S3 outages as StorageUnavailable.
(The conformance suite in tests/storage checks the rest against SeaweedFS.)
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyreg.registry.storage.driver import PathNotFound, StorageUnavailable
from pyreg.registry.storage.s3 import S3Driver
from pyreg.registry.storage.s3_bucket import ATTEMPTS, CONNECT_TIMEOUT
from tests.s3.seaweed import SeaweedServer, s3_driver, start_seaweedfs

MiB = 1 << 20
PART = 5 * MiB  # the drivers here use S3's smallest part size: fewer bytes to move


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def read_all(driver: S3Driver, path: str) -> bytes:
    return b"".join([chunk async for chunk in driver.reader(path)])


def calls(driver: S3Driver) -> Counter[str]:
    """Counts the S3 operations the driver's client makes from now on."""
    seen: Counter[str] = Counter()

    def count(model: Any, **kwargs: Any) -> None:
        seen[model.name] += 1

    driver.client.meta.events.register("before-call.s3", count)
    return seen


async def write_in_pieces(driver: S3Driver, path: str, data: bytes, append: bool) -> None:
    """Write as a chunked upload does: many small writes, then close without commit."""
    w = await driver.writer(path, append=append)
    for start in range(0, len(data), 700 * 1024):
        await w.write(data[start : start + 700 * 1024])
    await w.close()


def uploads(server: SeaweedServer, driver: S3Driver, path: str) -> list[dict[str, Any]]:
    client = server.shared_client()
    listed = client.list_multipart_uploads(Bucket=driver.bucket.name, Prefix=driver.bucket.key(path))
    return list(listed.get("Uploads", []))


@pytest.fixture
def driver(seaweedfs: SeaweedServer, request: pytest.FixtureRequest) -> S3Driver:
    return s3_driver(seaweedfs, request, chunksize=PART)


# The writer


async def test_parts_are_at_least_5mib_and_the_tail_waits_in_the_bucket(
    driver: S3Driver, seaweedfs: SeaweedServer
) -> None:
    data = payload(2 * PART + 3 * MiB + 3)
    await write_in_pieces(driver, "/u/data", data, append=False)

    (upload,) = uploads(seaweedfs, driver, "/u/data")
    parts = seaweedfs.shared_client().list_parts(
        Bucket=driver.bucket.name, Key=upload["Key"], UploadId=upload["UploadId"]
    )["Parts"]
    assert [p["Size"] for p in parts] == [PART, PART]
    # The tail is not a part: it is the body of the state object at the file's key.
    head = seaweedfs.shared_client().head_object(Bucket=driver.bucket.name, Key=upload["Key"])
    assert head["ContentLength"] == 3 * MiB + 3
    assert (await driver.stat("/u/data")).size == len(data)
    with pytest.raises(PathNotFound):  # nothing readable before commit
        await driver.get_content("/u/data")

    w = await driver.writer("/u/data", append=True)
    assert w.size == len(data)
    await w.commit()
    await w.close()
    assert await read_all(driver, "/u/data") == data
    assert uploads(seaweedfs, driver, "/u/data") == []


async def test_append_continues_on_another_replica(
    seaweedfs: SeaweedServer, request: pytest.FixtureRequest
) -> None:
    # Two drivers with clients of their own on one root: two registry processes on one bucket.
    one = s3_driver(seaweedfs, request, own_client=True, chunksize=PART, rootdirectory="/replicas")
    two = s3_driver(seaweedfs, request, own_client=True, chunksize=PART, rootdirectory="/replicas")
    pieces = [payload(n, seed=n) for n in (3 * MiB, 4 * MiB + 1, 1, 6 * MiB, 2 * MiB)]
    for i, piece in enumerate(pieces):
        driver = (one, two)[i % 2]
        await write_in_pieces(driver, "/_uploads/x/data", piece, append=True)
        expected = sum(map(len, pieces[: i + 1]))
        assert (await (two, one)[i % 2].stat("/_uploads/x/data")).size == expected
        reopened = await (two, one)[i % 2].writer("/_uploads/x/data", append=True)
        assert reopened.size == expected
        await reopened.close()
    w = await two.writer("/_uploads/x/data", append=True)
    await w.commit()
    await w.close()
    assert await one.get_content("/_uploads/x/data") == b"".join(pieces)


async def test_a_failed_part_leaves_the_file_at_what_s3_holds(
    seaweedfs: SeaweedServer, request: pytest.FixtureRequest
) -> None:
    driver = s3_driver(seaweedfs, request, own_client=True, chunksize=PART)
    first, more = payload(PART + 100), payload(3 * PART, seed=3)
    await write_in_pieces(driver, "/u", first, append=False)  # part 1 and a tail of 100 bytes

    def fail_part_3(params: dict[str, Any], **kwargs: Any) -> None:
        if params["query_string"].get("partNumber") == 3:
            raise ConnectionError("injected: S3 went away")

    driver.client.meta.events.register("before-call.s3.UploadPart", fail_part_3)
    w = await driver.writer("/u", append=True)
    with pytest.raises(StorageUnavailable):
        try:
            for start in range(0, len(more), PART):
                await w.write(more[start : start + PART])  # parts 2, 3 (fails), maybe 4
            await w.commit()
        finally:
            await w.close()  # as the upload service does: keeps what S3 holds for sure
    driver.client.meta.events.unregister("before-call.s3.UploadPart", fail_part_3)

    # Part 2 made it, part 3 did not: the file ends where part 2 ends, whatever came after.
    assert (await driver.stat("/u")).size == 2 * PART
    w = await driver.writer("/u", append=True)
    assert w.size == 2 * PART
    await w.write(b"resumed")
    await w.commit()
    await w.close()
    assert await driver.get_content("/u") == (first + more)[: 2 * PART] + b"resumed"


async def test_small_files_never_start_a_multipart_upload(
    driver: S3Driver, seaweedfs: SeaweedServer
) -> None:
    seen = calls(driver)
    await write_in_pieces(driver, "/small", b"abc" * 1000, append=False)
    w = await driver.writer("/small", append=True)
    await w.write(b"!")
    await w.commit()
    await w.close()
    assert await driver.get_content("/small") == b"abc" * 1000 + b"!"
    assert "CreateMultipartUpload" not in seen


async def test_append_to_a_large_committed_file_copies_it_inside_s3(driver: S3Driver) -> None:
    data = payload(PART + MiB)
    await driver.put_content("/big", data)
    seen = calls(driver)
    w = await driver.writer("/big", append=True)
    assert w.size == len(data)
    await w.write(b"more")
    await w.commit()
    await w.close()
    assert await read_all(driver, "/big") == data + b"more"
    assert seen["UploadPartCopy"] == 1


async def test_cancel_aborts_the_multipart_upload(
    driver: S3Driver, seaweedfs: SeaweedServer
) -> None:
    w = await driver.writer("/u/data")
    await w.write(payload(PART + 1))
    await w.close()
    assert len(uploads(seaweedfs, driver, "/u/data")) == 1
    w = await driver.writer("/u/data", append=True)
    await w.write(payload(PART, seed=1))
    await w.cancel()
    assert uploads(seaweedfs, driver, "/u/data") == []
    with pytest.raises(PathNotFound):
        await driver.stat("/u/data")


async def test_deleting_an_upload_directory_aborts_its_multipart_uploads(
    driver: S3Driver, seaweedfs: SeaweedServer
) -> None:
    # What purging an abandoned upload does.
    await driver.put_content("/r/_uploads/u1/startedat", b"2026-01-01T00:00:00Z")
    w = await driver.writer("/r/_uploads/u1/data")
    await w.write(payload(PART))
    await w.close()
    await driver.delete("/r/_uploads/u1")
    assert uploads(seaweedfs, driver, "/r/_uploads/") == []
    with pytest.raises(PathNotFound):
        await driver.list("/r/_uploads")


async def test_directories_vanish_with_their_last_file(driver: S3Driver) -> None:
    # SeaweedFS keeps emptied folders and lists them; the driver removes them as S3 would.
    await driver.put_content("/r/repo/_manifests/tags/t/current/link", b"x")
    await driver.put_content("/r/other/link", b"y")
    await driver.delete("/r/repo/_manifests/tags/t/current/link")
    assert await driver.list("/r") == ["/r/other"]
    await driver.put_content("/r/repo/_layers/l/link", b"z")
    await driver.delete("/r/repo/_layers")
    assert await driver.list("/r") == ["/r/other"]


async def test_writer_keeps_what_it_wrote_when_reopened_without_append(driver: S3Driver) -> None:
    w = await driver.writer("/f")
    await w.write(payload(PART + 5))
    await w.close()
    w = await driver.writer("/f")  # truncates, as the filesystem's open does
    assert w.size == 0
    await w.write(b"fresh")
    await w.commit()
    await w.close()
    assert await driver.get_content("/f") == b"fresh"


# move, redirect, layout


async def test_move_of_a_large_object_copies_inside_s3(driver: S3Driver) -> None:
    data = payload(40 * MiB)
    await driver.put_content("/_uploads/u/data", data)
    seen = calls(driver)
    await driver.move("/_uploads/u/data", "/blobs/sha256/ab/abcd/data")
    # Above multipartcopythresholdsize (32 MiB): parallel UploadPartCopy, no byte downloaded.
    assert seen["UploadPartCopy"] == 2
    assert seen["GetObject"] == 0 and seen["UploadPart"] == 0 and seen["PutObject"] == 0
    assert await read_all(driver, "/blobs/sha256/ab/abcd/data") == data
    with pytest.raises(PathNotFound):
        await driver.stat("/_uploads/u/data")


async def test_move_of_a_small_object_is_one_copy(driver: S3Driver) -> None:
    await driver.put_content("/a", b"x" * 100)
    seen = calls(driver)
    await driver.move("/a", "/b/c")
    assert seen["CopyObject"] == 1 and seen["GetObject"] == 0
    assert await driver.get_content("/b/c") == b"x" * 100


async def test_move_of_an_uncommitted_file_is_refused(driver: S3Driver) -> None:
    w = await driver.writer("/w")
    await w.write(b"abc")
    await w.close()
    with pytest.raises(Exception, match="not committed"):
        await driver.move("/w", "/elsewhere")


async def test_redirect_url_is_a_presigned_get(driver: S3Driver) -> None:
    data = payload(3 * MiB + 7)
    await driver.put_content("/docker/registry/v2/blobs/sha256/aa/aabb/data", data)
    url = await driver.redirect_url("/docker/registry/v2/blobs/sha256/aa/aabb/data")
    assert url is not None and url.startswith("http://127.0.0.1:")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=1200" in url
    with httpx.Client(trust_env=False) as client:
        response = client.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert await driver.redirect_url("/x", method="DELETE") is None


async def test_keys_are_distributions(driver: S3Driver, seaweedfs: SeaweedServer) -> None:
    # rootdirectory "/t-…" + path, without the leading slash, as distribution's s3 driver names them.
    await driver.put_content("/docker/registry/v2/repositories/a/b/_layers/link", b"x")
    root = driver.options.rootdirectory.strip("/")
    listed = seaweedfs.shared_client().list_objects_v2(Bucket=driver.bucket.name, Prefix=root)
    assert [o["Key"] for o in listed["Contents"]] == [
        f"{root}/docker/registry/v2/repositories/a/b/_layers/link"
    ]


async def test_listings_skip_keys_outside_the_path_grammar(
    driver: S3Driver, seaweedfs: SeaweedServer
) -> None:
    await driver.put_content("/d/file", b"x")
    for odd in ("d/with space", "d/sub/", "d/caf\u00e9/x"):
        seaweedfs.shared_client().put_object(
            Bucket=driver.bucket.name, Key=driver.bucket.key("/") + odd, Body=b"odd"
        )
    # "d/sub/" is another tool's folder marker: a directory to list, no file to walk.
    assert await driver.list("/d") == ["/d/file", "/d/sub"]
    assert [i.path async for i in driver.walk("/d")] == ["/d/file"]


# Concurrency and the event loop


async def test_calls_overlap_in_threads_and_the_loop_keeps_running(
    seaweedfs: SeaweedServer, request: pytest.FixtureRequest
) -> None:
    driver = s3_driver(seaweedfs, request, own_client=True)
    await driver.put_content("/f", b"x")
    n = 8
    # Each HeadObject waits until all n are in flight at once: they must overlap, or time out.
    barrier = threading.Barrier(n, timeout=20)

    def all_in_flight(**kwargs: Any) -> None:
        barrier.wait()  # a hook's return value would stand in for S3's answer

    driver.client.meta.events.register("before-call.s3.HeadObject", all_in_flight)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    try:
        infos = await asyncio.gather(*(driver.stat("/f") for _ in range(n)))
    finally:
        task.cancel()
    assert [i.size for i in infos] == [1] * n
    assert ticks > 1  # the loop ran while the calls waited in their threads


def test_the_filesystem_registry_never_imports_boto3(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pyreg.registry.app import create_app\n"
        "from pyreg.registry.config import Config, StorageConfig\n"
        f"create_app(Config(storage=StorageConfig(filesystem_root={str(tmp_path)!r})))\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Outages


async def test_s3_down_is_unavailable_quickly_and_nothing_is_lost(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = start_seaweedfs(tmp_path)  # its own server: the shared one stays up for others
    request.addfinalizer(server.kill)
    driver = s3_driver(server, request, chunksize=PART)
    blob = payload(PART + 1)
    await driver.put_content("/blobs/one", blob)
    await write_in_pieces(driver, "/_uploads/u/data", payload(PART + 3 * MiB, seed=2), append=True)

    server.kill()
    for op in (
        driver.stat("/blobs/one"),
        driver.put_content("/blobs/two", b"x"),
        driver.writer("/_uploads/u/data", append=True),
    ):
        start = time.monotonic()
        with pytest.raises(StorageUnavailable) as excinfo:
            await op
        # Refused connections, a few quick retries: far below a read timeout, never a hang.
        assert time.monotonic() - start < CONNECT_TIMEOUT * ATTEMPTS
        assert excinfo.value.retry_after

    server.start()  # same ports, same data
    assert await driver.get_content("/blobs/one") == blob
    w = await driver.writer("/_uploads/u/data", append=True)
    assert w.size == PART + 3 * MiB
    await w.write(b"end")
    await w.commit()
    await w.close()
    assert await driver.get_content("/_uploads/u/data") == payload(PART + 3 * MiB, seed=2) + b"end"


async def test_plain_http_endpoint_works_with_a_ca_bundle_set(
    seaweedfs: SeaweedServer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore reads AWS_CA_BUNDLE for https only: a missing file must not break http.
    monkeypatch.setenv("AWS_CA_BUNDLE", os.path.join(os.sep, "nonexistent", "ca.pem"))
    driver = s3_driver(seaweedfs, request, own_client=True)
    await driver.put_content("/x", b"ok")
    assert await driver.get_content("/x") == b"ok"
