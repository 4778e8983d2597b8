"""`exec`: run another process in a running container's namespaces and cgroup.

The intermediate process joins the namespaces through /proc/<pid>/ns/*, opened beforehand (joining
the mount namespace changes what /proc is). The mount namespace is joined last: setns into it also
moves the root and working directory to the container's root.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from pyreg.runtime import ContainerError, console, syscalls
from pyreg.runtime.process import Env, become, run_child
from pyreg.runtime.spec import environment
from pyreg.runtime.state import StateStore
from pyreg.runtime.supervisor import SignalForwarder, detached, exit_code, spawn, wait

# The order setns is called in: user-visible identity first, the mount namespace last.
NAMESPACES = ("ipc", "uts", "net", "pid", "mnt")


def exec_in(store: StateStore, ref: str, args: Sequence[str], env: Sequence[str] = (),
            workdir: str | None = None, user: str | None = None, stderr: TextIO = sys.stderr,
            tty: bool = False, interactive: bool = False,
            started: Callable[[], None] | None = None) -> int:
    state = store.find(ref)
    if not state.running:
        raise ContainerError(f"container {ref} is not running")
    if not args:
        raise ContainerError("exec needs a command")
    fds = []
    kinds: tuple[str, ...] = NAMESPACES
    try:
        if os.stat(f"/proc/{state.pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
            # Rootless: the user namespace first, which gives the capabilities to join the
            # others (they belong to it).
            kinds = ("user", *NAMESPACES)
        for kind in kinds:
            fds.append(os.open(f"/proc/{state.pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
    except OSError as e:
        for fd in fds:
            os.close(fd)
        raise ContainerError(f"container {ref} is not running: {e}") from None
    hostname = next((e.partition("=")[2] for e in state.env if e.startswith("HOSTNAME=")), "")
    merged = environment(state.env, env, hostname)

    def enter() -> None:
        for fd in fds:
            # Join each namespace of the container's PID 1; the PID namespace applies to the
            # fork that follows.
            syscalls.setns(fd)

    ours, theirs = socket.socketpair() if tty else (None, None)

    def prepare() -> tuple[Sequence[str], Env]:
        env = list(merged)
        if theirs is not None:
            console.open_in_container(theirs)
            env.append("TERM=xterm")
        elif not interactive:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        return args, become(user if user is not None else state.user, workdir or state.cwd, env)

    try:
        with SignalForwarder() as signals:
            child = spawn(enter, lambda go, rep: run_child(go, rep, prepare))
            if theirs is not None:
                theirs.close()
            signals.forward_to(child.pid)
            try:
                for cgroup in state.cgroups:
                    # Into the container's cgroup before go: the command runs within its limits.
                    (Path(cgroup) / "cgroup.procs").write_text(str(child.pid))
            except OSError as e:
                child.abandon()
                raise ContainerError(f"cannot join the container's cgroup: {e}") from e
            master: list[int] = []

            def attach_terminal() -> None:
                assert ours is not None
                master.append(console.receive_master(ours))
                console.copy_window_size(console.terminal_size_source(), master[0])
                ours.send(b"k")

            failure = child.go(attach_terminal if ours is not None else None)
            if failure is None and started is not None:
                started()
            if master and failure is None:
                signals.on_winch = lambda: console.copy_window_size(
                    console.terminal_size_source(), master[0])
                return exit_code(console.session(master[0], child.pid, interactive))
            for fd in master:
                os.close(fd)
            code = wait(child.pid)
            if failure is not None:
                print(f"pyreg: {failure[1]}", file=stderr)
                return failure[0]
            return code
    finally:
        for fd in fds:
            os.close(fd)
        if ours is not None:
            ours.close()


def exec_detached(store: StateStore, ref: str, args: Sequence[str], env: Sequence[str] = (),
                  workdir: str | None = None, user: str | None = None) -> tuple[int, str]:
    """`exec -d`: the command under a monitor of its own (a new session, stdio on /dev/null,
    which waits for it as `exec` does); (0, "") once the command runs, or its failure."""
    state = store.find(ref)
    if not state.running:
        raise ContainerError(f"container {ref} is not running")
    def stdio() -> None:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)

    return detached(stdio, lambda errors, ready: exec_in(store, ref, args, env, workdir, user,
                                                         errors, started=ready), "exec")
