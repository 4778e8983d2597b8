"""`-t`: a terminal for the container, from the container's own devpts instance (as runc does).

The container's first process opens /dev/ptmx after pivot_root (so the pty belongs to the
container's /dev/pts, and `tty` inside names it), makes the slave its controlling terminal and its
stdio, and passes the master to the supervisor over a socketpair (SCM_RIGHTS). The supervisor puts
its own terminal in raw mode and relays bytes both ways: Ctrl-C, Ctrl-D and job control are then
handled by the container's line discipline, as in a terminal; window size changes (SIGWINCH) are
copied onto the master, and the kernel signals the container's foreground process group.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import socket
import struct
import termios
import tty
from collections.abc import Callable, Iterator

# ioctls of the pty driver (asm-generic/ioctls.h).
_TIOCSPTLCK = 0x40045431
_TIOCGPTN = 0x80045430


def open_in_container(sock: socket.socket) -> None:
    """In the container (after pivot_root): a new pty becomes stdin/stdout/stderr and the
    controlling terminal; the master goes to the supervisor, which acknowledges with one byte
    once it has set the window size."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    # Unlock the slave and learn its number: what grantpt/unlockpt/ptsname do in libc.
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, struct.pack("I", 0)))[0]
    slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
    # The process is a session leader (setsid): the slave becomes its controlling terminal.
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    socket.send_fds(sock, [b"m"], [master])
    os.close(master)
    sock.recv(1)
    sock.close()


def receive_master(sock: socket.socket) -> int:
    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    if not fds:
        raise OSError("the container sent no terminal")
    return fds[0]


def copy_window_size(source: int, master: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The supervisor's terminal in raw mode (keys go to the container as typed), restored."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def relay(master: int, stdin: int | None, stdout: int, done: Callable[[], bool]) -> None:
    """Copy stdin → master and master → stdout until the container has exited and its output is
    drained. `done` is polled (it reaps the container)."""
    selector = selectors.DefaultSelector()
    selector.register(master, selectors.EVENT_READ)
    if stdin is not None:
        selector.register(stdin, selectors.EVENT_READ)
    finished = False
    while True:
        events = selector.select(0.05)
        for key, _ in events:
            try:
                data = os.read(key.fd, 65536)
            except OSError:  # EIO: the slave side closed
                data = b""
            if key.fd == master:
                if not data:
                    selector.close()
                    return
                _write_all(stdout, data)
            elif data:
                _write_all(master, data)
            else:
                selector.unregister(key.fd)  # our stdin ended; the container's input stays open
        if finished and not events:
            selector.close()
            return
        finished = finished or done()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def session(master: int, pid: int, interactive: bool) -> int:
    """Attach the supervisor's stdio to the container's terminal until the container exits;
    returns its wait status."""
    status: list[int] = []

    def done() -> bool:
        if not status:
            reaped, value = os.waitpid(pid, os.WNOHANG)
            if reaped:
                status.append(value)
        return bool(status)

    stdin = 0 if interactive else None
    with raw_terminal(0) if interactive else contextlib.nullcontext():
        relay(master, stdin, 1, done)
    os.close(master)
    return status[0] if status else os.waitpid(pid, 0)[1]


def terminal_size_source() -> int:
    return 0 if os.isatty(0) else 1
