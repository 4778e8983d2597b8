"""The default isolated network: slirp4netns, and published ports.

    --network slirp (the default when slirp4netns is installed): a network namespace of its own
        with a tap device (10.0.2.100/24, gateway 10.0.2.2, DNS forwarder 10.0.2.3); slirp4netns,
        a user-space TCP/IP stack running beside the container, relays its traffic through the
        host's sockets, so outbound access works without bridges, iptables rules or root. The
        host's own loopback is not reachable from the container (--disable-host-loopback).
    --network none: loopback only.     --network host: the host's network namespace.

Ports published with `-p [IP:]HOST:CONTAINER[/tcp|/udp]` are forwarded by slirp4netns (its API
socket's add_hostfwd), which listens on the host; a port already in use fails the start.

Why not a veth pair on a bridge with NAT: it needs root, iptables rules on the host, and cleanup of
devices and rules on every exit path; slirp4netns needs none of these and dies with its exit pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from pyreg.runtime import ContainerError, SetupError

if TYPE_CHECKING:
    import subprocess

GUEST_ADDRESS = "10.0.2.100"
DNS_ADDRESS = "10.0.2.3"


def default_network() -> str:
    """slirp when slirp4netns is installed and can open a tap device, else none."""
    if not shutil.which("slirp4netns"):
        return "none"
    # Rootless, slirp4netns opens /dev/net/tun as the user: Debian makes it 0666, some hosts 0600.
    return "slirp" if os.geteuid() == 0 or os.access("/dev/net/tun", os.R_OK | os.W_OK) else "none"


class PortMapping(NamedTuple):
    host_ip: str
    host_port: int
    container_port: int
    proto: str = "tcp"

    @classmethod
    def parse(cls, value: str) -> PortMapping:
        spec, _, proto = value.partition("/")
        proto = proto or "tcp"
        parts = spec.rsplit(":", 2)
        try:
            if len(parts) == 3:
                host_ip, host_port, container_port = parts[0] or "0.0.0.0", int(parts[1]), int(
                    parts[2])
            elif len(parts) == 2:
                host_ip, host_port, container_port = "0.0.0.0", int(parts[0]), int(parts[1])
            else:
                raise ValueError
            import socket  # here: a container without -p does not load it

            socket.inet_aton(host_ip)
        except (ValueError, OSError):
            raise ContainerError(
                f"invalid port mapping {value!r}: expected [IP:]HOST:CONTAINER[/tcp|/udp]"
            ) from None
        if proto not in ("tcp", "udp") or not (0 < host_port < 65536 and 0 < container_port < 65536):
            raise ContainerError(f"invalid port mapping {value!r}")
        return cls(host_ip, host_port, container_port, proto)

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.proto}"


class Slirp:
    """slirp4netns attached to a container's network namespace (by its first process's pid)."""

    def __init__(self, pid: int, state_dir: Path, ports: tuple[PortMapping, ...],
                 userns: bool = False) -> None:
        self.pid = pid
        # Rootless: the network namespace belongs to the container's user namespace, which
        # slirp4netns must join first to configure it.
        self.userns = userns
        # Bound relative to state_dir: a socket path longer than 107 bytes cannot be bound.
        self.state_dir = state_dir
        self.api = state_dir / "slirp.sock"
        self.ports = ports
        self.process: subprocess.Popen[bytes] | None = None
        self._exit_w = -1

    def start(self) -> None:
        import subprocess  # here: a container without slirp does not pay for it

        binary = shutil.which("slirp4netns")
        if binary is None:
            raise SetupError("--network slirp needs slirp4netns (apt-get install slirp4netns)")
        ready_r, ready_w = os.pipe()
        exit_r, self._exit_w = os.pipe()
        try:
            # slirp4netns exits when the write end of its exit fd closes: with us, whatever way.
            self.process = subprocess.Popen(
                [binary, "--configure", "--mtu=65520", "--disable-host-loopback",
                 *([f"--userns-path=/proc/{self.pid}/ns/user"] if self.userns else []),
                 f"--ready-fd={ready_w}", f"--exit-fd={exit_r}", "--api-socket", self.api.name,
                 str(self.pid), "tap0"],
                pass_fds=(ready_w, exit_r), cwd=self.state_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            os.close(ready_w)
            os.close(exit_r)
            ready = os.read(ready_r, 1)
            if ready != b"1":
                raise SetupError(f"slirp4netns failed: {self._stderr()}")
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(ready_r)
        for port in self.ports:
            self._publish(port)

    def _stderr(self) -> str:
        if self.process is None or self.process.stderr is None:
            return ""
        import subprocess
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(2)
        return self.process.stderr.read().decode(errors="replace").strip()

    def _publish(self, port: PortMapping) -> None:
        request = {"execute": "add_hostfwd", "arguments": {
            "proto": port.proto, "host_addr": port.host_ip, "host_port": port.host_port,
            "guest_addr": GUEST_ADDRESS, "guest_port": port.container_port}}
        dirfd = os.open(self.state_dir, os.O_PATH | os.O_CLOEXEC)
        try:
            self._request(dirfd, request, port)
        finally:
            os.close(dirfd)

    def _request(self, dirfd: int, request: Mapping[str, object], port: PortMapping) -> None:
        import socket

        answer = b""
        for attempt in range(50):
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    # Through the directory's descriptor: the full path may be too long.
                    s.connect(f"/proc/self/fd/{dirfd}/{self.api.name}")
                    s.sendall(json.dumps(request).encode())
                    s.shutdown(socket.SHUT_WR)
                    while chunk := s.recv(4096):
                        answer += chunk
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if attempt == 49:
                    raise SetupError("slirp4netns's API socket did not appear") from None
                time.sleep(0.02)
        reply = json.loads(answer or b"{}")
        if "error" in reply:
            desc = reply["error"].get("desc", reply["error"])
            raise ContainerError(f"cannot publish {port}: port {port.host_port} already in use "
                                 f"or not allowed ({desc})")

    def stop(self) -> None:
        if self._exit_w >= 0:
            os.close(self._exit_w)
            self._exit_w = -1
        if self.process is not None:
            import subprocess

            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None
        with contextlib.suppress(FileNotFoundError):
            self.api.unlink()
