"""After the fact (as root): a container whose monitor was killed, logs with timestamps and
streams, the layer cache's collection, and a runtime that may not create namespaces."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyreg.runtime.state import StateStore
from tests.runtime.conftest import Cli, cgroup_dirs, run_args, wait_for


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_a_killed_monitor_leaves_an_exit_code_and_prune_takes_its_cgroup(
        cli: Cli, busybox_layout: Path, root: Path) -> None:
    before = cgroup_dirs()
    cid = cli(*run_args(busybox_layout, "-d", "--name", "orphan", "--memory", "32m", "--",
                        "sleep", "60")).stdout.strip()
    wait_for(lambda: cid[:12] in cli("ps", "-q").stdout)
    state = StateStore(root).find(cid)
    assert len(state.cgroups) == 1 and state.cgroups[0] in cgroup_dirs()
    os.kill(_parent(state.pid), signal.SIGKILL)  # the monitor: the container dies with it
    wait_for(lambda: not Path(f"/proc/{state.pid}").exists())
    line = cli("ps", "-a").stdout.splitlines()[1]
    assert re.search(r"Exited \(137\) .* ago", line), line
    assert state.cgroups[0] in cgroup_dirs()  # nobody was left to remove it...
    assert cli("prune").stdout.split() == [cid]
    assert cgroup_dirs() == before  # ...until prune


def test_logs_keep_streams_apart_and_show_timestamps(cli: Cli, busybox_layout: Path) -> None:
    cid = cli(*run_args(busybox_layout, "-d", "--", "sh", "-c",
                        "echo out; echo err >&2; printf partial")).stdout.strip()
    wait_for(lambda: "Exited (0)" in cli("ps", "-a").stdout)
    logs = cli("logs", cid)
    assert (logs.stdout, logs.stderr) == ("out\npartial", "err\n")
    stamped = cli("logs", "-t", cid).stdout.splitlines()
    assert len(stamped) == 2
    for line in stamped:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (out|partial)", line), line
    assert cli("logs", "--tail", "1", cid).stdout == "partial"


def test_layer_prune_keeps_what_containers_and_the_store_use(cli: Cli, busybox_layout: Path,
                                                             root: Path) -> None:
    layers = root / "runtime" / "layers" / "sha256"
    kept = cli(*run_args(busybox_layout, "--name", "keeper", "--network", "none", "--", "true"))
    assert kept.returncode == 0, kept.stderr
    if not layers.exists():
        pytest.skip("overlayfs is not available here: no layer cache to collect")
    cached = sorted(f"sha256:{p.name}" for p in layers.iterdir())
    assert len(cached) == 2
    assert cli("layer", "prune").stdout == ""  # the stopped container still uses them
    assert cli("rm", "keeper").returncode == 0
    pruned = cli("layer", "prune", "--keep", cached[0])
    assert pruned.stdout.split() == ["deleted:", cached[1]]
    assert sorted(f"sha256:{p.name}" for p in layers.iterdir()) == cached[:1]
    again = cli(*run_args(busybox_layout, "--rm", "--network", "none", "--", "cat",
                          "/srv/hello.txt"))
    assert again.stdout == "hello from the image\n"  # unpacked again when needed


def test_no_namespaces_is_one_line_and_nothing_left(busybox_layout: Path, root: Path) -> None:
    # A runtime without CAP_SYS_ADMIN stands in for a kernel without the namespaces: unshare fails.
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    result = subprocess.run(
        ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", sys.executable, "-m",
         "pyreg.runtime", "run", "--root", str(root), "--network", "none",
         *run_args(busybox_layout, "--rm", "--", "true")[1:]],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 125
    assert result.stderr.count("\n") == 1 and "namespaces" in result.stderr, result.stderr
    assert not list((root / "runtime" / "containers").iterdir())


def test_logs_follow_sees_the_last_line(cli: Cli, busybox_layout: Path) -> None:
    cid = cli(*run_args(busybox_layout, "-d", "--", "sh", "-c",
                        "sleep 0.3; echo one; sleep 0.3; echo two")).stdout.strip()
    begin = time.monotonic()
    assert cli("logs", "-f", cid, timeout=30).stdout == "one\ntwo\n"
    assert time.monotonic() - begin < 10
