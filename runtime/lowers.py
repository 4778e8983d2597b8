"""The lower layers of a layer being unpacked for overlayfs, seen as overlayfs would show them.

A layer's tar may write below a directory it does not contain itself (the directory, or a symlink
such as /lib -> usr/lib, comes from a lower layer), or hardlink a lower layer's file. Unpacked alone
into its own directory, such a layer needs to look at the layers below it; this module does, without
following any symlink inside them.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from pyreg.runtime.paths import open_exact

OVERLAY_OPAQUE = "trusted.overlay.opaque"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Path_ = tuple[str, ...]


class LowerLayers:
    """Unpacked layer directories, topmost first."""

    def __init__(self, dirs: Sequence[str | os.PathLike[str]]) -> None:
        self.dirs = [Path(p) for p in dirs]

    def lookup(self, path: Path_) -> tuple[os.stat_result, str, int] | None:
        """The topmost lower layer's entry at `path`, as overlayfs would show it, or None."""
        for index, lower in enumerate(self.dirs):
            fd = os.open(lower, _DIR_FLAGS)
            try:
                for name in path[:-1]:
                    try:
                        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except FileNotFoundError:
                        break
                    except OSError:
                        return None  # a non-directory (or a whiteout) hides everything below
                    os.close(fd)
                    fd = child
                else:
                    try:
                        st = os.stat(path[-1], dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        pass
                    else:
                        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                            return None  # whited out
                        target = os.readlink(path[-1], dir_fd=fd) if stat.S_ISLNK(
                            st.st_mode) else ""
                        return st, target, index
                if _opaque(fd):
                    return None  # an opaque directory hides the layers below it
            finally:
                os.close(fd)
        return None

    def copy_up(self, path: Path_, dirfd: int, same_owner: bool) -> bool:
        """Copy a lower layer's file into this layer, so a hardlink can point at it."""
        found = self.lookup(path)
        if found is None or not stat.S_ISREG(found[0].st_mode):
            return False
        top = os.open(self.dirs[found[2]], _DIR_FLAGS)
        try:
            lower_dir = open_exact(top, path[:-1])
        finally:
            os.close(top)
        try:
            src = os.open(path[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=lower_dir)
        finally:
            os.close(lower_dir)
        with open(src, "rb") as f, open(os.open(path[-1], _FILE_FLAGS, 0o600, dir_fd=dirfd),
                                        "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
        _set_meta(dirfd, path[-1], found[0], same_owner)
        return True


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, OVERLAY_OPAQUE) == b"y"
    except OSError:
        return False


def _set_meta(dirfd: int, name: str, st: os.stat_result, same_owner: bool) -> None:
    if same_owner:
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dirfd, follow_symlinks=False)
    os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dirfd)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dirfd, follow_symlinks=False)


