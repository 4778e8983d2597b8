"""What a container runs: its command line, environment, user, directories and namespaces.

Built by the parent from the image config and the command line, then handed to the container's
first process (in memory: it is forked, not executed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from pyreg.runtime import ContainerError
from pyreg.runtime.cgroups import NO_LIMITS, Limits
from pyreg.runtime.image import ImageConfig
from pyreg.runtime.network import DNS_ADDRESS, GUEST_ADDRESS, PortMapping
from pyreg.runtime.rootfs import RootfsPlan

if TYPE_CHECKING:
    from pyreg.runtime.volumes import VolumeStore

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETWORKS = ("slirp", "none", "host")


class BindMount(NamedTuple):
    source: Path
    target: str
    readonly: bool = False
    populate: bool = False  # a new named volume: copy the image's content at target into it

    @classmethod
    def parse(cls, value: str, volumes: VolumeStore | None = None) -> BindMount:
        """HOST:CONTAINER[:ro|rw], HOST an absolute path that exists or a volume name."""
        parts = value.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise ContainerError(f"invalid volume {value!r}: expected HOST:CONTAINER[:ro]")
        readonly = len(parts) == 3 and parts[2] == "ro"
        target = parts[1]
        if not target.startswith("/"):
            raise ContainerError(f"invalid volume {value!r}: the container path must be absolute")
        from pyreg.runtime.volumes import is_volume_name  # here: only -v loads volumes.py

        if volumes is not None and is_volume_name(parts[0]):
            volume, new = volumes.create(parts[0])
            return cls(volume.path / "_data", target, readonly, populate=new)
        source = Path(parts[0])
        if not source.is_absolute():
            raise ContainerError(f"invalid volume {value!r}: the host path must be absolute "
                                 "(or a volume name)")
        if not source.exists():
            raise ContainerError(f"invalid volume {value!r}: {source} does not exist")
        return cls(source, target, readonly)


class ContainerSpec(NamedTuple):
    id: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    rootfs: RootfsPlan
    container_dir: Path
    hostname: str
    cwd: str = "/"
    user: str = ""
    network: str = "none"
    volumes: tuple[BindMount, ...] = ()
    readonly: bool = False
    etc_files: Mapping[str, Path] = MappingProxyType({})
    limits: Limits = NO_LIMITS
    ports: tuple[PortMapping, ...] = ()
    tty: bool = False
    interactive: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "args": list(self.args), "env": list(self.env),
            "rootfs": {"path": str(self.rootfs.path), "overlay": self.rootfs.overlay_options},
            "container_dir": str(self.container_dir), "hostname": self.hostname, "cwd": self.cwd,
            "user": self.user, "network": self.network,
            "volumes": [{"source": str(v.source), "target": v.target, "readonly": v.readonly,
                         "populate": v.populate} for v in self.volumes],
            "readonly": self.readonly,
            "etc_files": {k: str(v) for k, v in self.etc_files.items()},
            "limits": {"memory": self.limits.memory, "pids": self.limits.pids,
                       "cpus": self.limits.cpus},
            "ports": [{"host_ip": p.host_ip, "host_port": p.host_port,
                       "container_port": p.container_port, "proto": p.proto} for p in self.ports],
            "tty": self.tty, "interactive": self.interactive,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ContainerSpec:
        try:
            return cls(
                id=doc["id"], args=tuple(doc["args"]), env=tuple(doc["env"]),
                rootfs=RootfsPlan(Path(doc["rootfs"]["path"]), doc["rootfs"]["overlay"]),
                container_dir=Path(doc["container_dir"]), hostname=doc["hostname"],
                cwd=doc["cwd"], user=doc["user"], network=doc["network"],
                # A restarted container's volumes were filled on its first start.
                volumes=tuple(BindMount(Path(v["source"]), v["target"], v["readonly"])
                              for v in doc["volumes"]),
                readonly=doc["readonly"],
                etc_files={k: Path(v) for k, v in doc["etc_files"].items()},
                limits=Limits(**doc["limits"]),
                ports=tuple(PortMapping(**p) for p in doc["ports"]),
                tty=doc["tty"], interactive=doc["interactive"],
            )
        except (KeyError, TypeError) as e:
            raise ContainerError(f"container configuration is damaged: {e}") from None


def new_id() -> str:
    return os.urandom(32).hex()


def command_line(config: ImageConfig, cmd: Sequence[str], entrypoint: str | None) -> tuple[str, ...]:
    """docker's rule: --entrypoint replaces Entrypoint and drops the image's Cmd."""
    if entrypoint is None:
        return (*config.entrypoint, *(cmd or config.cmd))
    return (*([entrypoint] if entrypoint else []), *cmd)


def environment(image_env: Sequence[str], extra: Sequence[str], hostname: str,
                host_env: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The image's Env, overridden by -e (a bare `-e NAME` takes the host's value, if any)."""
    merged: dict[str, str] = {"HOSTNAME": hostname}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    for item in extra:
        key, sep, value = item.partition("=")
        if not key:
            raise ContainerError(f"invalid environment variable {item!r}")
        if sep:
            merged[key] = value
        elif key in host_env:
            merged[key] = host_env[key]
    merged.setdefault("PATH", DEFAULT_PATH)
    return tuple(f"{k}={v}" for k, v in merged.items())


def write_etc_files(container_dir: Path, hostname: str, network: str) -> dict[str, Path]:
    """The /etc/hosts, /etc/hostname and /etc/resolv.conf the container gets (bind-mounted)."""
    own = GUEST_ADDRESS if network == "slirp" else "127.0.1.1"
    files = {
        "hostname": f"{hostname}\n",
        "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 f"{own}\t{hostname}\n",
        "resolv.conf": f"nameserver {DNS_ADDRESS}\n" if network == "slirp" else _resolv_conf(
            network),
    }
    if network == "host":
        try:
            files["hosts"] = Path("/etc/hosts").read_text()
        except OSError:
            pass
    out = {}
    for name, text in files.items():
        path = container_dir / name
        path.write_text(text)
        out[name] = path
    return out


def _resolv_conf(network: str) -> str:
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    if network != "host":
        # A loopback resolver of the host is not reachable from another network namespace.
        lines = [line for line in lines if not (
            line.split()[:1] == ["nameserver"] and line.split()[1:2]
            and line.split()[1].startswith(("127.", "::1")))]
    return "\n".join(lines) + "\n"
