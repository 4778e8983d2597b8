"""Rootless containers: a user namespace, and who is who inside it.

A user that is not root runs its containers in a user namespace of its own, where it is root
(uid 0) and owns the other namespaces it creates, so that mounts, hostname and loopback work without
any privilege on the host. The mapping is written by the supervisor once the container's first
process exists, before that process is told to go on:

- with a range for the user in /etc/subuid and /etc/subgid and the setuid helpers newuidmap and
  newgidmap (Debian's uidmap): 0 → the user, 1..N → the subordinate range, so `-u 1000` and
  images whose files belong to other users work;
- otherwise a single mapping, 0 → the user: every other uid is unmapped (`-u` to another user
  fails with one line saying so), and setgroups(2) is denied, as the kernel requires.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from typing import NamedTuple

from pyreg.runtime import SetupError

Range = tuple[int, int, int]  # inside, outside, count


class IdMapping(NamedTuple):
    uids: tuple[Range, ...]
    gids: tuple[Range, ...]

    @property
    def single(self) -> bool:
        return len(self.uids) == 1 and len(self.gids) == 1

    def describe(self) -> str:
        if self.single:
            return f"a single uid ({self.uids[0][1]})"
        return f"/etc/subuid ({sum(r[2] for r in self.uids)} uids)"


def _subordinate(path: Path, name: str, ident: int) -> Range | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (name, str(ident)) and parts[1].isdigit() and (
                parts[2].isdigit() and int(parts[2]) > 0):
            return 1, int(parts[1]), int(parts[2])
    return None


def plan(etc: Path = Path("/etc")) -> IdMapping | None:
    """The mapping for this user's containers; None when running as root (no user namespace)."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        return None
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    subuid = _subordinate(etc / "subuid", name, uid)
    subgid = _subordinate(etc / "subgid", name, uid)
    if subuid and subgid and shutil.which("newuidmap") and shutil.which("newgidmap"):
        return IdMapping(((0, uid, 1), subuid), ((0, gid, 1), subgid))
    return IdMapping(((0, uid, 1),), ((0, gid, 1),))


def apply(pid: int, mapping: IdMapping) -> None:
    """Write the maps of the user namespace `pid` is in (from outside it)."""
    try:
        if mapping.single:
            # An unprivileged writer may map its own ids only, and gid_map only once setgroups
            # is denied (else dropping groups could grant access denied through a group).
            Path(f"/proc/{pid}/setgroups").write_text("deny")
            Path(f"/proc/{pid}/uid_map").write_text(_lines(mapping.uids))
            Path(f"/proc/{pid}/gid_map").write_text(_lines(mapping.gids))
            return
        import subprocess

        for tool, ranges in (("newuidmap", mapping.uids), ("newgidmap", mapping.gids)):
            args = [tool, str(pid), *(str(n) for r in ranges for n in r)]
            done = subprocess.run(args, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SetupError(f"{tool} failed: {done.stderr.strip() or done.returncode}")
    except OSError as e:
        raise SetupError(f"cannot map the user namespace's ids: {e}") from e


def _lines(ranges: tuple[Range, ...]) -> str:
    return "".join(f"{inside} {outside} {count}\n" for inside, outside, count in ranges)


def in_user_namespace() -> bool:
    """Whether this process is in a user namespace other than the initial one."""
    try:
        text = Path("/proc/self/uid_map").read_text().split()
    except OSError:
        return False
    return text != ["0", "0", "4294967295"]


def setgroups_allowed() -> bool:
    try:
        return Path("/proc/self/setgroups").read_text().strip() != "deny"
    except OSError:
        return True
