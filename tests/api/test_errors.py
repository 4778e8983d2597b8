"""The error body of every failure, and deletes with deletion disabled by config."""

from __future__ import annotations

import pytest

from tests.api.helpers import OCI_MANIFEST, Api, assert_error, digest_of, random_bytes, unique_repo

UNKNOWN = digest_of(b"unknown")


@pytest.fixture(scope="module")
def existing(api: Api) -> str:
    repo = unique_repo("errors")
    api.push_image(repo, "latest")
    return repo


# (method, path template, params, body, headers, status, code); {repo} is an existing repository.
CASES = [
    ("GET", "/v2/{repo}/blobs/" + UNKNOWN, None, b"", {}, 404, "BLOB_UNKNOWN"),
    ("DELETE", "/v2/{repo}/blobs/" + UNKNOWN, None, b"", {}, 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/{repo}/manifests/nosuchtag", None, b"", {}, 404, "MANIFEST_UNKNOWN"),
    ("GET", "/v2/{repo}/manifests/" + UNKNOWN, None, b"", {}, 404, "MANIFEST_UNKNOWN"),
    ("DELETE", "/v2/{repo}/manifests/" + UNKNOWN, None, b"", {}, 404, "MANIFEST_UNKNOWN"),
    (
        "PUT",
        "/v2/{repo}/manifests/t",
        None,
        b"{",
        {"Content-Type": OCI_MANIFEST},
        400,
        "MANIFEST_INVALID",
    ),
    (
        "GET",
        "/v2/{repo}/blobs/uploads/00000000-0000-0000-0000-000000000000",
        None,
        b"",
        {},
        404,
        "BLOB_UPLOAD_UNKNOWN",
    ),
    (
        "DELETE",
        "/v2/{repo}/blobs/uploads/00000000-0000-0000-0000-000000000000",
        None,
        b"",
        {},
        404,
        "BLOB_UPLOAD_UNKNOWN",
    ),
    ("POST", "/v2/{repo}/blobs/uploads/", {"digest": UNKNOWN}, b"data", {}, 400, "DIGEST_INVALID"),
    (
        "POST",
        "/v2/{repo}/blobs/uploads/",
        {"digest": "sha256:nothex"},
        b"data",
        {},
        400,
        "DIGEST_INVALID",
    ),
    ("GET", "/v2/nosuch/repository/tags/list", None, b"", {}, 404, "NAME_UNKNOWN"),
    ("GET", "/v2/UPPER/tags/list", None, b"", {}, 400, "NAME_INVALID"),
    ("POST", "/v2/UPPER/blobs/uploads/", None, b"", {}, 400, "NAME_INVALID"),
]


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "headers", "status", "code"),
    CASES,
    ids=[f"{c[0]}-{c[6]}-{i}" for i, c in enumerate(CASES)],
)
def test_error_body_shape(
    api: Api,
    existing: str,
    method: str,
    path: str,
    params: dict[str, str] | None,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    r = api.client.request(
        method, path.format(repo=existing), params=params, content=body, headers=headers
    )
    assert_error(r, status, code)
    assert r.headers["content-length"] == str(len(r.content))
    assert r.headers.get("docker-distribution-api-version") in (None, "registry/2.0")


def test_error_messages_are_not_empty(api: Api, existing: str) -> None:
    r = api.client.get(f"/v2/{existing}/manifests/nosuchtag")
    err = r.json()["errors"][0]
    assert err["message"].strip()


def test_unknown_endpoint_under_v2_is_404(api: Api) -> None:
    r = api.client.get("/v2/some/repo/nonsense/endpoint")
    assert r.status_code == 404


@pytest.mark.parametrize("method", ["PATCH", "POST"])
def test_method_not_allowed_on_manifests(api: Api, existing: str, method: str) -> None:
    r = api.client.request(method, f"/v2/{existing}/manifests/latest", content=b"{}")
    assert r.status_code in (404, 405), r.status_code


# ---- deletion disabled


def test_blob_delete_disabled_is_405_unsupported(nodelete_api: Api) -> None:
    api = nodelete_api
    repo = unique_repo("nodel")
    data = random_bytes(50)
    d = api.push_blob(repo, data)
    r = api.client.delete(f"/v2/{repo}/blobs/{d}")
    assert_error(r, 405, "UNSUPPORTED")
    assert api.client.get(f"/v2/{repo}/blobs/{d}").content == data


def test_manifest_and_tag_delete_disabled_is_405_unsupported(nodelete_api: Api) -> None:
    api = nodelete_api
    repo = unique_repo("nodel")
    body, d = api.push_image(repo, "latest")
    assert_error(api.client.delete(f"/v2/{repo}/manifests/{d}"), 405, "UNSUPPORTED")
    assert_error(api.client.delete(f"/v2/{repo}/manifests/latest"), 405, "UNSUPPORTED")
    for ref in ("latest", d):
        r = api.get_manifest(repo, ref)
        assert r.status_code == 200 and r.content == body


def test_upload_cancel_still_works_with_deletion_disabled(nodelete_api: Api) -> None:
    api = nodelete_api
    repo = unique_repo("nodel")
    r = api.start_upload(repo)
    path = api.upload_path(r)
    assert api.client.delete(path).status_code == 204
    assert_error(api.client.get(path), 404, "BLOB_UPLOAD_UNKNOWN")
