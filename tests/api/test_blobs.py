"""Blobs: GET (with ranges), HEAD, DELETE, repository scoping, digests in the URL."""

from __future__ import annotations

import pytest

from tests.api.helpers import Api, assert_error, digest_of, random_bytes, unique_repo

UNKNOWN = digest_of(b"no blob has these bytes " + random_bytes(16))


@pytest.fixture(scope="module")
def stored(api: Api) -> tuple[str, bytes, str]:
    repo = unique_repo("blobs")
    data = random_bytes(1000)
    return repo, data, api.push_blob(repo, data)


def test_get_returns_the_bytes_with_headers(api: Api, stored: tuple[str, bytes, str]) -> None:
    repo, data, d = stored
    r = api.client.get(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["docker-content-digest"] == d
    assert r.headers["content-type"] == "application/octet-stream"


def test_get_advertises_ranges_and_etag(api: Api, stored: tuple[str, bytes, str]) -> None:
    repo, _, d = stored
    r = api.client.get(f"/v2/{repo}/blobs/{d}")
    assert r.headers.get("accept-ranges") == "bytes"
    assert d in r.headers.get("etag", ""), r.headers


def test_head_has_length_and_digest_and_no_body(api: Api, stored: tuple[str, bytes, str]) -> None:
    repo, data, d = stored
    r = api.client.head(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["docker-content-digest"] == d
    assert r.content == b""


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=100-199", 100, 199),
        ("bytes=990-999", 990, 999),
        ("bytes=500-", 500, 999),
        ("bytes=-10", 990, 999),
        ("bytes=-1000", 0, 999),
        ("bytes=-5000", 0, 999),
        ("bytes=995-5000", 995, 999),
    ],
)
def test_range_get_answers_206_with_content_range(
    api: Api, stored: tuple[str, bytes, str], header: str, start: int, end: int
) -> None:
    repo, data, d = stored
    r = api.client.get(f"/v2/{repo}/blobs/{d}", headers={"Range": header})
    assert r.status_code == 206, r.text
    assert r.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
    assert r.content == data[start : end + 1]
    assert r.headers["content-length"] == str(end - start + 1)


@pytest.mark.parametrize(
    "header", ["bytes=1000-", "bytes=1000-2000", "bytes=5000-6000", "bytes=-0"]
)
def test_unsatisfiable_range_answers_416(
    api: Api, stored: tuple[str, bytes, str], header: str
) -> None:
    repo, data, d = stored
    r = api.client.get(f"/v2/{repo}/blobs/{d}", headers={"Range": header})
    assert r.status_code == 416, (r.status_code, r.headers)
    assert r.headers.get("content-range") == f"bytes */{len(data)}"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_unknown_blob_is_404_blob_unknown(
    api: Api, stored: tuple[str, bytes, str], method: str
) -> None:
    repo, _, _ = stored
    r = api.client.request(method, f"/v2/{repo}/blobs/{UNKNOWN}")
    assert_error(r, 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_blob_in_unknown_repository_is_404(api: Api, method: str) -> None:
    r = api.client.request(method, f"/v2/{unique_repo('nothere')}/blobs/{UNKNOWN}")
    assert_error(r, 404, {"BLOB_UNKNOWN", "NAME_UNKNOWN"})


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_blob_is_not_readable_from_another_repository(
    api: Api, stored: tuple[str, bytes, str], method: str
) -> None:
    _, _, d = stored
    other = unique_repo("blobs-other")
    api.push_blob(other, random_bytes(10))  # the other repository exists
    r = api.client.request(method, f"/v2/{other}/blobs/{d}")
    assert_error(r, 404, "BLOB_UNKNOWN")


def test_delete_blob_then_it_is_unknown(api: Api, repo: str) -> None:
    data = random_bytes(300)
    d = api.push_blob(repo, data)
    r = api.client.delete(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 202, r.text
    assert_error(api.client.get(f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN")
    assert_error(api.client.head(f"/v2/{repo}/blobs/{d}"), 404)
    # A second delete finds nothing.
    assert_error(api.client.delete(f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN")


def test_delete_blob_in_one_repository_leaves_it_in_another(api: Api) -> None:
    a, b = unique_repo("del-a"), unique_repo("del-b")
    data = random_bytes(200)
    d = api.push_blob(a, data)
    api.push_blob(b, data)
    assert api.client.delete(f"/v2/{a}/blobs/{d}").status_code == 202
    assert not api.blob_exists(a, d)
    r = api.client.get(f"/v2/{b}/blobs/{d}")
    assert r.status_code == 200 and r.content == data


def test_delete_unknown_blob_is_404(api: Api, stored: tuple[str, bytes, str]) -> None:
    repo, _, _ = stored
    assert_error(api.client.delete(f"/v2/{repo}/blobs/{UNKNOWN}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize(
    "bad",
    [
        "sha256:" + "a" * 63,  # wrong length for sha256
        "sha256:" + "a" * 65,
        "sha256:" + "A" * 64,  # the image spec allows only lowercase hex for sha256
        "sha256:" + "g" * 64,
        "sha512:" + "a" * 64,  # sha512 has 128 hex characters
        "md5:d41d8cd98f00b204e9800998ecf8427e",  # unsupported algorithm
    ],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_invalid_digest_in_url_is_400_digest_invalid(
    api: Api, stored: tuple[str, bytes, str], bad: str, method: str
) -> None:
    repo, _, _ = stored
    r = api.client.request(method, f"/v2/{repo}/blobs/{bad}")
    # Distribution answers DIGEST_INVALID (400) for a reference it can route but not parse; an
    # unsupported algorithm may also be reported as unsupported, never as found or as a crash.
    assert_error(r, {400, 404}, {"DIGEST_INVALID", "BLOB_UNKNOWN", "UNSUPPORTED"})
    if bad.startswith(("sha256:", "sha512:")):  # supported algorithms, malformed hex
        assert_error(r, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("bad", ["notadigest", "sha256", "sha256:", ":abc", "sha256:../../etc"])
def test_garbage_digest_in_url_is_never_served(
    api: Api, stored: tuple[str, bytes, str], bad: str
) -> None:
    repo, _, _ = stored
    r = api.client.get(f"/v2/{repo}/blobs/{bad}")
    assert r.status_code in (400, 404), r.status_code
    if r.status_code == 400:
        assert_error(r, 400, "DIGEST_INVALID")


def test_sha512_blob_push_and_get(api: Api, repo: str) -> None:
    data = random_bytes(512)
    d = api.push_blob(repo, data, algorithm="sha512")
    r = api.client.get(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == data
    # The spec lets the returned digest be of another algorithm ("different domains").
    assert r.headers["docker-content-digest"] in (d, digest_of(data))
