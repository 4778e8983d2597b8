"""Paths resolved inside a root directory without ever leaving it.

Every component is opened relative to its parent's file descriptor with `O_NOFOLLOW`, so a symlink
is only followed by this code, never by the kernel, and only within the root:

- an absolute symlink target means what it means inside the container: it restarts at the root;
- a relative target is walked component by component; a `..` that would climb above the root is an
  escape and raises `PathError` (a layer that writes through such a link is malicious or broken);
- a name that is not a directory in the middle of a path raises `PathError`.

This is what `openat2(RESOLVE_IN_ROOT)` does in the kernel; Python 3.11 has no binding for it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence

from pyreg.runtime import PathError

_MAX_LINKS = 40  # as the kernel's ELOOP limit
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# Called for a missing directory while walking: (parent fd, name, canonical path of the missing
# directory). It creates the directory and returns None, or returns a symlink target to follow
# instead (used by the overlay layer store, where a lower layer may hold a symlink there).
MissingHook = Callable[[int, str, tuple[str, ...]], str | None]


def split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


class Opened:
    """An open directory inside the root, and its canonical path (no symlinks) from the root."""

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: tuple[str, ...]) -> None:
        self.fd = fd
        self.path = path

    def close(self) -> None:
        os.close(self.fd)


class ScopedRoot:
    """A directory tree reached only through descriptors opened from its root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = os.fspath(root)
        self.fd = os.open(self.path, _DIR_FLAGS)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> ScopedRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_dir(self, parts: Iterable[str], missing: MissingHook | None = None) -> Opened:
        """Open the directory at `parts`, following symlinks inside the root only.

        A missing component raises FileNotFoundError unless `missing` creates it.
        """
        todo = list(reversed(list(parts)))
        stack: list[int] = [os.dup(self.fd)]
        canon: list[str] = []
        links = 0
        try:
            while todo:
                name = todo.pop()
                if name in ("", "."):
                    continue
                if name == "..":
                    if not canon:
                        raise PathError("path climbs above the root")
                    os.close(stack.pop())
                    canon.pop()
                    continue
                try:
                    st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                except FileNotFoundError:
                    if missing is None:
                        raise
                    target = missing(stack[-1], name, (*canon, name))
                    if target is None:
                        st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                    else:
                        links = self._follow(target, todo, stack, canon, links)
                        continue
                if stat.S_ISLNK(st.st_mode):
                    target = os.readlink(name, dir_fd=stack[-1])
                    links = self._follow(target, todo, stack, canon, links)
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise PathError(f"{'/'.join((*canon, name))} is not a directory")
                # O_NOFOLLOW: if the name was swapped for a symlink since the stat, fail, not follow.
                stack.append(os.open(name, _DIR_FLAGS, dir_fd=stack[-1]))
                canon.append(name)
            fd = stack.pop()
            return Opened(fd, tuple(canon))
        finally:
            for fd in stack:
                os.close(fd)

    def _follow(self, target: str, todo: list[str], stack: list[int], canon: list[str],
                links: int) -> int:
        links += 1
        if links > _MAX_LINKS:
            raise PathError("too many levels of symbolic links")
        if target.startswith("/"):
            # Absolute targets are relative to the container's root, not the host's.
            while len(stack) > 1:
                os.close(stack.pop())
            canon.clear()
        todo.extend(reversed(split(target)))
        return links

    def open_parent(self, path: str, missing: MissingHook | None = None) -> tuple[Opened, str]:
        """The directory holding `path` and the final name (which is not resolved)."""
        parts = split(path)
        if not parts:
            raise PathError("the root has no parent")
        return self.open_dir(parts[:-1], missing), parts[-1]

    def resolve(self, path: str, missing: MissingHook | None = None) -> tuple[Opened, str]:
        """Like open_parent, but a symlink as the final component is followed (inside the root)."""
        parts = split(path)
        if not parts or parts[-1] == "..":
            raise PathError(f"{path} does not resolve to a name inside the root")
        for _ in range(_MAX_LINKS):
            parent, name = self.open_dir(parts[:-1], missing), parts[-1]
            try:
                st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
            except FileNotFoundError:
                return parent, name
            if not stat.S_ISLNK(st.st_mode):
                return parent, name
            target = os.readlink(name, dir_fd=parent.fd)
            base = [] if target.startswith("/") else list(parent.path)
            parent.close()
            parts = [*base, *split(target)]
            if ".." in parts:
                parent = self.open_dir(parts[:-1], missing)  # PathError on an escape
                parts = [*parent.path, parts[-1]]
                parent.close()
            if not parts or parts[-1] == "..":
                raise PathError(f"{path} does not resolve to a name inside the root")
        raise PathError("too many levels of symbolic links")


def open_exact(dirfd: int, parts: Sequence[str]) -> int:
    """Open a directory below `dirfd` without following any symlink at all."""
    fd = os.dup(dirfd)
    try:
        for name in parts:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd
