"""-i and -t (as root): stdin attached or not, and a real terminal from the container's devpts."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator

import pytest

from tests.runtime.conftest import Runner


def test_stdin_only_with_i(run: Runner) -> None:
    argv = run.argv("cat", options=["--rm", "-i"])
    piped = subprocess.run(argv, input="through stdin\n", capture_output=True, text=True,
                           timeout=30, check=False)
    assert piped.stdout == "through stdin\n"
    argv = run.argv("cat", options=["--rm"])
    closed = subprocess.run(argv, input="ignored\n", capture_output=True, text=True, timeout=30,
                            check=False)
    assert (closed.returncode, closed.stdout) == (0, "")


class Terminal:
    def __init__(self, argv: list[str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child
            os.execv(argv[0], argv)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.buffer = b""

    def expect(self, text: bytes, timeout: float = 20) -> bytes:
        """Output up to and including `text`; what follows stays for the next expect."""
        deadline = time.monotonic() + timeout
        while text not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not in {self.buffer!r}")
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise EOFError(f"{text!r} not in {self.buffer!r}: the terminal closed")
                self.buffer += chunk
        end = self.buffer.index(text) + len(text)
        out, self.buffer = self.buffer[:end], self.buffer[end:]
        return out

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("the runtime did not exit")
            if not select.select([self.fd], [], [], 0.1)[0]:
                continue
            try:
                if not os.read(self.fd, 4096):
                    break
            except OSError:
                break
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for term in opened:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            if os.waitpid(term.pid, os.WNOHANG)[0] == 0:
                os.kill(term.pid, signal.SIGKILL)  # the container dies with it (PDEATHSIG)
                os.waitpid(term.pid, 0)
        with contextlib.suppress(OSError):
            os.close(term.fd)  # closed once only: wait() leaves it open


def test_a_real_terminal_with_ctrl_c_ctrl_d_and_window_size(run: Runner, terminals: list[Terminal]
                                                             ) -> None:
    term = Terminal(run.argv("sh", options=["--rm", "-it"]))
    terminals.append(term)
    term.expect(b"# ")
    term.send(b"tty; echo $TERM; stty size\n")
    out = term.expect(b"30 100")
    assert b"/dev/pts/0" in out and b"xterm" in out
    term.send(b"sleep 30; echo done$((1+1))\n")
    time.sleep(0.5)
    term.send(b"\x03")  # Ctrl-C reaches the container's foreground job, not the runtime
    term.send(b"echo back$((2+2))\n")
    out = term.expect(b"back4")
    assert b"done2" not in out
    fcntl.ioctl(term.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    term.send(b"sleep 0.3; stty size\n")
    term.expect(b"40 120")
    term.expect(b"# ")  # the shell reads its next line: Ctrl-D now means end of input
    term.send(b"\x04")  # Ctrl-D: end of input, the shell exits
    assert term.wait() == 0


def test_terminal_exit_code_and_user(run: Runner, terminals: list[Terminal]) -> None:
    term = Terminal(run.argv("sh", "-c", "stat -c '%U %F' $(tty); exit 3",
                             options=["--rm", "-t", "-u", "app"]))
    terminals.append(term)
    term.expect(b"app character special file")
    assert term.wait() == 3


def test_exec_with_a_terminal_and_stdin(run: Runner, terminals: list[Terminal]) -> None:
    import sys

    base = [sys.executable, "-m", "pyreg.runtime"]
    root = ["--root", str(run.root)]
    cid = subprocess.run(run.argv("sleep", "60", options=["-d"]), capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        piped = subprocess.run([*base, "exec", *root, "-i", cid, "cat"], input="in\n",
                               capture_output=True, text=True, timeout=30, check=False)
        assert piped.stdout == "in\n"
        term = Terminal([*base, "exec", *root, "-it", cid, "sh"])
        terminals.append(term)
        term.expect(b"# ")
        term.send(b"tty; exit 4\n")
        assert b"/dev/pts/" in term.expect(b"/dev/pts/")
        assert term.wait() == 4
    finally:
        subprocess.run([*base, "rm", *root, "-f", cid], capture_output=True, check=True)
