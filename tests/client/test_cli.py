"""The command line's shape: `--help` everywhere, docker's exit codes, what start-up imports, the
progress display, and one line for failures of the disk and of integrity."""

from __future__ import annotations

import argparse
import errno
import io
import os
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest

from pyreg.client import cli
from pyreg.client.cli import build_parser
from pyreg.client.environment import Environment
from pyreg.client.progress import BarReporter, LineReporter
from pyreg.client.store import ImageStore
from tests.client.cli import Pyreg
from tests.client.test_commands import seeded
from tests.conftest import RegistryServer

COMMANDS = [["pull"], ["push"], ["login"], ["logout"], ["images"], ["tag"], ["rmi"], ["inspect"],
            ["history"], ["save"], ["load"], ["image", "prune"], ["manifest", "inspect"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    result = Pyreg(tmp_path)(*command, "--help")
    assert result.code == 0 and result.out.startswith(f"usage: pyreg {' '.join(command)}"), result


def test_exit_codes_as_docker(tmp_path: Path) -> None:
    pyreg = Pyreg(tmp_path)
    assert pyreg("images", "--nope").code == 125  # unknown flag
    assert pyreg("frobnicate").code == 125
    assert pyreg("tag", "only-one").code == 125  # a missing argument
    for group in ([], ["image"], ["manifest"]):  # no command: the help, on stdout
        result = pyreg(*group)
        assert result.code == 0 and result.out.startswith(f"usage: pyreg {' '.join(group)}".rstrip())


def _imported(*argv: str) -> set[str]:
    code = ("import sys, io; from pyreg.client.cli import main; "
            f"from pyreg.client.environment import Environment; main({list(argv)!r}, Environment("
            "stdout=io.StringIO(), stderr=io.StringIO())); print(' '.join(k for k, v in sys.modules.items() if v is not None))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYREG_ROOT": "/nonexistent/store"}).stdout
    return set(out.split())


def test_start_up_imports_only_what_the_command_needs() -> None:
    light = _imported("--version") | _imported("pull", "--help")
    assert not light & {"httpx", "asyncio", "ssl", "tarfile", "rich"}, light & {"httpx", "asyncio", "ssl"}
    # a registry command loads httpx, but never its command-line module (click, pygments, rich)
    # nor trio, which httpcore would import when installed
    heavy = _imported("manifest", "inspect", "127.0.0.1:9/x:1")
    assert "httpx" in heavy and not heavy & {"httpx._main", "rich", "click", "pygments", "trio"}


def test_start_up_imports_no_dataclasses() -> None:
    # importing dataclasses costs 5 ms, creating each dataclass 0.5 ms more
    assert "dataclasses" not in _imported("--version") | _imported("run", "--help")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def test_a_command_builds_the_parser_of_its_module_only() -> None:
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO())
    every = _subcommands(build_parser(env))
    assert set(every) == set(cli._MODULE_OF)
    for command, full in every.items():
        modules = cli._modules_needed(["--root", "/r", "-D", command, "--help"])
        assert modules == (cli._MODULE_OF[command],)
        alone = _subcommands(build_parser(env, modules))[command]
        assert alone.format_help() == full.format_help(), command
        assert _subcommands(alone).keys() == _subcommands(full).keys()
    assert cli._modules_needed(["--root=/r", "--version"]) == ()
    for argv in ([], ["-D"], ["--help"], ["frobnicate"], ["--deb", "images"]):
        assert cli._modules_needed(argv) == cli._MODULES, argv


def test_version_is_the_packages() -> None:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert cli.VERSION == project["version"]


def test_bars_on_a_terminal_are_redrawn_in_place() -> None:
    out = io.StringIO()
    now = [0.0]
    bars = BarReporter(out, clock=lambda: now[0])
    bars.line("v1: Pulling from x")
    bars.start("aaaaaaaaaaaa", 2_000_000, "Downloading")
    bars.start("bbbbbbbbbbbb", 100, "Downloading")
    bars.advance("aaaaaaaaaaaa", 1_000_000)  # within 0.1 s of the last drawing: not drawn
    assert "1MB/2MB" not in out.getvalue()
    now[0] = 1.0
    bars.advance("aaaaaaaaaaaa", 1)
    assert "aaaaaaaaaaaa: Downloading [=========================>" in out.getvalue()
    assert "1MB/2MB" in out.getvalue()
    bars.done("bbbbbbbbbbbb", "Pull complete")
    bars.line("Digest: sha256:…")
    bars.close()
    text = out.getvalue()
    # each redraw moves up over the rows drawn before (ESC [ n F) and clears each line (ESC [ 2K)
    assert "\x1b[2F" in text and "\x1b[2Kbbbbbbbbbbbb: Pull complete\n" in text
    # the plain line goes above the rows, which follow it again
    assert text.rstrip("\n").endswith("bbbbbbbbbbbb: Pull complete")
    assert "\x1b[2KDigest: sha256:…\n\x1b[2Kaaaaaaaaaaaa" in text
    plain = io.StringIO()
    lines = LineReporter(plain)
    lines.start("cccccccccccc", 10, "Downloading")
    lines.done("cccccccccccc", "Pull complete")
    assert plain.getvalue() == "cccccccccccc: Pull complete\n"  # no escape codes off a terminal


def test_disk_full_is_one_line_and_leaves_nothing(shared_registry: RegistryServer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ref = f"{shared_registry.host}/cli/r{uuid.uuid4().hex[:8]}:v1"
    pusher = Pyreg(tmp_path / "pusher")
    seeded(pusher, ref)
    assert pusher("push", "-q", ref).code == 0

    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("pyreg.client.ingest.os.pwrite", full)
    puller = Pyreg(tmp_path / "puller")
    result = puller("pull", ref)
    assert result.code == 1 and result.err == "Error: no space left on device\n", result.err
    monkeypatch.undo()
    store = ImageStore(puller.root)
    assert store.images() == [] and not any((puller.root / "blobs" / "sha256").iterdir())


def test_digest_mismatch_is_one_line(registry: RegistryServer, tmp_path: Path) -> None:
    ref = f"{registry.host}/cli/bad:v1"
    pusher = Pyreg(tmp_path / "pusher")
    image = seeded(pusher, ref)
    assert pusher("push", "-q", ref).code == 0
    layer = image.layer_descriptors[0].digest
    data = registry.root / "docker/registry/v2/blobs/sha256" / layer.encoded[:2] / layer.encoded / "data"
    data.write_bytes(bytes(len(data.read_bytes())))
    puller = Pyreg(tmp_path / "puller")
    result = puller("pull", ref)
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert result.err.startswith(f"Error: {layer}: digest mismatch"), result.err
    assert puller("images", "-q").out == ""


def test_bars_of_the_next_image_start_below_the_last() -> None:
    out = io.StringIO()
    bars = BarReporter(out, clock=lambda: 0.0)
    bars.start("aaaaaaaaaaaa", 10, "Downloading")
    bars.done("aaaaaaaaaaaa", "Pull complete")
    bars.close()  # one image done (`pull -a`, `push -a`): its rows stay as they are
    out.write("Digest: sha256:…\n")
    bars.start("bbbbbbbbbbbb", 10, "Downloading")
    text = out.getvalue()
    after = text[text.index("Digest"):]
    assert "\x1b[1F" not in after and "aaaaaaaaaaaa" not in after  # nothing above is redrawn
