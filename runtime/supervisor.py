"""Starting a process in a container's namespaces, and watching it: the parent's side.

Three processes, as a container engine's monitor does it:

    supervisor (this process: stays in the host's namespaces, forwards signals, reaps, cleans up)
     └── intermediate: enters namespaces (unshare for a new container, setns for exec), forks,
         reports the child's pid, exits
          └── child: in the PID namespace too (a new one: it is PID 1), reparented to the
              supervisor (a child subreaper) when the intermediate exits

The supervisor never enters the container's namespaces itself, so it can still fork helpers and
clean up on the host. The child waits for a "go" byte, which the supervisor sends once the child is
in its cgroup; the child reports a failure over a close-on-exec pipe (see process.py).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from pyreg.runtime import SetupError, syscalls
from pyreg.runtime.process import SETUP_FAILED, read_report, report

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT)

Enter = Callable[[], None]
Init = Callable[[int, int], NoReturn]


class Child:
    """A child stopped before its set-up, and the supervisor's ends of its pipes."""

    def __init__(self, pid: int, go_fd: int, report_fd: int) -> None:
        self.pid = pid
        self.go_fd = go_fd
        self.report_fd = report_fd

    def go(self, during_setup: Callable[[], None] | None = None) -> tuple[int, str] | None:
        """Let the child set up and exec; its failure (exit code, message), or None on exec.
        `during_setup` runs between the two (the child may be waiting for it, see console.py)."""
        os.write(self.go_fd, b"1")
        os.close(self.go_fd)
        self.go_fd = -1
        if during_setup is not None:
            try:
                during_setup()
            except OSError:
                pass  # the child failed before its part: its report says why
        return read_report(self.report_fd)

    def abandon(self) -> None:
        """Never send go: the child exits on EOF; reap it."""
        if self.go_fd >= 0:
            os.close(self.go_fd)
            self.go_fd = -1
            os.close(self.report_fd)
        wait(self.pid)


def spawn(enter: Enter, init: Init) -> Child:
    go_r, go_w = os.pipe()
    report_r, report_w = os.pipe()  # close-on-exec: EOF tells the supervisor the exec happened
    pid_r, pid_w = os.pipe()
    # Orphans of our children come to us: the child, once the intermediate exits.
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    sys.stdout.flush()
    sys.stderr.flush()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - runs in the intermediate process
        try:
            os.close(go_w)
            os.close(report_r)
            os.close(pid_r)
            enter()
            # After unshare(CLONE_NEWPID) or setns into a PID namespace, only children are in
            # it: this fork puts the child there (as PID 1 of a new one).
            child = os.fork()
            if child == 0:
                os.close(pid_w)
                init(go_r, report_w)
            os.write(pid_w, str(child).encode())
            os._exit(0)
        except SetupError as e:
            report(report_w, SETUP_FAILED, str(e))
            os._exit(SETUP_FAILED)
        except BaseException as e:
            report(report_w, SETUP_FAILED, f"cannot enter the container's namespaces: {e}")
            os._exit(SETUP_FAILED)
    os.close(go_r)
    os.close(report_w)
    os.close(pid_w)
    os.waitpid(middle, 0)
    data = b""
    while chunk := os.read(pid_r, 64):
        data += chunk
    os.close(pid_r)
    if not data:
        os.close(go_w)
        failure = read_report(report_r)
        raise SetupError(failure[1] if failure else "the container's process did not start")
    return Child(int(data), go_w, report_r)


def exit_code(status: int) -> int:
    """The process's exit code, or 128 + the signal that killed it (as a shell reports it)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def wait(pid: int) -> int:
    return exit_code(os.waitpid(pid, 0)[1])


class SignalForwarder:
    """Forward the signals the supervisor gets to the child (blocked until the child exists)."""

    def __init__(self) -> None:
        self.pid = 0
        self.previous = {sig: signal.getsignal(sig) for sig in FORWARDED}
        # With a terminal, a window size change is copied onto it rather than forwarded.
        self.on_winch: Callable[[], None] | None = None

    def __enter__(self) -> SignalForwarder:
        # Signals that arrive before the child exists wait here, then are forwarded.
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        return self

    def forward_to(self, pid: int) -> None:
        self.pid = pid
        for sig in FORWARDED:
            signal.signal(sig, self._forward)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)

    def _forward(self, signum: int, frame: object) -> None:
        if signum == signal.SIGWINCH and self.on_winch is not None:
            self.on_winch()
            return
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
