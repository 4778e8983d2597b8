"""Repository names against the spec's grammar; nothing stored outside the repositories dir."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import OCI_MANIFEST, Api, digest_of, dumps, oci_manifest, raw_http
from tests.conftest import RegistryServer, start_pyreg

LONG_OK = "a" * 100 + "/" + "b" * 100 + "/" + "c" * 53  # 255 characters
assert len(LONG_OK) == 255

VALID = [
    "a",
    "a/b",
    "a.b/c-d/e_f",
    "a__b",
    "a--b",
    "a---b",
    "0",
    "library/ubuntu",
    "x1.y2-z3",
    LONG_OK,
]
# Names that reach a name-taking route intact: the registry must answer NAME_INVALID.
INVALID_ROUTABLE = [
    "UPPER",
    "Upper/case",
    "a" * 256,
    "a/" * 127 + "bb",  # 256 characters
    "-lead",
    "trail-",
    "a..b",
    "a___b",
    "a.-b",
    "_a",
    "a:b",
    "a@b",
    "a%20b",
]
# Names a router may fail to match at all (404, or a redirect to the cleaned path): never 2xx or 5xx.
INVALID_PATHLIKE = ["../x", "a/../b", "a//b", "./a", "a/.", "b/", "/a", "a/..", ".."]


@pytest.fixture(scope="module")
def names_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    srv = start_pyreg(tmp_path_factory.mktemp("names") / "data")
    yield srv
    srv.stop()


def _all_requests(host: str, name: str) -> list[tuple[str, int, bytes]]:
    """Every name-taking endpoint with `name` spliced raw into the path: (method, status, body)."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    cd = digest_of(config)
    manifest = dumps(oci_manifest(config, []))
    results = []
    for method, target, body, headers in [
        (
            "POST",
            f"/v2/{name}/blobs/uploads/?digest={cd}",
            config,
            {"Content-Type": "application/octet-stream"},
        ),
        ("POST", f"/v2/{name}/blobs/uploads/", b"", {}),
        ("GET", f"/v2/{name}/blobs/{cd}", b"", {}),
        ("HEAD", f"/v2/{name}/blobs/{cd}", b"", {}),
        ("PUT", f"/v2/{name}/manifests/latest", manifest, {"Content-Type": OCI_MANIFEST}),
        ("GET", f"/v2/{name}/manifests/latest", b"", {}),
        ("DELETE", f"/v2/{name}/manifests/latest", b"", {}),
        ("GET", f"/v2/{name}/tags/list", b"", {}),
        ("GET", f"/v2/{name}/referrers/{cd}", b"", {}),
    ]:
        status, _, data = raw_http(host, method, target, body, headers)
        results.append((f"{method} {target}", status, data))
    return results


def _files(server: RegistryServer) -> set[str]:
    return server.storage.files()


@pytest.mark.parametrize("name", VALID)
def test_valid_names_are_accepted(names_server: RegistryServer, name: str) -> None:
    with httpx.Client(base_url=names_server.url, timeout=30) as c:
        api = Api(c, names_server.url)
        body, _d = api.push_image(name, "latest", layers=1)
        r = api.get_manifest(name, "latest")
        assert r.status_code == 200 and r.content == body
        assert api.tags(name).json() == {"name": name, "tags": ["latest"]}
    assert names_server.storage.exists(f"docker/registry/v2/repositories/{name}/_manifests")


@pytest.mark.parametrize("name", INVALID_ROUTABLE)
def test_invalid_names_are_400_name_invalid(names_server: RegistryServer, name: str) -> None:
    before = _files(names_server)
    for what, status, data in _all_requests(names_server.host, name):
        assert status == 400, f"{what}: {status} {data[:200]!r}"
        if not what.startswith("HEAD"):
            assert b'"NAME_INVALID"' in data, f"{what}: {data[:200]!r}"
    _assert_nothing_stored(names_server, before)


@pytest.mark.parametrize("name", INVALID_PATHLIKE)
def test_path_like_names_are_never_served_or_stored(
    names_server: RegistryServer, name: str
) -> None:
    before = _files(names_server)
    for what, status, data in _all_requests(names_server.host, name):
        # A redirect to the cleaned path (as Go's router does) is harmless too.
        assert status in (301, 308, 400, 404, 405), f"{what}: {status} {data[:200]!r}"
        if status == 400 and not what.startswith("HEAD"):
            assert b'"NAME_INVALID"' in data, f"{what}: {data[:200]!r}"
    _assert_nothing_stored(names_server, before)


def _assert_nothing_stored(server: RegistryServer, before: set[str]) -> None:
    after = _files(server)
    new = after - before
    # A rejected name may leave nothing at all, except in the global blob store at most (the
    # content-addressed bytes are harmless); never a repository, an upload or a stray file.
    stray = [f for f in new if not f.startswith("docker/registry/v2/blobs/")]
    assert not stray, stray
    outside = [f for f in after if not f.startswith("docker/registry/v2/")]
    assert not outside, outside
    escaped = server.storage.beside_root()
    assert not escaped, escaped
