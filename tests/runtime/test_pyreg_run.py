"""`pyreg run` and the container commands of the `pyreg` command line (as root): images from the
client's store, pulled when missing, docker's output shapes, exit codes passed through."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.client.cli import Pyreg
from tests.conftest import RegistryServer
from tests.runtime.conftest import IMAGE_CONFIG, NAME, image_layers, wait_for
from tests.runtime.images import write_layout


def test_run_from_the_store_with_exit_codes(pyreg: Pyreg) -> None:
    result = pyreg("run", "--rm", "bb", "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert (result.code, result.out, result.err) == (3, "hi\n", "oops\n")
    assert pyreg("run", "--rm", "bb").out == "default\n"  # the image's Cmd
    assert pyreg("run", "--rm", "-e", "A=1", "-w", "/w", "-u", "app", "bb", "sh", "-c",
                 "echo $A; pwd; id -u").out.split() == ["1", "/w", "1000"]
    assert pyreg("run", "--rm", "--entrypoint", "echo", "bb", "x").out == "x\n"
    # docker's full and short names, and the image ID, all name the one image.
    assert pyreg("run", "--rm", NAME, "true").code == 0
    assert pyreg("run", "--rm", "library/bb", "true").code == 0
    assert (pyreg.root / "runtime" / "containers").is_dir()  # state beside the store


@pytest.mark.parametrize(("args", "code", "message"), [
    (("--pull", "never", "nosuch"), 125, "No such image: nosuch"),
    (("INVALID",), 125, "invalid reference format"),
    (("bb", "no-such-command"), 127, "executable file not found"),
    (("bb", "/bin/not-exec"), 126, "ermission denied"),
    (("-v", "/no/such/dir:/x", "bb", "true"), 125, "/no/such/dir does not exist"),
    (("-v", "relative:/x:rw:z", "bb", "true"), 125, "invalid volume"),
    (("-v", "/etc/passwd:/bin", "bb", "true"), 125, "cannot mount /etc/passwd on /bin"),
    (("--pull", "never", "--platform", "linux/s390x", "bb", "true"), 125, "does not match the specified platform"),
    (("--memory", "1k", "bb", "true"), 125, "memory"),
    (("--network", "none", "-p", "80:80", "bb", "true"), 125, "-p needs"),
])
def test_errors_are_one_line(pyreg: Pyreg, args: tuple[str, ...], code: int, message: str) -> None:
    result = pyreg("run", "--rm", *args)
    assert result.code == code and message in result.err, result.err
    assert result.err.count("\n") <= 2, result.err  # docker's "Unable to find ..." line at most
    assert pyreg("ps", "-a", "-q").out == ""


def test_lifecycle_commands(pyreg: Pyreg) -> None:
    script = "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done"
    started = pyreg("run", "-d", "--name", "svc", "bb", "sh", "-c", script)
    assert started.code == 0, started.err
    cid = started.out.strip()
    wait_for(lambda: "up" in pyreg("logs", "svc").out)
    header, row = pyreg("ps").out.splitlines()
    assert re.split(r"\s{2,}", header) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED",
                                            "STATUS", "PORTS", "NAMES"]
    assert row.startswith(cid[:12]) and " bb " in row and "Up " in row and row.endswith("svc")
    assert pyreg("container", "ls", "-q").out.split() == [cid[:12]]
    assert pyreg("exec", "-e", "B=2", "svc", "sh", "-c", "echo $B; hostname").out.split() == [
        "2", cid[:12]]
    assert pyreg("exec", "svc", "sh", "-c", "exit 4").code == 4
    assert pyreg("rename", "svc", "svc2").code == 0
    assert pyreg("stop", "-t", "5", "svc2").out == "svc2\n"
    assert re.search(r"Exited \(0\) .* ago", pyreg("ps", "-a").out)
    assert pyreg("logs", "svc2").out == "up\nbye\n"
    assert re.fullmatch(r"\S+Z up\n\S+Z bye\n", pyreg("logs", "-t", "svc2").out)
    [doc] = json.loads(pyreg("container", "inspect", "svc2").out)
    assert (doc["id"], doc["name"], doc["exit_code"]) == (cid, "svc2", 0)
    assert pyreg("restart", "svc2").code == 0
    wait_for(lambda: pyreg("logs", "svc2").out.count("up") == 2)
    assert pyreg("kill", "-s", "TERM", "svc2").code == 0
    wait_for(lambda: "Exited" in pyreg("ps", "-a").out)
    created = pyreg("create", "--name", "later", "bb", "echo", "from create")
    assert created.code == 0 and pyreg("start", "-a", "later").out == "from create\n"
    pruned = pyreg("container", "prune", "-f")
    assert pruned.out.splitlines()[0] == "Deleted Containers:"
    assert sorted(pruned.out.split()[2:]) == sorted([cid, created.out.strip()])
    assert pyreg("ps", "-a", "-q").out == ""
    assert pyreg("rm", "nosuch").code != 0


def test_volumes(pyreg: Pyreg) -> None:
    assert pyreg("volume", "create", "data").out == "data\n"
    assert pyreg("run", "--rm", "-v", "data:/data", "bb", "sh", "-c", "echo kept > /data/f").code == 0
    assert pyreg("run", "--rm", "-v", "data:/d:ro", "bb", "cat", "/d/f").out == "kept\n"
    assert pyreg("volume", "ls", "-q").out == "data\n"
    [doc] = json.loads(pyreg("volume", "inspect", "data").out)
    assert doc["Mountpoint"] == str(pyreg.root / "runtime" / "volumes" / "data" / "_data")
    assert pyreg("volume", "rm", "data").code == 0
    assert pyreg("volume", "ls").out.split() == ["DRIVER", "VOLUME", "NAME"]


def test_system_prune_collects_containers_images_and_layers(pyreg: Pyreg) -> None:
    assert pyreg("run", "--name", "stopped", "bb", "true").code == 0
    result = pyreg("system", "prune", "-a", "-f")
    assert result.code == 0, result.err
    assert "Deleted Containers:" in result.out and "Deleted Images:" in result.out
    assert result.out.splitlines()[-1].startswith("Total reclaimed space: ")
    assert pyreg("run", "--rm", "--pull", "never", "bb", "true").code == 125
    layers = pyreg.root / "runtime" / "layers" / "sha256"
    assert not layers.exists() or list(layers.iterdir()) == []


def test_run_pulls_a_missing_image(pyreg: Pyreg, registry: RegistryServer, tmp_path: Path) -> None:
    repo = f"{registry.host}/test/bb{uuid.uuid4().hex[:6]}"
    assert pyreg("tag", "bb", f"{repo}:v1").code == 0
    assert pyreg("push", f"{repo}:v1").code == 0
    other = Pyreg(tmp_path / "other")
    result = other("run", "--rm", f"{repo}:v1", "cat", "/srv/hello.txt")
    assert (result.code, result.out) == (0, "hello from the image\n"), result.err
    assert f"Unable to find image '{repo}:v1' locally" in result.err
    again = other("run", "--rm", "--pull", "never", f"{repo}:v1", "true")
    assert (again.code, again.err) == (0, "")
    always = other("run", "--rm", "--pull", "always", f"{repo}:v1", "true")
    assert always.code == 0 and "Unable to find image" not in always.err, always.err
    assert "Pulling from" in always.err  # asked the registry although the image is here
    missing = other("run", "--rm", f"{repo}:nosuch", "true")
    assert missing.code == 125, missing.err
    # As docker: "Unable to find image", the pull's own line, then the failure in one line.
    assert missing.err.splitlines()[-1].startswith("Error: ") and "unknown" in missing.err


def test_run_pulls_the_platform_asked_for_when_the_stored_image_is_another(
        pyreg: Pyreg, registry: RegistryServer, tmp_path: Path) -> None:
    repo = f"{registry.host}/test/bb{uuid.uuid4().hex[:6]}"
    assert pyreg("tag", "bb", f"{repo}:v1").code == 0
    assert pyreg("push", f"{repo}:v1").code == 0
    other = Pyreg(tmp_path / "other")
    s390x = tmp_path / "s390x"
    write_layout(s390x, image_layers(), IMAGE_CONFIG, tag=f"{repo}:v1", architecture="s390x")
    assert other("load", "-i", str(s390x)).code == 0
    # The store's image is of another platform: --pull missing pulls linux/amd64, as docker.
    result = other("run", "--rm", "--platform", "linux/amd64", f"{repo}:v1", "cat", "/srv/hello.txt")
    assert (result.code, result.out) == (0, "hello from the image\n"), result.err
    assert "Pulling from" in result.err
    # --pull never keeps to the store: refused, in docker's words.
    other("load", "-i", str(s390x))
    never = other("run", "--rm", "--pull", "never", "--platform", "linux/amd64", f"{repo}:v1", "true")
    assert never.code == 125 and "does not match the specified platform" in never.err, never.err


def _cli(pyreg: Pyreg, *args: str) -> list[str]:
    return [sys.executable, "-m", "pyreg.client.cli", "--root", str(pyreg.root), *args]


def test_as_a_command_pyreg_becomes_the_runtime(pyreg: Pyreg) -> None:
    env = {**os.environ, **pyreg.environ}
    done = subprocess.run(_cli(pyreg, "run", "--rm", "bb", "sh", "-c", "echo $$; exit 5"),
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (5, "1\n"), done.stderr
    script = "trap 'echo got TERM; exit 3' TERM; echo ready; sleep 60 & wait"
    with subprocess.Popen(_cli(pyreg, "run", "--rm", "bb", "sh", "-c", script), env=env,
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # to `pyreg run` itself: the container gets it
        assert proc.wait(20) == 3
        assert proc.stdout.read() == "got TERM\n"


def _supervisor_cmdline(pyreg: Pyreg, image: str, root: Path | None = None) -> str:
    """The command line of the process that supervises `pyreg run IMAGE` (pyreg's own)."""
    env = {**os.environ, **pyreg.environ}
    argv = [sys.executable, "-m", "pyreg.client.cli", "--root", str(root or pyreg.root), "run",
            "--rm", "--network", "none", image, "sh", "-c",
            "trap 'exit 3' TERM; echo ready; sleep 60 & wait"]
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_text().replace("\0", " ")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 3
        assert proc.stderr is not None and line == "ready\n", proc.stderr.read()
    return cmdline


def test_a_stored_image_runs_in_pyregs_own_process_a_pulled_one_in_a_fresh_one(
        pyreg: Pyreg, registry: RegistryServer, tmp_path: Path) -> None:
    # Untouched (no event loop ever ran): the runtime runs in the `pyreg` process itself.
    assert "pyreg.client.cli" in _supervisor_cmdline(pyreg, "bb")
    # After a pull (asyncio ran, threads may remain), it runs in a fresh interpreter.
    repo = f"{registry.host}/test/bb{uuid.uuid4().hex[:6]}"
    assert pyreg("tag", "bb", f"{repo}:v1").code == 0
    assert pyreg("push", f"{repo}:v1").code == 0
    fresh = _supervisor_cmdline(pyreg, f"{repo}:v1", root=tmp_path / "other")
    assert "pyreg.client.cli" not in fresh and "pyreg.runtime.cli" in fresh
    assert "pyreg.client.cli" in _supervisor_cmdline(pyreg, f"{repo}:v1", root=tmp_path / "other")


def test_run_imports_neither_asyncio_nor_httpx(pyreg: Pyreg) -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "pyreg.client.cli", "--root",
                           str(pyreg.root), "run", "--rm", "--network", "none", "bb", "true"],
                          capture_output=True, text=True, env={**os.environ, **pyreg.environ},
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert not imported & {"asyncio", "httpx", "pyreg.client.commands.pull", "subprocess"}
