"""Containers after `run`: list, logs, stop, kill, remove (the state on disk is the truth)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, TextIO

from pyreg.runtime import ContainerError
from pyreg.runtime.container import remove
from pyreg.runtime.state import CONFIG, LOG, ContainerState, StateStore, process_start_time, since


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
    for cgroup in state.cgroups:
        # Left behind when the container's monitor itself was killed: empty now, remove it.
        with contextlib.suppress(OSError):
            os.rmdir(cgroup)
            os.rmdir(os.path.dirname(cgroup))
    remove(store.dir(state.id))
    return state


def rename(store: StateStore, ref: str, name: str) -> ContainerState:
    state = store.find(ref)
    if store.name_taken(name):
        raise ContainerError(f"the container name {name!r} is already in use")
    renamed = replace(state, name=name)
    store.save(renamed)
    return renamed


def prune(store: StateStore) -> list[ContainerState]:
    """Remove every container that is not running."""
    removed = [s for s in store.all() if s.status != "running"]
    for state in removed:
        remove(store.dir(state.id))
    return removed


def inspect(store: StateStore, ref: str) -> dict[str, Any]:
    state = store.find(ref)
    doc = state.to_json()
    try:
        doc["config"] = json.loads((store.dir(state.id) / CONFIG).read_text())
    except (OSError, ValueError):
        doc["config"] = None
    return doc


def status_text(state: ContainerState) -> str:
    if state.status == "running":
        return f"Up {since(state.started or state.created)}"
    if state.status == "created":
        return "Created"
    code = "" if state.exit_code is None else f" ({state.exit_code})"
    why = " OOMKilled" if state.oom_killed else ""
    return f"Exited{code}{why} {since(state.finished or state.created)} ago"


def ps(store: StateStore, all_: bool = False, quiet: bool = False, out: TextIO = sys.stdout) -> None:
    states = [s for s in store.all() if all_ or s.status == "running"]
    if quiet:
        for state in states:
            print(state.id[:12], file=out)
        return
    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")]
    for s in states:
        command = " ".join(s.command)
        command = f'"{command[:20]}…"' if len(command) > 20 else f'"{command}"'
        rows.append((s.id[:12], s.image, command, f"{since(s.created)} ago", status_text(s),
                     ", ".join(s.ports), s.name))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def logs(store: StateStore, ref: str, follow: bool = False, tail: int | None = None
         ) -> Iterator[bytes]:
    """The output of a detached container, optionally following it until it exits."""
    state = store.find(ref)
    path = store.dir(state.id) / LOG
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        data = f.read()
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
        yield data
        while follow:
            chunk = f.read()
            if chunk:
                yield chunk
                continue
            if not store.find(state.id).running:
                rest = f.read()
                if rest:
                    yield rest
                return
            time.sleep(0.1)
