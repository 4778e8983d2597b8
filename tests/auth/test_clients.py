"""Real clients against pyreg with auth on: skopeo, podman and docker log in, push and pull, in
htpasswd mode and in token mode (with the built-in token server); anonymous pull of a public
namespace; a pull-only account refused on push with the client's usual message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.conftest import htpasswd_entry
from tests.auth.suite import token_server_yaml
from tests.conftest import RegistryServer, require_tool, start_pyreg
from tests.interop.clients import Docker, Podman, Skopeo
from tests.interop.images import Layout

pytestmark = [pytest.mark.interop, pytest.mark.slow]

TLS = "--tls-verify=false"
USERS = {"alice": "alice:pw", "reader": "reader-pw", "admin": "admin-pw"}


def auth_yaml(base: Path, mode: str) -> str:
    if mode == "htpasswd":
        htpasswd = base / "htpasswd"
        htpasswd.write_text("".join(htpasswd_entry(u, p) for u, p in USERS.items()))
        return f"auth:\n  htpasswd:\n    realm: pyreg-clients\n    path: {htpasswd}\n"
    return token_server_yaml(base, USERS, "pyreg-clients")


@pytest.fixture(params=["htpasswd", "token"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, RegistryServer]]:
    server = start_pyreg(tmp_path / "data", extra=auth_yaml(tmp_path, request.param))
    yield request.param, server
    server.stop()


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    server = start_pyreg(tmp_path / "data", extra=auth_yaml(tmp_path, "token"))
    yield server
    server.stop()


def test_skopeo_login_and_copy(secured: tuple[str, RegistryServer], skopeo: Skopeo, image: Layout,
                               tmp_path: Path) -> None:
    _, server = secured
    authfile = str(tmp_path / "auth.json")
    ref = f"docker://{server.host}/alice/app:v1"
    bad = skopeo("login", TLS, "--authfile", authfile, "-u", "alice", "-p", "wrong", server.host, check=False)
    assert bad.returncode != 0
    anonymous = skopeo("copy", "--quiet", "--dest-tls-verify=false", image.ref, ref, check=False)
    assert anonymous.returncode != 0
    skopeo("login", TLS, "--authfile", authfile, "-u", "alice", "-p", USERS["alice"], server.host)
    skopeo.copy(image.ref, ref, "--authfile", authfile)
    raw = skopeo("inspect", "--raw", TLS, "--authfile", authfile, ref).stdout.encode()
    assert json.loads(raw)["layers"]
    out = tmp_path / "out"
    skopeo.copy(ref, f"oci:{out}:v1", "--authfile", authfile)
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == image.top.digest


def test_skopeo_anonymous_pull_of_a_public_namespace(token_registry: RegistryServer, skopeo: Skopeo,
                                                     image: Layout, tmp_path: Path) -> None:
    host = token_registry.host
    skopeo.copy(image.ref, f"docker://{host}/public/base:v1", "--dest-creds", f"admin:{USERS['admin']}")
    skopeo.copy(image.ref, f"docker://{host}/alice/private:v1", "--dest-creds", f"alice:{USERS['alice']}")
    assert skopeo.inspect(f"docker://{host}/public/base:v1")["Digest"] == image.top.digest
    refused = skopeo("inspect", TLS, f"docker://{host}/alice/private:v1", check=False)
    assert refused.returncode != 0


def test_podman_login_push_pull(secured: tuple[str, RegistryServer], podman: Podman, image: Layout,
                                tmp_path: Path) -> None:
    _, server = secured
    authfile = str(tmp_path / "auth.json")
    ref = f"{server.host}/alice/podman:v1"
    podman("pull", "--quiet", image.ref)
    local = podman("images", "--format", "{{.ID}}").stdout.split()[0]
    podman("tag", local, ref)
    assert podman("push", "--quiet", TLS, ref, check=False).returncode != 0  # not logged in
    podman("login", TLS, "--authfile", authfile, "-u", "alice", "-p", USERS["alice"], server.host)
    digest_file = tmp_path / "digest"
    podman("push", "--quiet", TLS, "--authfile", authfile, "--digestfile", str(digest_file), ref)
    podman("rmi", "--force", local)
    assert podman("pull", "--quiet", TLS, ref, check=False).returncode != 0  # not without the login
    podman("pull", "--quiet", TLS, "--authfile", authfile, ref)
    assert podman.image_digest(ref) == digest_file.read_text().strip()
    podman("logout", "--authfile", authfile, server.host)


def test_pull_only_account_refused_on_push(token_registry: RegistryServer, podman: Podman,
                                           skopeo: Skopeo, image: Layout, tmp_path: Path) -> None:
    host = token_registry.host
    skopeo.copy(image.ref, f"docker://{host}/alice/app:v1", "--dest-creds", f"alice:{USERS['alice']}")
    authfile = str(tmp_path / "auth.json")
    podman("login", TLS, "--authfile", authfile, "-u", "reader", "-p", USERS["reader"], host)
    podman("pull", "--quiet", TLS, "--authfile", authfile, f"{host}/alice/app:v1")
    podman("tag", f"{host}/alice/app:v1", f"{host}/alice/app:v2")
    pushed = podman("push", TLS, "--authfile", authfile, f"{host}/alice/app:v2", check=False)
    assert pushed.returncode != 0
    assert "requested access to the resource is denied" in pushed.stderr, pushed.stderr
    copied = skopeo("copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", f"reader:{USERS['reader']}",
                    image.ref, f"docker://{host}/alice/app:v3", check=False)
    assert copied.returncode != 0
    assert "requested access to the resource is denied" in copied.stderr, copied.stderr


@pytest.fixture(scope="module")
def loaded(docker: Docker, image: Layout, tmp_path_factory: pytest.TempPathFactory) -> str:
    skopeo_ = Skopeo(require_tool("skopeo"), tmp_path_factory.mktemp("skopeo"))
    archive = tmp_path_factory.mktemp("archive") / "image.tar"
    name = "pyreg-auth/busybox:v1"
    skopeo_.copy(image.ref, f"docker-archive:{archive}:{name}")
    docker("load", "--input", str(archive))
    return name


def test_docker_login_push_pull(secured: tuple[str, RegistryServer], docker: Docker, loaded: str) -> None:
    mode, server = secured
    ref = f"{server.host}/alice/docker-{mode}:v1"
    docker("tag", loaded, ref)
    try:
        denied = docker("push", ref, check=False)
        assert denied.returncode != 0
        bad = docker("login", "-u", "alice", "-p", "wrong", server.host, check=False)
        assert bad.returncode != 0
        docker("login", "-u", "alice", "-p", USERS["alice"], server.host)
        digest, _ = docker.push(ref)
        docker("rmi", ref)
        pulled = docker("pull", ref).stdout
        assert f"Digest: {digest}" in pulled, pulled
        if mode == "token":
            docker("logout", server.host)
            docker("login", "-u", "reader", "-p", USERS["reader"], server.host)
            other = f"{server.host}/alice/docker-{mode}:v2"
            docker("tag", ref, other)
            refused = docker("push", other, check=False)
            assert refused.returncode != 0
            assert "denied" in refused.stderr + refused.stdout, refused.stderr
            docker("rmi", other, check=False)
    finally:
        docker("logout", server.host, check=False)
        docker("rmi", ref, check=False)
