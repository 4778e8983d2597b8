"""supervisor.spawn without an intermediate process (root): the PID namespace the supervisor
makes for its child, and what is left when entering the namespaces fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from pyreg.runtime import SetupError, syscalls
from pyreg.runtime.supervisor import spawn, wait


@pytest.fixture(autouse=True)
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("a PID namespace of the supervisor's making needs root")


def children() -> set[int]:
    """This process's children, zombies included."""
    found = set()
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
            found.add(int(entry))
    return found


@pytest.fixture
def unchanged() -> Iterator[None]:
    """The supervisor keeps its own PID namespace for its later children, no descriptor and no
    child."""
    fds, kids = sorted(os.listdir("/proc/self/fd")), children()
    yield
    # spawn made the test process a child subreaper: other tests' orphans must not become
    # its zombies (a container killed with its runtime would stay in /proc).
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)
    assert os.readlink("/proc/self/ns/pid_for_children") == os.readlink("/proc/self/ns/pid")
    assert sorted(os.listdir("/proc/self/fd")) == fds
    assert children() == kids


def new_pid_namespace() -> None:
    syscalls.unshare(syscalls.CLONE_NEWPID)


def test_the_child_is_pid_1_of_a_new_namespace(unchanged: None) -> None:
    def init(go: int, report: int) -> NoReturn:
        os.read(go, 1)
        os._exit(10 + os.getpid())  # pragma: no cover - the child

    child = spawn(lambda: syscalls.unshare(syscalls.CLONE_NEWUTS), init,
                  pid_namespace=new_pid_namespace)
    assert os.readlink(f"/proc/{child.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{child.pid}/ns/uts") != os.readlink("/proc/self/ns/uts")
    assert child.go() is None  # no report: the child closed its end (as an exec would)
    assert wait(child.pid) == 11


def test_a_failure_to_enter_is_raised_and_the_child_reaped(unchanged: None) -> None:
    def enter() -> None:
        raise SetupError("cannot create the container's namespaces: no")

    def init(go: int, report: int) -> NoReturn:  # pragma: no cover - never reached
        os._exit(0)

    with pytest.raises(SetupError, match=r"namespaces: no$"):
        spawn(enter, init, pid_namespace=new_pid_namespace)


def test_a_pid_namespace_that_cannot_be_made_leaves_nothing(unchanged: None) -> None:
    def refused() -> None:
        raise SetupError("not permitted")

    def init(go: int, report: int) -> NoReturn:  # pragma: no cover - never reached
        os._exit(0)

    with pytest.raises(SetupError, match="not permitted"):
        spawn(lambda: None, init, pid_namespace=refused)


def test_the_report_of_a_child_that_entered(unchanged: None) -> None:
    """A failure after go reaches the supervisor as with an intermediate."""
    def init(go: int, report: int) -> NoReturn:  # pragma: no cover - the child
        os.read(go, 1)
        os.write(report, b'{"code": 127, "message": "not found"}\n')
        os._exit(127)

    child = spawn(lambda: None, init, pid_namespace=new_pid_namespace)
    assert child.go() == (127, "not found")
    assert wait(child.pid) == 127
