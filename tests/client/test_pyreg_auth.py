"""`pyreg` against pyreg's own registry in token mode (the built-in token server), over a socket:
login stores an identity token got by an OAuth2 POST, push and pull with it, anonymous pull of a
public namespace, and a pull-only account refused on push in one clear line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.suite import token_server_yaml
from tests.client.cli import Pyreg
from tests.client.test_commands import seeded
from tests.conftest import RegistryServer, start_pyreg

USERS = {"alice": "alice-pw", "reader": "reader-pw", "admin": "admin-pw"}


def token_yaml(base: Path) -> str:
    return token_server_yaml(base, USERS, "pyreg-client-tests")


@pytest.fixture(scope="module")
def token_pyreg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    base = tmp_path_factory.mktemp("token-pyreg")
    server = start_pyreg(base / "data", extra=token_yaml(base))
    yield server
    server.stop()


def login(pyreg: Pyreg, server: RegistryServer, user: str) -> None:
    result = pyreg("login", server.host, "-u", user, "--password-stdin", stdin=USERS[user] + "\n")
    assert result.code == 0 and result.out == "Login Succeeded\n", result.err


def test_login_push_pull_with_identity_token(token_pyreg: RegistryServer, tmp_path: Path) -> None:
    alice = Pyreg(tmp_path / "alice")
    wrong = alice("login", token_pyreg.host, "-u", "alice", "--password-stdin", stdin="nope\n")
    assert wrong.code == 1 and wrong.err.count("\n") == 1 and "incorrect username or password" in wrong.err
    login(alice, token_pyreg, "alice")
    entry = json.loads((tmp_path / "alice" / "docker" / "config.json").read_text())["auths"][token_pyreg.host]
    # docker's shape: the identity token from the OAuth2 POST, never the password
    assert entry["identitytoken"] and "alice-pw" not in json.dumps(entry)
    image = seeded(alice, f"{token_pyreg.host}/alice/app:v1")
    pushed = alice("push", f"{token_pyreg.host}/alice/app:v1")
    assert pushed.code == 0, pushed.err
    assert pushed.out.splitlines()[-1] == f"v1: digest: {image.digest} size: {len(image.manifest)}"
    # a second store with the same login pulls it back
    again = Pyreg(tmp_path / "again", DOCKER_CONFIG=str(tmp_path / "alice" / "docker"))
    pulled = again("pull", f"{token_pyreg.host}/alice/app:v1")
    assert pulled.code == 0, pulled.err
    assert f"Digest: {image.digest}" in pulled.out
    # without the login, alice's namespace is closed
    anonymous = Pyreg(tmp_path / "anonymous")
    denied = anonymous("pull", f"{token_pyreg.host}/alice/app:v1")
    assert denied.code == 1 and denied.err.count("\n") == 1, denied.err
    assert alice("logout", token_pyreg.host).code == 0


def test_anonymous_pull_of_a_public_namespace(token_pyreg: RegistryServer, tmp_path: Path) -> None:
    admin = Pyreg(tmp_path / "admin")
    login(admin, token_pyreg, "admin")
    image = seeded(admin, f"{token_pyreg.host}/public/base:1")
    assert admin("push", "-q", f"{token_pyreg.host}/public/base:1").code == 0
    anonymous = Pyreg(tmp_path / "anonymous")
    pulled = anonymous("pull", f"{token_pyreg.host}/public/base:1")
    assert pulled.code == 0, pulled.err
    assert f"Digest: {image.digest}" in pulled.out
    refused = anonymous("push", f"{token_pyreg.host}/public/base:1")
    assert refused.code == 1 and refused.err.count("\n") == 1
    assert "denied" in refused.err and "Traceback" not in refused.err


def test_pull_only_account_is_refused_on_push(token_pyreg: RegistryServer, tmp_path: Path) -> None:
    reader = Pyreg(tmp_path / "reader")
    login(reader, token_pyreg, "reader")
    seeded(reader, f"{token_pyreg.host}/alice/other:1")
    refused = reader("push", f"{token_pyreg.host}/alice/other:1")
    assert refused.code == 1, refused.out
    assert refused.err.count("\n") == 1 and "Traceback" not in refused.err
    assert "denied: requested access to the resource is denied" in refused.err, refused.err
