"""Resolving a container's user (`uid`, `uid:gid`, `name`, `name:group`) against the image.

Read inside the container (after pivot_root), from its own /etc/passwd and /etc/group, with runc's
rules: a name must exist; a numeric uid need not (gid 0, home /); without an explicit group, the
supplementary groups are those that list the user by name; with one, there are none.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from pyreg.runtime import UserError


class Credentials(NamedTuple):
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str | None = None


def _entries(path: Path, fields: int) -> Iterator[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= fields:
            yield parts


def _number(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def resolve_user(spec: str, etc: Path = Path("/etc")) -> Credentials:
    user, _, group = (spec or "0").partition(":")
    if not user:
        raise UserError(f"invalid user {spec!r}")
    uid = _number(user)
    name: str | None = None
    gid, home = 0, "/"
    for fields in _entries(etc / "passwd", 7):
        if fields[0] == user or (uid is not None and _number(fields[2]) == uid):
            name, home = fields[0], fields[5] or "/"
            uid, gid = _number(fields[2]), _number(fields[3]) or 0
            break
    if uid is None:
        raise UserError(f"unable to find user {user}: no matching entries in passwd file")
    groups: list[int] = []
    if group:
        explicit = _number(group)
        if explicit is None:
            explicit = next((_number(f[2]) for f in _entries(etc / "group", 4) if f[0] == group),
                            None)
            if explicit is None:
                raise UserError(f"unable to find group {group}: no matching entries in group file")
        gid = explicit
    elif name is not None:
        for fields in _entries(etc / "group", 4):
            members = fields[3].split(",")
            number = _number(fields[2])
            if name in members and number is not None and number not in groups:
                groups.append(number)
    if gid not in groups:
        groups.insert(0, gid)
    return Credentials(uid, gid, tuple(groups), home, name)
