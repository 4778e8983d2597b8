"""The `pyreg` commands end to end, in-process, against real registries."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import uuid
from pathlib import Path

import httpx
import pytest

from pyreg.client.progress import BarReporter, LineReporter, Reporter
from pyreg.oci.digest import Digest
from tests.client.cli import Pyreg
from tests.client.conftest import put_image
from tests.client.images import SampleImage, make_layer
from tests.client.servers import htpasswd_registry, token_registry
from tests.conftest import RegistryServer


@pytest.fixture
def pyreg(tmp_path: Path) -> Pyreg:
    return Pyreg(tmp_path)


def seeded(pyreg: Pyreg, name: str, layers: int = 2) -> SampleImage:
    from pyreg.client.store import ImageStore

    image = SampleImage([make_layer(1000 + i) for i in range(layers)])
    put_image(ImageStore(pyreg.root), image, name)
    return image


def test_version_and_help(pyreg: Pyreg) -> None:
    assert pyreg("--version").out.startswith("pyreg version ")
    result = pyreg("pull", "--help")
    assert result.code == 0 and "--platform" in result.out and "--all-tags" in result.out
    bad = pyreg("pull", "--nope")
    assert bad.code == 125 and bad.err.count("\n") == 2 and "See 'pyreg pull --help'" in bad.err


def test_push_pull_images_tag_rmi(pyreg: Pyreg, shared_registry: RegistryServer, tmp_path: Path) -> None:
    repo = f"{shared_registry.host}/cli/r{uuid.uuid4().hex[:8]}"
    image = seeded(pyreg, f"{repo}:v1")
    pushed = pyreg("push", f"{repo}:v1")
    assert pushed.code == 0, pushed.err
    lines = pushed.out.splitlines()
    assert lines[0] == f"The push refers to repository [{repo}]"
    assert lines[-1] == f"v1: digest: {image.digest} size: {len(image.manifest)}"
    assert sum(line.endswith(": Pushed") for line in lines) == 2
    other = Pyreg(tmp_path / "other")
    pulled = other("pull", f"{repo}:v1")
    assert pulled.code == 0, pulled.err
    assert pulled.out.splitlines()[-3:] == [f"Digest: {image.digest}",
                                            f"Status: Downloaded newer image for {repo}:v1", f"{repo}:v1"]
    again = other("pull", "-q", f"{repo}:v1")
    assert again.out == f"{repo}:v1\n"
    listed = other("images").out.splitlines()
    assert listed[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert listed[1].split()[:2] == [repo, "v1"]
    assert other("tag", f"{repo}:v1", "mine:latest").code == 0
    assert other("images", "-q").out.count("\n") == 1  # one image ID under two names
    assert [row.split()[1] for row in other("images", "mine").out.splitlines()[1:]] == ["latest"]
    digests = other("images", "--digests", repo).out
    assert str(image.digest) in digests
    doc = json.loads(other("inspect", "mine").out)[0]
    assert doc["RepoTags"] == [f"{repo}:v1", "mine:latest"] and doc["Os"] == "linux"
    hist = other("history", "mine").out.splitlines()
    assert hist[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"] and "layer 1" in hist[1]
    manifest = other("manifest", "inspect", f"{repo}:v1")
    assert json.loads(manifest.out) == json.loads(image.manifest)
    removed = other("rmi", "mine")
    assert removed.out == "Untagged: mine:latest\n"  # the blobs are still used by the other name
    removed = other("rmi", f"{repo}:v1")
    assert removed.out.count("Deleted: ") == 4
    assert not any((other.root / "blobs" / "sha256").iterdir())
    missing = other("rmi", "nothing")
    assert missing.code == 1 and "No such image: nothing" in missing.err


def test_push_all_tags_and_pull_all_tags(pyreg: Pyreg, shared_registry: RegistryServer, tmp_path: Path) -> None:
    repo = f"{shared_registry.host}/cli/r{uuid.uuid4().hex[:8]}"
    a, b = seeded(pyreg, f"{repo}:a"), seeded(pyreg, f"{repo}:b")
    # as docker since 20.10: no tag means `latest`, not every tag
    missing = pyreg("push", repo)
    assert missing.code == 1 and f"No such image: {repo}" in missing.err
    refused = pyreg("push", "-a", f"{repo}:a")
    assert refused.code == 1 and "tag can't be used with --all-tags/-a" in refused.err
    pushed = pyreg("push", "-a", repo)
    assert pushed.code == 0, pushed.err
    # each tag's digest line right after its layers, as docker prints them
    lines = pushed.out.splitlines()
    a_line, b_line = f"a: digest: {a.digest} size: {len(a.manifest)}", f"b: digest: {b.digest} size: {len(b.manifest)}"
    assert lines.index(a_line) == 3 and lines[-1] == b_line, lines
    assert sum(line.startswith("The push refers to repository") for line in lines) == 1
    assert pyreg("push", "-a", "-q", repo).out.splitlines() == [f"{repo}:a", f"{repo}:b"]
    other = Pyreg(tmp_path / "other")
    pulled = other("pull", "-a", repo)
    assert pulled.code == 0, pulled.err
    lines = pulled.out.splitlines()
    assert lines[0] == "a: Pulling from " + repo.split("/", 1)[1]
    assert lines[3:5] == [f"Digest: {a.digest}", "b: Pulling from " + repo.split("/", 1)[1]], lines
    assert lines[-3:] == [f"Digest: {b.digest}", f"Status: Downloaded newer image for {repo}", repo]
    assert sorted(r.split()[1] for r in other("images").out.splitlines()[1:]) == ["a", "b"]
    assert other("pull", "-a", f"{repo}:a").code == 1


def test_root_option_names_the_store(pyreg: Pyreg, tmp_path: Path) -> None:
    elsewhere = Pyreg(tmp_path / "elsewhere")
    seeded(elsewhere, "a/b:1")
    assert pyreg("images", "-q").out == ""  # $PYREG_ROOT is another store
    listed = pyreg("--root", str(elsewhere.root), "images").out.splitlines()
    assert [row.split()[:2] for row in listed[1:]] == [["a/b", "1"]]
    assert pyreg(f"--root={elsewhere.root}", "rmi", "a/b:1").code == 0
    assert elsewhere("images", "-q").out == ""


def test_errors_are_one_line(pyreg: Pyreg, shared_registry: RegistryServer) -> None:
    cases = [
        (("pull", "127.0.0.1:9/x:1"), "Error: cannot reach http"),
        (("pull", f"{shared_registry.host}/no/such:image"), "unknown: "),
        (("pull", "UPPER"), "repository name must be lowercase"),
        (("push", f"{shared_registry.host}/not/local:1"), "No such image"),
        (("inspect", "nothing"), "No such image: nothing"),
        (("pull", "--platform", "linux", "x"), "invalid platform"),
        (("load", "-i", "/no/such/file"), "no such file"),
    ]
    for args, message in cases:
        result = pyreg(*args)
        assert result.code == 1, (args, result)
        assert result.err.count("\n") == 1 and message in result.err and "Traceback" not in result.err
    debug = pyreg("--debug", "inspect", "nothing")
    assert "Traceback" in debug.err and debug.code == 1


def test_default_registry_and_insecure_from_config(pyreg: Pyreg, shared_registry: RegistryServer) -> None:
    pyreg.config(f'default-registry = "{shared_registry.host}"\n')
    name = f"cli/r{uuid.uuid4().hex[:8]}:v1"
    seeded(pyreg, f"{shared_registry.host}/{name}")
    assert pyreg("push", "-q", name).out == f"{shared_registry.host}/{name}\n"
    listed = pyreg("images").out.splitlines()
    assert listed[1].split()[0] == f"{shared_registry.host}/{name.split(':')[0]}"
    pyreg.config("default-registry = 'a/b'\n")
    bad = pyreg("images")
    assert bad.code == 1 and "default-registry" in bad.err


def test_login_logout_htpasswd(pyreg: Pyreg, tmp_path: Path) -> None:
    with htpasswd_registry(tmp_path, {"bob": "builder"}) as server:
        wrong = pyreg("login", server.host, "-u", "bob", "--password-stdin", stdin="nope\n")
        assert wrong.code == 1 and "incorrect username or password" in wrong.err
        assert not (tmp_path / "docker" / "config.json").exists()
        ok = pyreg("login", server.host, "-u", "bob", "--password-stdin", stdin="builder\n")
        assert ok.code == 0 and ok.out == "Login Succeeded\n"
        config = tmp_path / "docker" / "config.json"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert server.host in json.loads(config.read_text())["auths"]
        repo = f"{server.host}/bob/app:1"
        seeded(pyreg, repo)
        assert pyreg("push", repo).code == 0
        assert pyreg("logout", server.host).out == f"Removing login credentials for {server.host}\n"
        denied = pyreg("push", repo)
        assert denied.code == 1 and "401" in denied.err
        assert pyreg("logout", server.host).out == f"Not logged in to {server.host}\n"
        assert pyreg("login", server.host).err.startswith("Error: Cannot perform an interactive login")
        import io

        from pyreg.client.cli import main
        from pyreg.client.environment import Environment

        err = io.StringIO()
        env = Environment(stdin=io.StringIO("\n"), stdout=io.StringIO(), stderr=err, environ=pyreg.environ,
                          stdin_isatty=True)
        assert main(["login", server.host, "-p", "x"], env) == 1
        assert err.getvalue().endswith("Error: Non-null Username Required\n")


def test_login_with_token_server_stores_identity_token(pyreg: Pyreg, tmp_path: Path) -> None:
    with token_registry(tmp_path, {"carol": "secret"}) as (server, tokens):
        ok = pyreg("login", server.host, "-u", "carol", "-p", "secret")
        assert ok.code == 0 and "WARNING! Using --password" in ok.err
        entry = json.loads((tmp_path / "docker" / "config.json").read_text())["auths"][server.host]
        assert entry["identitytoken"] in tokens.refresh_tokens  # not the password
        repo = f"{server.host}/carol/app:1"
        seeded(pyreg, repo)
        assert pyreg("push", repo).code == 0
        assert tokens.requests[-1].grant == "refresh_token"


def test_reporters(pyreg: Pyreg) -> None:
    from pyreg.client.environment import Context, Environment

    ctx = Context(Environment(stdout_isatty=True), pyreg.root)
    bars = ctx.reporter(quiet=False)
    assert isinstance(bars, BarReporter)
    bars.close()
    assert isinstance(Context(Environment(), pyreg.root).reporter(False), LineReporter)
    assert type(ctx.reporter(quiet=True)) is Reporter


def test_rmi_by_id_and_prune(pyreg: Pyreg) -> None:
    image = seeded(pyreg, "a/b:1")
    assert pyreg("tag", "a/b:1", "a/b:2").code == 0
    image_id = json.loads(pyreg("inspect", "a/b:1").out)[0]["Id"]
    conflict = pyreg("rmi", image_id[7:19])
    assert conflict.code == 1 and "must be forced" in conflict.err
    forced = pyreg("rmi", "-f", image_id[7:19])
    assert forced.out.count("Untagged: ") == 2 and forced.out.count("Deleted: ") == 4
    seeded(pyreg, "c/d:1")
    from pyreg.client.store import ImageStore
    from pyreg.oci.imageref import parse_reference

    store = ImageStore(pyreg.root)
    store.add(parse_reference(f"c/d@{image.digest}"), store.resolve("c/d:1").descriptor)
    declined = pyreg("image", "prune")  # docker's question, and no answer: nothing is removed
    assert declined.code == 0 and declined.out.startswith("WARNING! This will remove all dangling images.")
    assert len(store.images()) == 2
    pruned = pyreg("image", "prune", stdin="y\n")
    assert pruned.code == 0 and pruned.out.endswith("Total reclaimed space: 0B\n")
    assert len(store.images()) == 1  # the digest-only name went, the tag stays
    everything = pyreg("image", "prune", "-a", "-f")
    assert "deleted: sha256:" in everything.out and store.images() == []


class Interrupting(httpx.AsyncBaseTransport):
    """Presses Ctrl-C (a real SIGINT) when the first blob is asked for."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "/blobs/" in request.url.path:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(5)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_ctrl_c_is_one_line_and_leaves_no_name(pyreg: Pyreg, shared_registry: RegistryServer, tmp_path: Path) -> None:
    import io

    from pyreg.client.cli import main
    from pyreg.client.environment import Environment

    repo = f"{shared_registry.host}/cli/r{uuid.uuid4().hex[:8]}:v1"
    seeded(pyreg, repo)
    assert pyreg("push", repo).code == 0
    other = Pyreg(tmp_path / "other")
    err = io.StringIO()
    env = Environment(stdout=io.StringIO(), stderr=err, environ=other.environ, transport=Interrupting())
    assert main(["pull", repo], env) == 130
    assert err.getvalue() == "interrupted\n"
    assert other("images", "-q").out == ""


def _pull(environ: dict[str, str], ref: str) -> int:
    import io

    from pyreg.client.cli import main
    from pyreg.client.environment import Environment

    return main(["pull", "-q", ref], Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ=environ))


def test_two_processes_pull_into_one_store(pyreg: Pyreg, shared_registry: RegistryServer, tmp_path: Path) -> None:
    import multiprocessing

    repos = [f"{shared_registry.host}/cli/r{uuid.uuid4().hex[:8]}:v1" for _ in range(2)]
    base = make_layer(200_000)
    from pyreg.client.store import ImageStore

    for repo in repos:
        put_image(ImageStore(pyreg.root), SampleImage([base, make_layer(1000)]), repo)
        assert pyreg("push", repo).code == 0
    other = Pyreg(tmp_path / "other")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        codes = pool.starmap(_pull, [(other.environ, repo) for repo in repos])
    assert codes == [0, 0]
    assert len(other("images").out.splitlines()) == 3
    # the shared layer is in the store once, and complete
    store = ImageStore(other.root)
    assert store.read_blob(Digest.from_bytes(base[0])) == base[0]
