"""Blob uploads: monolithic, POST+PUT, chunked, streamed, status, cancel, mount, bad input."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import (
    Api,
    assert_error,
    digest_of,
    random_bytes,
    send_truncated,
    unique_repo,
    with_query,
)
from tests.conftest import RegistryServer, start_pyreg

OCTET = {"Content-Type": "application/octet-stream"}


def _start(api: Api, repo: str) -> tuple[httpx.Response, str]:
    r = api.start_upload(repo)
    assert r.status_code == 202, r.text
    return r, api.upload_path(r)


def _chunk_size(resp: httpx.Response) -> int:
    """Chunks at least as long as the registry's advertised minimum, if any."""
    return max(int(resp.headers.get("oci-chunk-min-length", "0")), 64)


def _patch(api: Api, path: str, chunk: bytes, start: int | None) -> httpx.Response:
    headers = dict(OCTET)
    headers["Content-Length"] = str(len(chunk))
    if start is not None:
        headers["Content-Range"] = f"{start}-{start + len(chunk) - 1}"
    return api.client.patch(path, content=chunk, headers=headers)


def _put_last(api: Api, path: str, chunk: bytes, start: int, digest: str) -> httpx.Response:
    """The closing PUT carrying the last chunk, with its Content-Range."""
    headers = {**OCTET, "Content-Length": str(len(chunk)),
               "Content-Range": f"{start}-{start + len(chunk) - 1}"}
    return api.client.put(with_query(path, digest=digest), content=chunk, headers=headers)


def _assert_blob(api: Api, repo: str, data: bytes) -> None:
    r = api.client.get(f"/v2/{repo}/blobs/{digest_of(data)}")
    assert r.status_code == 200, r.text
    assert r.content == data


# ---- POST


def test_post_starts_a_session(api: Api, repo: str) -> None:
    r, path = _start(api, repo)
    assert r.headers.get("docker-upload-uuid"), r.headers
    assert f"/v2/{repo}/blobs/uploads/" in path
    assert r.headers.get("range") in (None, "0-0", "0--1", "0-"), r.headers.get("range")
    assert r.headers.get("content-length", "0") == "0" or r.content == b""


def test_two_posts_give_two_sessions(api: Api, repo: str) -> None:
    _, a = _start(api, repo)
    _, b = _start(api, repo)
    assert a.split("?")[0] != b.split("?")[0]


def test_monolithic_post_with_digest_answers_201(api: Api, repo: str) -> None:
    data = random_bytes(777)
    d = digest_of(data)
    r = api.client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data, headers=OCTET
    )
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    got = api.client.get(api.upload_path(r))  # Location is the blob
    assert got.status_code == 200 and got.content == data
    _assert_blob(api, repo, data)


def test_monolithic_post_with_wrong_digest_is_400_and_stores_nothing(api: Api, repo: str) -> None:
    data = random_bytes(300)
    claimed = digest_of(b"other bytes" + random_bytes(8))
    r = api.client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": claimed}, content=data, headers=OCTET
    )
    assert_error(r, 400, "DIGEST_INVALID")
    assert not api.blob_exists(repo, claimed)
    assert not api.blob_exists(repo, digest_of(data))


def test_post_then_put_with_body_answers_201(api: Api, repo: str) -> None:
    data = random_bytes(1234)
    d = digest_of(data)
    _, path = _start(api, repo)
    r = api.client.put(with_query(path, digest=d), content=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    assert api.upload_path(r).endswith(f"/v2/{repo}/blobs/{d}")
    _assert_blob(api, repo, data)


def test_empty_blob_can_be_pushed(api: Api, repo: str) -> None:
    d = digest_of(b"")
    _, path = _start(api, repo)
    r = api.client.put(with_query(path, digest=d), content=b"", headers=OCTET)
    assert r.status_code == 201, r.text
    got = api.client.get(f"/v2/{repo}/blobs/{d}")
    assert got.status_code == 200 and got.content == b""


def test_pushing_an_existing_blob_again_succeeds(api: Api, repo: str) -> None:
    data = random_bytes(100)
    api.push_blob(repo, data)
    api.push_blob(repo, data)
    _assert_blob(api, repo, data)


# ---- chunked


def test_chunked_upload(api: Api, repo: str) -> None:
    r, path = _start(api, repo)
    size = _chunk_size(r)
    data = random_bytes(size * 3 - 7)
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    offset = 0
    for chunk in chunks[:-1]:
        r = _patch(api, path, chunk, offset)
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert r.headers["range"] == f"0-{offset - 1}"
        assert r.headers.get("docker-upload-uuid")
        path = api.upload_path(r)
    last = chunks[-1]
    r = _put_last(api, path, last, offset, digest_of(data))
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == digest_of(data)
    _assert_blob(api, repo, data)


def test_chunked_upload_closed_by_empty_put(api: Api, repo: str) -> None:
    r, path = _start(api, repo)
    size = _chunk_size(r)
    data = random_bytes(size * 2)
    r = _patch(api, path, data[:size], 0)
    assert r.status_code == 202, r.text
    r = _patch(api, api.upload_path(r), data[size:], size)
    assert r.status_code == 202, r.text
    r = api.client.put(
        with_query(api.upload_path(r), digest=digest_of(data)), headers={"Content-Length": "0"}
    )
    assert r.status_code == 201, r.text
    _assert_blob(api, repo, data)


def test_out_of_order_chunk_is_416_and_upload_stays_usable(api: Api, repo: str) -> None:
    r, path = _start(api, repo)
    size = _chunk_size(r)
    data = random_bytes(size * 3)
    r = _patch(api, path, data[:size], 0)
    assert r.status_code == 202, r.text
    path = api.upload_path(r)
    # Skip the second chunk: a gap.
    bad = _patch(api, path, data[2 * size :], 2 * size)
    assert_error(bad, 416)
    status = api.client.get(path)
    assert status.status_code == 204
    assert status.headers["range"] == f"0-{size - 1}"
    r = _patch(api, path, data[size : 2 * size], size)
    assert r.status_code == 202, r.text
    r = _patch(api, api.upload_path(r), data[2 * size :], 2 * size)
    assert r.status_code == 202, r.text
    r = api.client.put(with_query(api.upload_path(r), digest=digest_of(data)))
    assert r.status_code == 201, r.text
    _assert_blob(api, repo, data)


def test_first_chunk_not_at_zero_is_416(api: Api, repo: str) -> None:
    r, path = _start(api, repo)
    size = _chunk_size(r)
    assert_error(_patch(api, path, random_bytes(size), 1), 416)


@pytest.mark.parametrize("overlap", [1, "all", "inside"])
def test_overlapping_chunk_is_416_and_upload_stays_usable(
    api: Api, repo: str, overlap: int | str
) -> None:
    r, path = _start(api, repo)
    size = _chunk_size(r)
    data = random_bytes(size * 2)
    r = _patch(api, path, data[:size], 0)
    assert r.status_code == 202, r.text
    path = api.upload_path(r)
    if overlap == "all":
        bad = _patch(api, path, data[:size], 0)  # the same chunk again
    elif overlap == "inside":
        bad = _patch(api, path, data[1 : size - 1], 1)
    else:
        bad = _patch(api, path, data[size - 1 :], size - 1)
    assert_error(bad, 416)
    r = _patch(api, path, data[size:], size)
    assert r.status_code == 202, r.text
    r = api.client.put(with_query(api.upload_path(r), digest=digest_of(data)))
    assert r.status_code == 201, r.text
    _assert_blob(api, repo, data)


@pytest.mark.parametrize("content_range", ["abc", "0-", "-5", "5-2", "1-10", "0-x"])
def test_malformed_content_range_is_rejected(api: Api, repo: str, content_range: str) -> None:
    _, path = _start(api, repo)
    r = api.client.patch(
        path, content=b"0123456789", headers={**OCTET, "Content-Range": content_range}
    )
    assert r.status_code in (400, 416), (r.status_code, r.text)
    assert_error(r, {400, 416})


def test_content_range_disagreeing_with_content_length_is_rejected(api: Api, repo: str) -> None:
    r, path = _start(api, repo)
    size = _chunk_size(r)
    chunk = random_bytes(size)
    # Range claims one more byte than is sent.
    r = api.client.patch(path, content=chunk, headers={**OCTET, "Content-Range": f"0-{size}"})
    assert_error(r, {400, 416})
    status = api.client.get(path)
    assert status.status_code == 204
    assert status.headers["range"] in ("0-0", "0--1", "0-")  # nothing was appended


def test_streamed_patches_without_content_range_append(api: Api, repo: str) -> None:
    data = random_bytes(5000)
    _, path = _start(api, repo)
    r = api.client.patch(path, content=data[:3000], headers=OCTET)
    assert r.status_code == 202, r.text
    assert r.headers["range"] == "0-2999"
    r = api.client.patch(api.upload_path(r), content=data[3000:], headers=OCTET)
    assert r.status_code == 202, r.text
    assert r.headers["range"] == "0-4999"
    r = api.client.put(with_query(api.upload_path(r), digest=digest_of(data)))
    assert r.status_code == 201, r.text
    _assert_blob(api, repo, data)


def test_streamed_patch_with_chunked_transfer_encoding(api: Api, repo: str) -> None:
    data = random_bytes(200_000)
    _, path = _start(api, repo)

    def gen() -> Iterator[bytes]:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    r = api.client.patch(path, content=gen(), headers=OCTET)  # no Content-Length: chunked
    assert r.status_code == 202, r.text
    assert r.headers["range"] == f"0-{len(data) - 1}"
    r = api.client.put(with_query(api.upload_path(r), digest=digest_of(data)))
    assert r.status_code == 201, r.text
    _assert_blob(api, repo, data)


# ---- status, cancel, unknown


def test_upload_status(api: Api, repo: str) -> None:
    r, path = _start(api, repo)
    uid = r.headers.get("docker-upload-uuid")
    r = api.client.patch(path, content=random_bytes(100), headers=OCTET)
    assert r.status_code == 202
    path = api.upload_path(r)
    s = api.client.get(path)
    assert s.status_code == 204
    assert s.headers["range"] == "0-99"
    assert s.headers.get("docker-upload-uuid") == uid
    assert f"/v2/{repo}/blobs/uploads/" in api.upload_path(s)
    assert s.content == b""


def test_cancel_upload_then_it_is_unknown(api: Api, repo: str) -> None:
    _, path = _start(api, repo)
    assert api.client.patch(path, content=b"x" * 10, headers=OCTET).status_code == 202
    r = api.client.delete(path)
    assert r.status_code == 204, r.text
    assert_error(api.client.get(path), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(api.client.patch(path, content=b"y", headers=OCTET), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(
        api.client.put(with_query(path, digest=digest_of(b"x" * 10))), 404, "BLOB_UPLOAD_UNKNOWN"
    )
    assert not api.blob_exists(repo, digest_of(b"x" * 10))


def test_finished_upload_is_no_longer_known(api: Api, repo: str) -> None:
    data = random_bytes(50)
    _, path = _start(api, repo)
    assert api.client.put(with_query(path, digest=digest_of(data)), content=data).status_code == 201
    assert_error(api.client.get(path), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize(
    ("method", "params"),
    [("GET", None), ("PATCH", None), ("PUT", "digest"), ("DELETE", None)],
)
@pytest.mark.parametrize(
    "upload_id", ["0b5f0f4e-6a8e-4c53-9b6c-0d0f1e2a3b4c", "not-a-uuid", "0" * 10]
)
def test_unknown_upload_id_is_404(
    api: Api, repo: str, method: str, params: str | None, upload_id: str
) -> None:
    api.push_blob(repo, random_bytes(8))
    q = {"digest": digest_of(b"abc")} if params else None
    r = api.client.request(
        method, f"/v2/{repo}/blobs/uploads/{upload_id}", params=q, content=b"abc"
    )
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_cannot_be_continued_under_another_repository(api: Api, repo: str) -> None:
    _, path = _start(api, repo)
    other = unique_repo("other")
    api.push_blob(other, random_bytes(8))
    stolen = path.replace(f"/v2/{repo}/", f"/v2/{other}/")
    data = random_bytes(20)
    r = api.client.put(with_query(stolen, digest=digest_of(data)), content=data)
    assert_error(r, {400, 404}, {"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})
    assert not api.blob_exists(other, digest_of(data))


# ---- digests on PUT


def test_put_with_wrong_digest_is_400_and_blob_not_visible(api: Api, repo: str) -> None:
    data = random_bytes(400)
    claimed = digest_of(random_bytes(400))
    _, path = _start(api, repo)
    r = api.client.put(with_query(path, digest=claimed), content=data, headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert not api.blob_exists(repo, claimed)
    assert not api.blob_exists(repo, digest_of(data))


@pytest.mark.parametrize(
    "bad",
    [
        "nonsense",
        "sha256:xyz",
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "sha256:",
        ":" + "a" * 64,
    ],
)
def test_put_with_invalid_digest_string_is_400(api: Api, repo: str, bad: str) -> None:
    data = random_bytes(40)
    _, path = _start(api, repo)
    r = api.client.put(with_query(path, digest=bad), content=data, headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert not api.blob_exists(repo, digest_of(data))


def test_put_without_digest_is_400(api: Api, repo: str) -> None:
    data = random_bytes(40)
    _, path = _start(api, repo)
    r = api.client.put(path, content=data, headers=OCTET)
    assert_error(r, 400, {"DIGEST_INVALID", "BLOB_UPLOAD_INVALID"})
    assert not api.blob_exists(repo, digest_of(data))


def test_put_with_sha512_digest(api: Api, repo: str) -> None:
    data = random_bytes(300)
    d = digest_of(data, "sha512")
    _, path = _start(api, repo)
    r = api.client.put(with_query(path, digest=d), content=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] in (d, digest_of(data))  # "different domains" allowed
    got = api.client.get(f"/v2/{repo}/blobs/{d}")
    assert got.status_code == 200 and got.content == data


# ---- cross-repository mount


def test_mount_from_a_repository_holding_the_blob_is_201(api: Api) -> None:
    src, dst = unique_repo("mount-src"), unique_repo("mount-dst")
    data = random_bytes(600)
    d = api.push_blob(src, data)
    assert_error(api.client.get(f"/v2/{dst}/blobs/{d}"), 404)
    r = api.start_upload(dst, mount=d, **{"from": src})
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    assert api.upload_path(r).endswith(f"/v2/{dst}/blobs/{d}")
    got = api.client.get(f"/v2/{dst}/blobs/{d}")
    assert got.status_code == 200 and got.content == data
    # The source keeps it.
    assert api.blob_exists(src, d)


@pytest.mark.parametrize("case", ["source-absent", "blob-not-in-source"])
def test_mount_that_cannot_be_done_falls_back_to_an_upload(api: Api, case: str) -> None:
    dst = unique_repo("mount-dst")
    data = random_bytes(321)
    d = digest_of(data)
    if case == "source-absent":
        src = unique_repo("mount-nowhere")
    else:
        src = unique_repo("mount-src")
        api.push_blob(src, random_bytes(10))
        # The blob exists in the registry but not in `src`: still no mount.
        api.push_blob(unique_repo("mount-third"), data)
    r = api.start_upload(dst, mount=d, **{"from": src})
    assert r.status_code == 202, r.text
    assert not api.blob_exists(dst, d)
    path = api.upload_path(r)
    assert f"/v2/{dst}/blobs/uploads/" in path
    r = api.client.put(with_query(path, digest=d), content=data, headers=OCTET)
    assert r.status_code == 201, r.text
    _assert_blob(api, dst, data)


# ---- truncated bodies and concurrency


@pytest.mark.parametrize("how", ["monolithic-post", "put"])
def test_body_shorter_than_content_length_stores_nothing(
    api: Api, server: RegistryServer, repo: str, how: str
) -> None:
    full = random_bytes(1000)
    d = digest_of(full)
    if how == "monolithic-post":
        target = f"/v2/{repo}/blobs/uploads/?digest={d}"
        method = "POST"
    else:
        _, path = _start(api, repo)
        sep = "&" if "?" in path else "?"
        target = f"{path}{sep}digest={d}"
        method = "PUT"
    send_truncated(server.host, method, target, claimed=1000, data=full[:100])
    assert not api.blob_exists(repo, d)
    assert not api.blob_exists(repo, digest_of(full[:100]))
    # The server is fine afterwards.
    assert api.client.get("/v2/").status_code == 200


def test_concurrent_pushes_of_the_same_blob_all_succeed(server: RegistryServer, repo: str) -> None:
    data = random_bytes(300_000)
    d = digest_of(data)
    barrier = threading.Barrier(8)

    def push(_: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.post(f"/v2/{repo}/blobs/uploads/")
            loc = r.headers["location"]
            barrier.wait()
            return c.put(with_query(loc, digest=d), content=data, headers=OCTET).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(push, range(8)))
    assert statuses == [201] * 8
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.get(f"/v2/{repo}/blobs/{d}")
        assert r.status_code == 200 and r.content == data


def test_concurrent_monolithic_pushes_to_several_repositories(server: RegistryServer) -> None:
    data = random_bytes(100_000)
    d = digest_of(data)
    repos = [unique_repo("conc") for _ in range(6)]
    barrier = threading.Barrier(len(repos))

    def push(repo: str) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.post(f"/v2/{repo}/blobs/uploads/")
            loc = r.headers["location"]
            barrier.wait()
            return c.put(with_query(loc, digest=d), content=data, headers=OCTET).status_code

    with ThreadPoolExecutor(len(repos)) as pool:
        assert list(pool.map(push, repos)) == [201] * len(repos)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for repo in repos:
            r = c.get(f"/v2/{repo}/blobs/{d}")
            assert r.status_code == 200 and r.content == data


# ---- more edges


def test_put_with_out_of_order_content_range_is_416_and_upload_stays_usable(
    api: Api, repo: str
) -> None:
    r, path = _start(api, repo)
    size = _chunk_size(r)
    data = random_bytes(size * 2)
    r = _patch(api, path, data[:size], 0)
    assert r.status_code == 202
    path = api.upload_path(r)
    last = data[size:]
    bad = _put_last(api, path, last, size + 1, digest_of(data))  # one byte past the end
    assert_error(bad, 416)
    assert not api.blob_exists(repo, digest_of(data))
    r = _put_last(api, path, last, size, digest_of(data))
    assert r.status_code == 201, r.text
    _assert_blob(api, repo, data)


def test_large_chunked_upload_and_ranged_read(api: Api, repo: str) -> None:
    data = random_bytes(12 * 1024 * 1024 + 5)
    r, path = _start(api, repo)
    size = max(_chunk_size(r), 4 * 1024 * 1024)
    offset = 0
    while offset < len(data):
        chunk = data[offset : offset + size]
        r = _patch(api, path, chunk, offset)
        assert r.status_code == 202, r.text
        offset += len(chunk)
        path = api.upload_path(r)
    r = api.client.put(with_query(path, digest=digest_of(data)))
    assert r.status_code == 201, r.text
    d = digest_of(data)
    head = api.client.head(f"/v2/{repo}/blobs/{d}")
    assert head.headers["content-length"] == str(len(data))
    part = api.client.get(f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=8388600-8388700"})
    assert part.status_code == 206
    assert part.content == data[8388600:8388701]
    _assert_blob(api, repo, data)


def test_monolithic_post_of_the_empty_blob(api: Api, repo: str) -> None:
    d = digest_of(b"")
    r = api.client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=b"", headers=OCTET
    )
    # An empty monolithic POST is indistinguishable from a session start with a digest hint: a
    # registry may complete it (201) or open a session (202); it must not fail.
    assert r.status_code in (201, 202), r.text
    if r.status_code == 202:
        r = api.client.put(with_query(api.upload_path(r), digest=d))
        assert r.status_code == 201, r.text
    assert api.client.get(f"/v2/{repo}/blobs/{d}").status_code == 200


def test_mount_without_from(api: Api) -> None:
    src, dst = unique_repo("mount-src"), unique_repo("mount-dst")
    data = random_bytes(77)
    d = api.push_blob(src, data)
    r = api.start_upload(dst, mount=d)
    # OCI 1.1 lets a registry mount from any repository (201) or open a session (202).
    assert r.status_code in (201, 202), r.text
    if r.status_code == 201:
        _assert_blob(api, dst, data)
    else:
        assert f"/v2/{dst}/blobs/uploads/" in api.upload_path(r)


def test_mount_with_invalid_digest_does_not_mount(api: Api) -> None:
    src, dst = unique_repo("mount-src"), unique_repo("mount-dst")
    api.push_blob(src, random_bytes(7))
    r = api.start_upload(dst, mount="sha256:nothex", **{"from": src})
    assert r.status_code in (202, 400), r.text
    if r.status_code == 400:
        assert_error(r, 400, "DIGEST_INVALID")


def test_truncated_patch_never_claims_bytes_it_did_not_get(
    api: Api, server: RegistryServer, repo: str
) -> None:
    _, path = _start(api, repo)
    send_truncated(server.host, "PATCH", path, claimed=1000, data=b"z" * 100)
    s = api.client.get(path)
    assert s.status_code in (204, 404), s.text
    if s.status_code == 204:
        end = int(s.headers["range"].split("-", 1)[1])
        assert end <= 99, s.headers["range"]


def test_upload_survives_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "data"
    repo = "restart/repo"
    data = random_bytes(300_000)
    srv = start_pyreg(root)
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            api = Api(c, srv.url)
            r, path = _start(api, repo)
            size = max(_chunk_size(r), 100_000)
            r = _patch(api, path, data[:size], 0)
            assert r.status_code == 202
            path = api.upload_path(r)
    finally:
        srv.stop()
    srv = start_pyreg(root)
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            api = Api(c, srv.url)
            s = api.client.get(path)
            assert s.status_code == 204, s.text
            assert s.headers["range"] == f"0-{size - 1}"
            r = _patch(api, path, data[size:], size)
            assert r.status_code == 202, r.text
            r = api.client.put(with_query(api.upload_path(r), digest=digest_of(data)))
            assert r.status_code == 201, r.text
            _assert_blob(api, repo, data)
    finally:
        srv.stop()
