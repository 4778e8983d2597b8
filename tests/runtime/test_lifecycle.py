"""Detached containers and their lifecycle (as root): state on disk, ps, logs, stop, kill, rm,
exec, and cgroup limits, with nothing left in the cgroup tree or the mount table."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from pyreg.runtime.state import StateStore
from tests.runtime.conftest import Cli, run_args, wait_for


def test_detached_run_logs_stop_rm(cli: Cli, busybox_layout: Path, root: Path) -> None:
    script = "trap 'echo stopping; exit 0' TERM; echo started; while true; do sleep 0.1; done"
    started = cli(*run_args(busybox_layout, "-d", "--name", "svc", "--", "sh", "-c", script))
    assert started.returncode == 0, started.stderr
    cid = started.stdout.strip()
    assert len(cid) == 64 and (root / "runtime" / "containers" / cid / "state.json").exists()
    wait_for(lambda: "started" in cli("logs", "svc").stdout)
    listing = cli("ps").stdout.splitlines()
    assert listing[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                  "PORTS", "NAMES"]
    assert cid[:12] in listing[1] and "Up" in listing[1] and "svc" in listing[1]
    assert "80/tcp" in listing[1]
    assert cli("ps", "-q").stdout.split() == [cid[:12]]
    assert cli("rm", "svc").returncode != 0  # running: needs -f
    assert cli("stop", "svc").returncode == 0
    assert cli("ps", "-q").stdout == ""
    exited = cli("ps", "-a").stdout.splitlines()[1]
    assert "Exited (0)" in exited
    assert cli("logs", "svc").stdout == "started\nstopping\n"
    assert cli("logs", "--tail", "1", cid[:6]).stdout == "stopping\n"
    assert cli("rm", "svc").returncode == 0
    assert not (root / "runtime" / "containers" / cid).exists()
    assert cli("ps", "-a", "-q").stdout == ""


def test_stop_kills_after_the_timeout_and_kill_sends_signals(cli: Cli, busybox_layout: Path
                                                             ) -> None:
    cid = cli(*run_args(busybox_layout, "-d", "--", "sleep", "60")).stdout.strip()
    begin = time.monotonic()
    assert cli("stop", "-t", "0.5", cid).returncode == 0  # PID 1 ignores SIGTERM: SIGKILL
    assert time.monotonic() - begin < 10
    assert "Exited (137)" in cli("ps", "-a").stdout
    cid = cli(*run_args(busybox_layout, "-d", "--", "sh", "-c",
                        "trap 'exit 5' USR1; while true; do sleep 0.1; done")).stdout.strip()
    wait_for(lambda: cid[:12] in cli("ps", "-q").stdout)
    time.sleep(0.3)  # let the shell install its trap
    assert cli("kill", "-s", "USR1", cid).returncode == 0
    wait_for(lambda: "Exited (5)" in cli("ps", "-a").stdout)


def test_exec_enters_the_containers_namespaces(cli: Cli, busybox_layout: Path) -> None:
    cid = cli(*run_args(busybox_layout, "-d", "--hostname", "inside", "-e", "A=1", "--",
                        "sleep", "60")).stdout.strip()
    wait_for(lambda: cid[:12] in cli("ps", "-q").stdout)
    result = cli("exec", "-e", "B=2", cid, "sh", "-c",
                 "hostname; echo $A $B; pwd; ps -o pid,comm | grep -c sleep; id -u; ip -o link "
                 "| cut -d: -f2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["inside", "1", "2", "/srv/app", "1", "0", "lo", "tap0"]
    as_app = cli("exec", "-u", "app", "-w", "/tmp", cid, "sh", "-c", "id -u; pwd")
    assert as_app.stdout.split() == ["1000", "/tmp"]
    assert cli("exec", cid, "sh", "-c", "exit 9").returncode == 9
    assert cli("exec", cid, "no-such-command").returncode == 127
    cli("rm", "-f", cid)
    gone = cli("exec", cid, "true")
    assert gone.returncode == 125 and "no such container" in gone.stderr


def test_a_container_over_its_memory_limit_is_killed(cli: Cli, busybox_layout: Path) -> None:
    result = cli(*run_args(busybox_layout, "--name", "hog", "--memory", "16m", "--", "dd",
                           "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"))
    assert result.returncode == 137
    assert "OOMKilled" in cli("ps", "-a").stdout
    fits = cli(*run_args(busybox_layout, "--rm", "--memory", "64m", "--", "dd", "if=/dev/zero",
                         "of=/dev/null", "bs=8M", "count=1"))
    assert fits.returncode == 0, fits.stderr


def test_pids_and_cpu_limits(cli: Cli, busybox_layout: Path) -> None:
    result = cli(*run_args(busybox_layout, "--rm", "--pids-limit", "4", "--", "sh", "-c",
                           "for i in 1 2 3 4 5 6; do sleep 1 & done; wait"))
    assert "can't fork" in result.stderr
    cpu = cli(*run_args(busybox_layout, "--rm", "--cpus", "0.5", "--", "cat", "/proc/self/cgroup"))
    assert cpu.returncode == 0
    line = next(li for li in cpu.stdout.splitlines()
                if li.split(":")[1] in ("cpu", "cpu,cpuacct", ""))
    assert "/pyreg/" in line


def test_a_container_whose_process_vanished_shows_as_exited(cli: Cli, busybox_layout: Path,
                                                             root: Path) -> None:
    cid = cli(*run_args(busybox_layout, "--name", "ghost", "--", "true")).stdout.strip() or None
    store = StateStore(root)
    state = store.find("ghost")
    store.save(state._replace(status="running", pid=999_999_999, pid_start=1))
    assert cid is None and "Exited" in cli("ps", "-a").stdout
    assert cli("ps", "-q").stdout == ""


def test_create_start_restart_rename_inspect_prune(cli: Cli, busybox_layout: Path,
                                                   tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\n\nOVERRIDDEN=file\n")
    script = "echo run $FROM_FILE $OVERRIDDEN; cat /marker 2>/dev/null; echo kept > /marker"
    created = cli(*run_args(busybox_layout, "--name", "c1", "--env-file", str(env_file),
                            "-e", "OVERRIDDEN=flag", "--", "sh", "-c", script, command="create"))
    assert created.returncode == 0, created.stderr
    cid = created.stdout.strip()
    assert "Created" in cli("ps", "-a").stdout
    first = cli("start", "-a", "c1")
    assert (first.returncode, first.stdout) == (0, "run 1 flag\n")
    assert cli("start", "c1").returncode == 0  # detached, its output in the log
    wait_for(lambda: "Exited (0)" in cli("ps", "-a").stdout)
    assert cli("logs", "c1").stdout == "run 1 flag\nkept\n"  # the writable layer was kept
    assert cli("rename", "c1", "c2").returncode == 0
    assert cli("rename", "c2", "c2").returncode == 1  # taken
    [doc] = json.loads(cli("inspect", "c2").stdout)
    assert (doc["id"], doc["name"], doc["status"], doc["exit_code"]) == (cid, "c2", "exited", 0)
    assert doc["config"]["args"] == ["sh", "-c", script]
    assert cli("restart", "c2").returncode == 0
    wait_for(lambda: cli("logs", "c2").stdout.count("kept") == 2)
    assert cli("prune").stdout.split() == [cid]
    assert cli("ps", "-a", "-q").stdout == ""


def test_entrypoint_replaces_the_images(cli: Cli, busybox_layout: Path) -> None:
    result = cli(*run_args(busybox_layout, "--rm", "--entrypoint", "echo", "--", "a", "b"))
    assert result.stdout == "a b\n"
    # The image's Cmd is dropped with --entrypoint, as docker does.
    assert cli(*run_args(busybox_layout, "--rm", "--entrypoint", "true")).stdout == ""


def test_named_volumes(cli: Cli, busybox_layout: Path, root: Path) -> None:
    # A new volume starts with the image's content at its mount point, and outlives containers.
    first = cli(*run_args(busybox_layout, "--rm", "-v", "appdata:/srv", "--", "sh", "-c",
                          "cat /srv/hello.txt; echo saved > /srv/state"))
    assert first.stdout == "hello from the image\n", first.stderr
    second = cli(*run_args(busybox_layout, "--rm", "-v", "appdata:/data:ro", "--", "sh", "-c",
                           "cat /data/state; echo x > /data/other || echo read-only"))
    assert second.stdout == "saved\nread-only\n"
    assert cli("volume", "ls").stdout.split() == ["DRIVER", "VOLUME", "NAME", "local", "appdata"]
    [doc] = json.loads(cli("volume", "inspect", "appdata").stdout)
    assert doc["Mountpoint"] == str(root / "runtime" / "volumes" / "appdata" / "_data")
    kept = cli(*run_args(busybox_layout, "--name", "user", "-v", "appdata:/srv", "--", "true"))
    assert kept.returncode == 0
    refused = cli("volume", "rm", "appdata")
    assert refused.returncode == 1 and "in use" in refused.stderr
    assert cli("rm", "user").returncode == 0
    assert cli("volume", "rm", "appdata").returncode == 0
    assert cli("volume", "ls").stdout.split() == ["DRIVER", "VOLUME", "NAME"]
    bad = cli(*run_args(busybox_layout, "--rm", "-v", "../x:/x", "--", "true"))
    assert bad.returncode == 125 and "volume" in bad.stderr


def test_logs_follow_until_the_container_exits(cli: Cli, busybox_layout: Path) -> None:
    cid = cli(*run_args(busybox_layout, "-d", "--", "sh", "-c",
                        "for i in 1 2 3; do echo line $i; sleep 0.2; done")).stdout.strip()
    followed = cli("logs", "-f", cid, timeout=30)
    assert followed.stdout == "line 1\nline 2\nline 3\n"


def test_containers_starting_together_unpack_each_layer_once(cli: Cli, busybox_layout: Path,
                                                              root: Path) -> None:
    argv = [sys.executable, "-m", "pyreg.runtime", "run", "--root", str(root),
            *run_args(busybox_layout, "--rm", "--network", "none", "--", "cat",
                      "/srv/hello.txt")[1:]]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=60)[0] for p in runs]
    assert outputs == ["hello from the image\n"] * 4
    assert [p.returncode for p in runs] == [0] * 4
    layers = root / "runtime" / "layers" / "sha256"
    if layers.exists():  # overlayfs: one directory per layer, no temporary left
        assert len(list(layers.iterdir())) == 2
        assert not list((root / "runtime" / "layers").glob(".tmp-*"))
