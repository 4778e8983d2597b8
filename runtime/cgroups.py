"""Resource limits through cgroups: v1 controllers (memory, pids, cpu), or v2 when the unified
hierarchy is the only one.

A container's cgroup is made below the cgroup the runtime itself is in, so that it stays inside
whatever limits the runtime was started under:

    v1: /sys/fs/cgroup/<controller>/<own path>/pyreg/<id>/
    v2: /sys/fs/cgroup/<own path>/pyreg/<id>/

v2 has a rule v1 has not: a cgroup with processes of its own cannot hand its controllers down
(only the root can). When the runtime's own cgroup holds processes (a login session's scope, a
service), v2 containers go below the root instead, as docker's and podman's cgroupfs managers put
them: /sys/fs/cgroup/pyreg/<id>/. When neither can (a nested cgroup namespace whose root has
processes), a limit is refused with one line saying why.

It is created only when a limit is asked for, and removed when the container has exited.
"""

from __future__ import annotations

import contextlib
import errno
import time
from pathlib import Path
from typing import NamedTuple

from pyreg.runtime import ContainerError, SetupError

CGROUP_ROOT = Path("/sys/fs/cgroup")
_CPU_PERIOD = 100_000  # microseconds, the kernel's default CFS period
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class Limits(NamedTuple):
    memory: int | None = None  # bytes
    pids: int | None = None
    cpus: float | None = None

    def __bool__(self) -> bool:
        # Whether any limit is set (a tuple would always be true).
        return any(v is not None for v in self)


NO_LIMITS = Limits()


def parse_memory(value: str) -> int:
    """docker's syntax: a number of bytes with an optional b, k, m or g suffix."""
    text = value.strip().lower()
    unit = text[-1] if text and text[-1] in "bkmg" else ""
    try:
        number = float(text[: len(text) - len(unit)])
    except ValueError:
        raise ContainerError(f"invalid memory limit {value!r}") from None
    result = int(number * _UNITS[unit])
    if result < 6 * (1 << 20):
        raise ContainerError("the minimum memory limit is 6m")
    return result


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under "" its v2 path."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def unified_only() -> bool:
    return (CGROUP_ROOT / "cgroup.controllers").exists()


class Cgroup:
    """The cgroup directories of one container."""

    def __init__(self, container_id: str, limits: Limits) -> None:
        self.limits = limits
        own = _own_paths()
        self.container_id = container_id
        self.dirs: dict[str, Path] = {}
        if unified_only():
            # Where it goes is known once the controllers are delegated (create).
            self.dirs[""] = CGROUP_ROOT / own.get("", "/").lstrip("/") / "pyreg" / container_id
        else:
            wanted = {"memory": limits.memory, "pids": limits.pids, "cpu": limits.cpus}
            for controller, value in wanted.items():
                if value is not None:
                    base = CGROUP_ROOT / controller / own.get(controller, "/").lstrip("/")
                    self.dirs[controller] = base / "pyreg" / container_id

    def create(self) -> None:
        try:
            if "" in self.dirs:
                self.dirs[""] = self._delegating_parent(self.dirs[""].parent.parent) / self.container_id
            for controller, path in self.dirs.items():
                for attempt in range(3):
                    try:
                        path.mkdir(parents=True, exist_ok=True)
                        break
                    except FileNotFoundError:
                        if attempt == 2:  # another container's removal took the parent
                            raise
                self._write_limits(controller, path)
        except OSError as e:
            self.remove()
            raise SetupError(f"cannot set resource limits: {e}") from e

    def _delegating_parent(self, own: Path) -> Path:
        """v2: the `pyreg` cgroup whose children get the controllers the limits need (a
        controller is usable in a cgroup only when its parent's subtree_control enables it)."""
        lim = self.limits
        wanted = {name for name, value in (("memory", lim.memory), ("pids", lim.pids),
                                           ("cpu", lim.cpus)) if value is not None}
        enable = " ".join(f"+{name}" for name in sorted(wanted))
        missing = wanted
        for base in dict.fromkeys((own, CGROUP_ROOT)):  # own first; the root when own cannot
            parent = base / "pyreg"
            for directory in (base, parent):
                directory.mkdir(exist_ok=True)
                with contextlib.suppress(OSError):  # EBUSY: processes of its own
                    (directory / "cgroup.subtree_control").write_text(enable)
            missing = wanted
            with contextlib.suppress(OSError):
                enabled = (parent / "cgroup.subtree_control").read_text().split()
                missing = wanted - {name.lstrip("+") for name in enabled}
            if not missing:
                return parent
            with contextlib.suppress(OSError):
                parent.rmdir()  # made for nothing (not if containers use it)
        raise OSError(errno.EBUSY, f"the cgroup v2 controllers {', '.join(sorted(missing))} are "
                      f"not delegated to {own} (a cgroup with processes of its own cannot "
                      "delegate them)")

    def _write_limits(self, controller: str, path: Path) -> None:
        lim = self.limits
        if controller == "":
            if lim.memory is not None:
                (path / "memory.max").write_text(str(lim.memory))
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
            if lim.pids is not None:
                (path / "pids.max").write_text(str(lim.pids))
            if lim.cpus is not None:
                (path / "cpu.max").write_text(f"{int(lim.cpus * _CPU_PERIOD)} {_CPU_PERIOD}")
        elif controller == "memory" and lim.memory is not None:
            (path / "memory.limit_in_bytes").write_text(str(lim.memory))
            with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
                (path / "memory.memsw.limit_in_bytes").write_text(str(lim.memory))
        elif controller == "pids" and lim.pids is not None:
            (path / "pids.max").write_text(str(lim.pids))
        elif controller == "cpu" and lim.cpus is not None:
            (path / "cpu.cfs_period_us").write_text(str(_CPU_PERIOD))
            (path / "cpu.cfs_quota_us").write_text(str(int(lim.cpus * _CPU_PERIOD)))

    def add(self, pid: int) -> None:
        try:
            for path in self.dirs.values():
                (path / "cgroup.procs").write_text(str(pid))
        except OSError as e:
            raise SetupError(f"cannot move the container into its cgroup: {e}") from e

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of the container."""
        for controller, path in self.dirs.items():
            name = {"": "memory.events", "memory": "memory.oom_control"}.get(controller)
            if name is None:
                continue
            with contextlib.suppress(OSError):
                for line in (path / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        return False

    def remove(self) -> None:
        for path in self.dirs.values():
            # The last processes of a killed container may take a moment to leave the cgroup.
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        break
                    time.sleep(0.01)
            # The per-runtime "pyreg" parent goes too once no container uses it.
            with contextlib.suppress(OSError):
                path.parent.rmdir()
