"""Containers' state on disk, so that it survives the process that started them.

    <root>/runtime/containers/<id>/state.json    written atomically (temp file + rename)
    <root>/runtime/containers/<id>/config.json   what it runs (spec.ContainerSpec), for start
    <root>/runtime/containers/<id>/container.log  output of a detached container (logs.py)

`<root>` is the client's image store (an OCI layout, `pyreg --root`): one root governs both, and the
runtime keeps everything of its own below `<root>/runtime/`.

A container whose state says running but whose process is gone (its monitor was killed, the
machine rebooted) is shown as exited with 137: its process died with its monitor (PDEATHSIG is
SIGKILL). The process is identified by pid and start time, so a reused pid is not mistaken for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from pyreg.runtime import ContainerError

STATE = "state.json"
RUNTIME_DIR = "runtime"
CONFIG = "config.json"


def default_root(environ: Mapping[str, str] = os.environ) -> Path:
    """The client's store location (pyreg.client.store.default_root, which this package may not
    import): $PYREG_ROOT, else $XDG_DATA_HOME/pyreg, else ~/.local/share/pyreg."""
    if environ.get("PYREG_ROOT"):
        return Path(environ["PYREG_ROOT"])
    base = environ.get("XDG_DATA_HOME") or str(
        Path(environ.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "pyreg"


def runtime_dir(root: Path) -> Path:
    """Where the runtime keeps its state inside a pyreg root."""
    return root / RUNTIME_DIR


def process_start_time(pid: int) -> int | None:
    """The start time of a process (clock ticks since boot), or None when there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


class ContainerState(NamedTuple):
    id: str
    name: str
    image: str
    command: Sequence[str]
    created: float
    status: str = "created"  # created | running | exited
    pid: int = 0
    pid_start: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    finished: float | None = None
    ports: Sequence[str] = ()
    env: Sequence[str] = ()
    cwd: str = "/"
    user: str = ""
    cgroups: Sequence[str] = ()
    error: str = ""
    auto_remove: bool = False
    started: float | None = None
    image_ref: str = ""  # the tag or digest it was created from (what image prune must keep)

    @property
    def running(self) -> bool:
        return (self.status == "running" and self.pid > 0
                and process_start_time(self.pid) == self.pid_start)

    def effective(self) -> ContainerState:
        """The state as it really is: a running container whose process is gone has exited."""
        if self.status == "running" and not self.running:
            # Its monitor was killed (or the machine rebooted): the container's PID 1 got
            # SIGKILL with it (PDEATHSIG), so 137 is what it exited with.
            return self._replace(status="exited", exit_code=137, finished=self.started,
                                 error=self.error or "killed with its monitor")
        return self

    def to_json(self) -> dict[str, Any]:
        return self._asdict()


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = runtime_dir(root) / "containers"

    def dir(self, container_id: str) -> Path:
        return self.root / container_id

    def save(self, state: ContainerState) -> None:
        path = self.dir(state.id) / STATE
        tmp = path.with_name(f".{STATE}.{os.getpid()}")
        tmp.write_text(json.dumps(state.to_json(), indent=2))
        os.replace(tmp, path)

    def load(self, container_id: str) -> ContainerState:
        try:
            doc = json.loads((self.dir(container_id) / STATE).read_text())
        except (OSError, ValueError) as e:
            raise ContainerError(f"no such container: {container_id}") from e
        return ContainerState(**doc)

    def all(self) -> list[ContainerState]:
        states = []
        with contextlib.suppress(FileNotFoundError):
            for entry in self.root.iterdir():
                with contextlib.suppress(ContainerError, TypeError):
                    states.append(self.load(entry.name).effective())
        return sorted(states, key=lambda s: s.created, reverse=True)

    def find(self, ref: str) -> ContainerState:
        """A container by full id, name, or unique id prefix."""
        states = self.all()
        for state in states:
            if ref in (state.id, state.name):
                return state
        matches = [s for s in states if s.id.startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ContainerError(f"container id prefix {ref!r} is ambiguous")
        raise ContainerError(f"no such container: {ref}")

    def inspect(self, ref: str) -> dict[str, Any]:
        """A container's state, and what it runs (`config`), as `container inspect` shows it."""
        state = self.find(ref)
        doc = state.to_json()
        try:
            doc["config"] = json.loads((self.dir(state.id) / CONFIG).read_text())
        except (OSError, ValueError):
            doc["config"] = None
        return doc

    def name_taken(self, name: str) -> bool:
        return any(s.name == name for s in self.all())


def since(seconds: float) -> str:
    """docker's "2 minutes" style."""
    delta = max(0, int(time.time() - seconds))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if delta >= size:
            n = delta // size
            return f"{n} {unit}{'s' if n > 1 else ''}"
    if delta < 1:
        return "Less than a second"
    return f"{delta} second{'s' if delta > 1 else ''}"
