"""The container's first process: from a forked child to the image's command, in order.

    wait for the parent → die with it (PDEATHSIG) → new session → root filesystem
    (mounts.enter_rootfs) → hostname → loopback up → terminal (-t) or /dev/null stdin (no -i) →
    user lookup → working directory → capability bounding set → drop to the user → descriptors
    inherited from the caller closed on exec → exec

It runs in the new namespaces (see supervisor.py) as PID 1.
Any failure is reported to the parent over a close-on-exec pipe as one JSON line with the exit code
docker would give: 125 for the runtime's own failures, 127 for a command that is not found, 126 for
one that cannot be executed. A successful exec closes the pipe with nothing written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pyreg.runtime import ContainerError, SetupError, syscalls
from pyreg.runtime.mounts import enter_rootfs
from pyreg.runtime.spec import DEFAULT_PATH, ContainerSpec
from pyreg.runtime.userns import in_user_namespace, setgroups_allowed
from pyreg.runtime.users import resolve_user

if TYPE_CHECKING:
    import socket

Env = dict[str, str]
SETUP_FAILED = 125
NOT_EXECUTABLE = 126
NOT_FOUND = 127


class ExecFailure(ContainerError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def report(fd: int, code: int, message: str) -> None:
    try:
        os.write(fd, json.dumps({"code": code, "message": message}).encode() + b"\n")
    except OSError:
        pass


def read_report(fd: int) -> tuple[int, str] | None:
    """What the child reported before exiting; None when it exec'd its command."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    if not chunks:
        return None
    try:
        doc = json.loads(b"".join(chunks))
        return int(doc["code"]), str(doc["message"])
    except (ValueError, KeyError, TypeError):
        return SETUP_FAILED, b"".join(chunks).decode(errors="replace")


def run_child(go_fd: int, report_fd: int, prepare: Callable[[], tuple[Sequence[str], Env]]
              ) -> NoReturn:
    """Wait for the parent, run `prepare` (returns the command and its environment), exec."""
    code, message = SETUP_FAILED, "unknown error"
    try:
        # The parent says go once the cgroup and network are ready; EOF means it is gone.
        if os.read(go_fd, 1) != b"1":
            os._exit(SETUP_FAILED)
        os.close(go_fd)
        # Killed with the supervisor: a container never outlives what watches it. (Set only
        # now: an intermediate parent's exit, see supervisor.py, would have sent it.)
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        # A session of its own: the terminal's Ctrl-C reaches the parent, which forwards it.
        os.setsid()
        args, env = prepare()
        _exec(args, env, env.get("PATH", DEFAULT_PATH))
    except ExecFailure as e:
        code, message = e.code, str(e)
    except ContainerError as e:
        message = str(e)
    except OSError as e:
        message = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    except BaseException as e:
        message = f"{type(e).__name__}: {e}"
    report(report_fd, code, message)
    os._exit(code)


def container_init(spec: ContainerSpec, go_fd: int, report_fd: int,
                   console: socket.socket | None = None) -> NoReturn:
    """The container's first process: set the container up and exec its command."""

    def prepare() -> tuple[Sequence[str], Env]:
        enter_rootfs(spec)
        # UTS namespace: the name is the container's own.
        syscalls.sethostname(spec.hostname)
        if spec.network != "host":
            # A new network namespace starts with lo down: bring it up, it is all there is.
            syscalls.set_link_up("lo")
        env = list(spec.env)
        if console is not None:
            from pyreg.runtime.console import open_in_container  # loaded by the parent with -t

            open_in_container(console)
            if not any(item.startswith("TERM=") for item in env):
                env.append("TERM=xterm")
        elif not spec.interactive:
            # Without -i the container reads nothing, as with docker: stdin is /dev/null.
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        return spec.args, become(spec.user, spec.cwd, env)

    run_child(go_fd, report_fd, prepare)


# docker's default capabilities, less CAP_MKNOD: docker keeps it and relies on the devices cgroup
# to make host devices unusable; without that cgroup, a device node the container makes (say, of
# the host's disk) would work. Everything else (CAP_SYS_ADMIN, CAP_NET_ADMIN, ...) is dropped.
KEPT_CAPABILITIES = frozenset({
    0,   # CAP_CHOWN
    1,   # CAP_DAC_OVERRIDE
    3,   # CAP_FOWNER
    4,   # CAP_FSETID
    5,   # CAP_KILL
    6,   # CAP_SETGID
    7,   # CAP_SETUID
    8,   # CAP_SETPCAP
    10,  # CAP_NET_BIND_SERVICE
    13,  # CAP_NET_RAW
    18,  # CAP_SYS_CHROOT
    29,  # CAP_AUDIT_WRITE
    31,  # CAP_SETFCAP
})


def drop_capabilities() -> None:
    """Shrink the bounding set: what the command gets at exec (root gets exactly this set, other
    users nothing). The set-up before it needed CAP_SYS_ADMIN (mounts) and CAP_NET_ADMIN (lo)."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        if cap not in KEPT_CAPABILITIES:
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, cap)


def become(user: str, cwd: str, env_items: Sequence[str]) -> Env:
    """Look the user up in the container's /etc, enter the working directory, drop to the user."""
    creds = resolve_user(user)
    with contextlib.suppress(OSError):
        if os.isatty(0):
            # The container's terminal belongs to its user, as a login terminal does.
            os.fchown(0, creds.uid, creds.gid)
    env = dict(item.partition("=")[::2] for item in env_items)
    env.setdefault("HOME", creds.home)
    # As root, before dropping privileges (mounts.py created it when the image lacks it).
    os.chdir(cwd or "/")
    # While this process still has CAP_SETPCAP: after setuid it has no capabilities left.
    drop_capabilities()
    try:
        if setgroups_allowed():
            os.setgroups(list(creds.groups))
        os.setgid(creds.gid)
        os.setuid(creds.uid)
    except OSError as e:
        if e.errno != errno.EINVAL or not in_user_namespace():
            raise
        # Rootless with a single-uid mapping (or a uid beyond the subordinate range).
        raise SetupError(f"user {user or '0'} ({creds.uid}:{creds.gid}) is not mapped in this "
                         "rootless container: give the user a range in /etc/subuid and "
                         "/etc/subgid") from None
    return env


def _close_inherited() -> None:
    """Mark every descriptor above stderr close-on-exec, as runc does: those the runtime inherited
    from whoever started it (a shell's `3<file`, a service manager's sockets) must not reach the
    command, where an open file or directory of the host would be a way out of the container.
    The report pipe is close-on-exec already: it stays open until the exec."""
    try:
        fds: Iterable[int] = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = range(3, min(os.sysconf("SC_OPEN_MAX"), 1 << 16))
    for fd in fds:
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
                os.set_inheritable(fd, False)


def _exec(args: Sequence[str], env: dict[str, str], search_path: str) -> NoReturn:
    if not args:
        raise SetupError("no command specified")
    program = args[0]
    candidates = [program] if "/" in program else [
        os.path.join(d or ".", program) for d in search_path.split(":")]
    # Python ignores SIGPIPE and SIGXFSZ; exec keeps ignored signals ignored: restore defaults.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    _close_inherited()
    failure: ExecFailure | None = None
    for path in candidates:
        try:
            os.execve(path, list(args), env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            # Found but not runnable: keep looking along PATH, as execvp does, but remember it.
            failure = failure or ExecFailure(
                NOT_EXECUTABLE, f"exec {program!r}: {os.strerror(e.errno or errno.EACCES)}")
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    if failure is not None:
        raise failure
    where = "no such file or directory" if "/" in program else "executable file not found in $PATH"
    raise ExecFailure(NOT_FOUND, f"exec {program!r}: {where}")
