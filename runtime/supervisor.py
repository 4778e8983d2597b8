"""Starting a process in a container's namespaces, and watching it: the parent's side.

Three processes, as a container engine's monitor does it:

    supervisor (this process: stays in the host's namespaces, forwards signals, reaps, cleans up)
     └── intermediate: enters namespaces (unshare for a new container, setns for exec), forks,
         reports the child's pid, exits
          └── child: in the PID namespace too (a new one: it is PID 1), reparented to the
              supervisor (a child subreaper) when the intermediate exits

A PID namespace applies to the children of the process that enters it, hence the intermediate.
A new container run as root does without it (two processes, a fork less and no process to wait
for): the supervisor gives its next child a new PID namespace (unshare(CLONE_NEWPID)), forks, and
takes its own back at once (setns); the child enters the other namespaces itself. Rootless, the PID
namespace must belong to the container's new user namespace, which only the intermediate may enter.

The supervisor never enters the container's namespaces itself, so it can still fork helpers and
clean up on the host. The child waits for a "go" byte, which the supervisor sends once the child is
in its cgroup; the child reports a failure over a close-on-exec pipe (see process.py).
"""

from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn, TextIO

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


def spawn(enter: Enter, init: Init, pid_namespace: Enter | None = None) -> Child:
    """The child, in the container's namespaces, waiting for go. `enter` moves the calling
    process into them: in the intermediate; with `pid_namespace` (which gives this process's next
    child a new PID namespace), in the child itself, forked without an intermediate."""
    go_r, go_w = os.pipe()
    report_r, report_w = os.pipe()  # close-on-exec: EOF tells the supervisor the exec happened
    # The intermediate writes the child's pid; a child that entered by itself writes "-".
    # Nothing (EOF alone) means `enter` failed.
    pid_r, pid_w = os.pipe()
    # Orphans of our children come to us: the child, once the intermediate exits.
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # The intermediate, or with `pid_namespace` the child itself.
        forked = os.fork() if pid_namespace is None else _fork_in_new_pid_namespace(pid_namespace)
    except BaseException:
        for fd in (go_r, go_w, report_r, report_w, pid_r, pid_w):
            os.close(fd)
        raise
    if forked == 0:  # pragma: no cover - runs in the intermediate process, or the child
        try:
            os.close(go_w)
            os.close(report_r)
            os.close(pid_r)
            enter()
            if pid_namespace is not None:
                os.write(pid_w, b"-")
                os.close(pid_w)
                init(go_r, report_w)
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
    if pid_namespace is None:
        os.waitpid(forked, 0)
    data = b""
    while chunk := os.read(pid_r, 64):
        data += chunk
    os.close(pid_r)
    if not data:
        os.close(go_w)
        failure = read_report(report_r)
        if pid_namespace is not None:
            os.waitpid(forked, 0)
        raise SetupError(failure[1] if failure else "the container's process did not start")
    return Child(forked if pid_namespace is not None else int(data), go_w, report_r)


def _fork_in_new_pid_namespace(pid_namespace: Enter) -> int:
    """os.fork(), the child made PID 1 of a new PID namespace; this process keeps its own."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        pid_namespace()  # from now on, for this process's children only
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                # This process's later children (slirp4netns, ...) are the host's again.
                _setns_or_kill(own, pid)
    finally:
        os.close(own)
    return pid


def _setns_or_kill(own: int, child: int) -> None:
    try:
        syscalls.setns(own, syscalls.CLONE_NEWPID)
    except OSError as e:
        if child > 0:  # not given its go, it would wait for the supervisor's end
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        raise SetupError(f"cannot return to the runtime's own PID namespace: {e}") from None


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


Body = Callable[[TextIO, Callable[[], None]], int]


def detached(stdio: Callable[[], None], body: Body, what: str) -> tuple[int, str]:
    """Run `body` in a monitor process of its own, and return once it runs: (0, "") when the body
    calls its `ready` argument, else (code, message) of its failure.

    The monitor starts a new session (it outlives the command that started it, and its
    terminal) and sets up its stdio with `stdio`; the body gets a text stream for its error
    messages and `ready`, and returns the exit code the monitor waited for."""
    ready_r, ready_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:  # pragma: no cover - the monitor
        told = False

        def ready() -> None:
            nonlocal told
            report(ready_w, 0, "")
            os.close(ready_w)
            told = True

        try:
            os.close(ready_r)
            os.setsid()
            stdio()
            errors = io.StringIO()
            code = body(errors, ready)
            if not told:
                report(ready_w, code or SETUP_FAILED, errors.getvalue().strip().removeprefix("pyreg: "))
        except BaseException as e:
            if not told:
                report(ready_w, SETUP_FAILED, str(e))
        os._exit(0)
    os.close(ready_w)
    answer = read_report(ready_r)
    return answer if answer is not None else (SETUP_FAILED, f"the {what}'s monitor exited")
