"""Containers after `run`: list, logs, stop, kill, remove (the state on disk is the truth)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterable, Iterator
from typing import Any

from pyreg.runtime import ContainerError
from pyreg.runtime.container import remove
from pyreg.runtime.layers import LayerCache
from pyreg.runtime.logs import LOG
from pyreg.runtime.logs import read as read_log
from pyreg.runtime.state import CONFIG, ContainerState, StateStore, process_start_time


def _gone(state: ContainerState) -> bool:
    return process_start_time(state.pid) != state.pid_start


def _wait_gone(state: ContainerState, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(state):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_recorded(store: StateStore, state: ContainerState, timeout: float = 10) -> None:
    """Wait for the container's monitor to record the exit (and to remove the cgroup)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if store.load(state.id).status != "running":
                return
        except ContainerError:
            return  # removed (--rm)
        time.sleep(0.02)


def kill(store: StateStore, ref: str, sig: int = signal.SIGKILL) -> ContainerState:
    state = store.find(ref)
    if not state.running:
        raise ContainerError(f"container {ref} is not running")
    os.kill(state.pid, sig)
    return state


def stop(store: StateStore, ref: str, timeout: float = 10) -> ContainerState:
    """SIGTERM, then SIGKILL after `timeout` seconds (as docker stop)."""
    state = store.find(ref)
    if state.running:
        os.kill(state.pid, signal.SIGTERM)
        if not _wait_gone(state, timeout):
            os.kill(state.pid, signal.SIGKILL)
            _wait_gone(state, 10)
        _wait_recorded(store, state)
    return state


def rm(store: StateStore, ref: str, force: bool = False) -> ContainerState:
    state = store.find(ref)
    if state.running:
        if not force:
            raise ContainerError(f"container {ref} is running: stop it first, or use rm -f")
        os.kill(state.pid, signal.SIGKILL)
        _wait_gone(state, 10)
        _wait_recorded(store, state)
    _discard(store, state)
    return state


def _discard(store: StateStore, state: ContainerState) -> None:
    for cgroup in state.cgroups:
        # Left behind when the container's monitor itself was killed: its processes died with
        # it (PDEATHSIG), so the cgroup is empty: remove it, and the "pyreg" parent once unused.
        with contextlib.suppress(OSError):
            os.rmdir(cgroup)
            os.rmdir(os.path.dirname(cgroup))
    remove(store.dir(state.id))


def rename(store: StateStore, ref: str, name: str) -> ContainerState:
    state = store.find(ref)
    if store.name_taken(name):
        raise ContainerError(f"the container name {name!r} is already in use")
    renamed = state._replace(name=name)
    store.save(renamed)
    return renamed


def prune(store: StateStore) -> list[ContainerState]:
    """Remove every container that is not running."""
    removed = [s for s in store.all() if s.status != "running"]
    for state in removed:
        _discard(store, state)
    return removed


def prune_layers(store: StateStore, cache: LayerCache, keep: Iterable[str] = ()) -> list[str]:
    """Remove the cached layers that no container uses, except the diff_ids in `keep` (those of
    the images still in the store); the diff_ids removed."""
    in_use: set[str] = set()
    for state in store.all():
        try:
            doc = json.loads((store.dir(state.id) / CONFIG).read_text())
            options = doc["rootfs"]["overlay"] or ""
        except (OSError, ValueError, KeyError, TypeError):
            continue
        lower = options.partition("lowerdir=")[2].split(",")[0]
        in_use.update(lower.split(":") if lower else ())
    return cache.prune(in_use, set(keep))


def inspect(store: StateStore, ref: str) -> dict[str, Any]:
    return store.inspect(ref)


def logs(store: StateStore, ref: str, follow: bool = False, tail: int | None = None,
         timestamps: bool = False, since: int | None = None) -> Iterator[tuple[str, bytes]]:
    """(stream, bytes) of a detached container's output, optionally following it to its end."""
    state = store.find(ref)

    def running() -> bool:
        try:
            return store.load(state.id).effective().running
        except ContainerError:
            return False  # removed meanwhile

    return read_log(store.dir(state.id) / LOG, follow, tail, timestamps, running, since)
