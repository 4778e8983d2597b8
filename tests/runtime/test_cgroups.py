"""cgroup limits written as each hierarchy wants them, on a fake cgroup tree (no root needed):
this machine's hybrid runs the v1 controllers for real (test_lifecycle.py); the unified-only
(v2) layout is exercised here."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyreg.runtime import SetupError, cgroups
from pyreg.runtime.cgroups import Cgroup, Limits


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", tmp_path)
    return tmp_path


def test_v2_limits_and_oom(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tree / "cgroup.controllers").write_text("cpu memory pids\n")
    monkeypatch.setattr(cgroups, "_own_paths", lambda: {"": "/runner"})
    group = Cgroup("c1", Limits(memory=64 << 20, pids=10, cpus=0.5))
    group.create()
    path = tree / "runner" / "pyreg" / "c1"
    assert group.dirs == {"": path}
    assert (path / "memory.max").read_text() == str(64 << 20)
    assert (path / "memory.swap.max").read_text() == "0"
    assert (path / "pids.max").read_text() == "10"
    assert (path / "cpu.max").read_text() == "50000 100000"
    # Every ancestor up to the runtime's own cgroup delegates the controllers.
    assert (tree / "runner" / "pyreg" / "cgroup.subtree_control").exists()
    group.add(4242)
    assert (path / "cgroup.procs").read_text() == "4242"
    assert not group.oom_killed()
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.oom_killed()


def test_v2_below_the_root_when_the_own_cgroup_cannot_delegate(tree: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tree / "cgroup.controllers").write_text("cpu memory pids\n")
    monkeypatch.setattr(cgroups, "_own_paths", lambda: {"": "/user.slice/session-1.scope"})
    own = tree / "user.slice" / "session-1.scope"
    # A cgroup with processes refuses to delegate (EBUSY): here, files that cannot be written.
    for refusing in (own, own / "pyreg"):
        (refusing / "cgroup.subtree_control").mkdir(parents=True)
    group = Cgroup("c3", Limits(memory=64 << 20, pids=5))
    group.create()
    assert group.dirs == {"": tree / "pyreg" / "c3"}  # as docker's and podman's cgroupfs
    assert (tree / "pyreg" / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (tree / "pyreg" / "c3" / "memory.max").read_text() == str(64 << 20)


def test_v2_refused_in_one_line_when_nothing_can_delegate(tree: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tree / "cgroup.controllers").write_text("cpu memory pids\n")
    monkeypatch.setattr(cgroups, "_own_paths", lambda: {"": "/"})  # a nested namespace's root
    (tree / "pyreg" / "cgroup.subtree_control").mkdir(parents=True)
    group = Cgroup("c4", Limits(cpus=1.0))
    with pytest.raises(SetupError, match=r"cannot set resource limits: .*controllers cpu are not "
                                         r"delegated to .*processes of its own"):
        group.create()
    assert not (tree / "pyreg" / "c4").exists()


def test_v1_limits_per_controller(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "_own_paths", lambda: {"memory": "/job", "pids": "/", "cpu": "/"})
    group = Cgroup("c2", Limits(memory=32 << 20, cpus=1.5))
    assert set(group.dirs) == {"memory", "cpu"}  # no pids limit: no pids cgroup
    group.create()
    memory, cpu = group.dirs["memory"], group.dirs["cpu"]
    assert memory == tree / "memory" / "job" / "pyreg" / "c2"
    assert (memory / "memory.limit_in_bytes").read_text() == str(32 << 20)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "150000"
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.oom_killed()
