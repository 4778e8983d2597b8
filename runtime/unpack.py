"""Applying image layers (uncompressed tar streams) onto a directory, as the OCI image spec says.

Deletions have two representations, one per way of composing a root filesystem:

- ``overlay=False``: layers are applied one over the other into one directory (a per-container
  copy); `.wh.<name>` deletes what lower layers put there, `.wh..wh..opq` deletes every lower entry
  of its directory. Entries of the same layer are never hidden by that layer's whiteouts.
- ``overlay=True``: each layer is unpacked alone into its own directory, and whiteouts become what
  overlayfs reads: a 0/0 character device for `.wh.<name>`, the xattr `trusted.overlay.opaque=y` for
  an opaque directory. `lowers` (topmost first) answer for the directories and symlinks of lower
  layers that this layer's entries go through.

Safety: an entry named with `..` or an absolute name is refused; every path is resolved inside the
root by `ScopedRoot` (a symlink is never followed out); a hardlink must point inside the root. Any
refusal raises `LayerError` naming the layer and the entry; the caller extracts into a temporary
directory and deletes it on error, so nothing half-extracted is kept.

Ownership is applied when running as root; device nodes are created where the kernel permits it
and otherwise skipped (counted in `skipped_devices`).
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from collections.abc import Sequence
from typing import IO, NamedTuple

from pyreg.runtime import LayerError, PathError
from pyreg.runtime.lowers import OVERLAY_OPAQUE, LowerLayers
from pyreg.runtime.paths import Opened, ScopedRoot, open_exact, split

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_XATTR = "SCHILY.xattr."
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Path_ = tuple[str, ...]


class _Meta(NamedTuple):
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    xattrs: dict[str, bytes]

    @classmethod
    def of(cls, m: tarfile.TarInfo) -> _Meta:
        xattrs = {
            k[len(_XATTR):]: v.encode("utf-8", "surrogateescape")
            for k, v in m.pax_headers.items()
            # A layer may not forge overlayfs' own metadata.
            if k.startswith(_XATTR) and not k[len(_XATTR):].startswith("trusted.overlay.")
        }
        return cls(m.mode & 0o7777, m.uid, m.gid, int(m.mtime * 1_000_000_000), xattrs)


def clean_name(name: str) -> list[str]:
    """The components of a tar entry name, refusing names that could leave the root."""
    if name.startswith("/"):
        raise PathError("absolute name")
    parts = split(name)
    if ".." in parts:
        raise PathError("'..' component")
    return parts


class LayerApplier:
    """Applies layers, in order, onto the directory `root`; call `finish` after the last one."""

    def __init__(self, root: str | os.PathLike[str], *, overlay: bool = False,
                 lowers: Sequence[str | os.PathLike[str]] = (), same_owner: bool | None = None
                 ) -> None:
        self.root = ScopedRoot(root)
        self.overlay = overlay
        self.lowers = LowerLayers(lowers)
        self.same_owner = os.geteuid() == 0 if same_owner is None else same_owner
        self.skipped_devices = 0
        self._dirs: dict[Path_, _Meta] = {}
        self._keep: set[Path_] = set()
        self._whited: set[Path_] = set()
        # The last entry's parent, resolved: most entries share their parent with the one before.
        # Valid only while entries add names: any removal, or a new symlink, could change what
        # a path resolves to, and drops it.
        self._parent: tuple[tuple[str, ...], Opened] | None = None

    def apply(self, stream: IO[bytes], layer: str) -> None:
        # Whiteouts only hide what lower layers hold: remember what this layer made.
        self._forget_parent()
        self._keep = set()
        self._whited = set()
        member: tarfile.TarInfo | None = None
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    self._entry(tar, member)
        except (PathError, OSError) as e:
            where = f"entry {member.name!r}" if member is not None else "stream"
            detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise LayerError(f"layer {layer}: {where}: {detail}") from e
        except tarfile.TarError as e:
            raise LayerError(f"layer {layer}: not a valid tar stream: {e}") from e

    def finish(self) -> None:
        """Give directories their modes and mtimes, now that nothing more is written into them."""
        self._forget_parent()
        try:
            for path, meta in self._dirs.items():
                try:
                    fd = open_exact(self.root.fd, path)
                except OSError:
                    continue  # replaced by a later layer
                try:
                    self._set_meta(fd, meta)
                finally:
                    os.close(fd)
        finally:
            self.root.close()

    # -- entries ---------------------------------------------------------------------------

    def _entry(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = clean_name(m.name)
        if not parts:
            return  # the root itself: its metadata is the runtime's to choose
        base = parts[-1]
        if base == OPAQUE:
            return self._opaque(parts[:-1])
        if base.startswith(WHITEOUT + WHITEOUT):
            return  # reserved by the spec for future use
        if base.startswith(WHITEOUT):
            return self._whiteout(parts[:-1], base[len(WHITEOUT):])
        source = None
        if m.islnk():
            try:
                source = self._link_source(clean_name(m.linkname))
            except PathError as e:
                raise PathError(f"hardlink target {m.linkname!r}: {e}") from None
        try:
            parent = self._open_parent(tuple(parts[:-1]))
        except BaseException:
            if source is not None:
                source.close()
            raise
        try:
            path = (*parent.path, base)
            if source is not None and (*source.path, source_name(m)) == path:
                return
            fd = parent.fd
            self._make_room(fd, base, m.isdir())
            if m.isdir():
                if not _exists(fd, base):
                    # Owner-writable while extracting; the real mode comes in finish().
                    os.mkdir(base, 0o700, dir_fd=fd)
                    if self.overlay and path in self._whited:
                        self._set_opaque(fd, base)
                self._dirs[path] = _Meta.of(m)
            elif m.isreg():
                self._file(tar, m, fd, base)
            elif m.issym():
                self._forget_parent()
                os.symlink(m.linkname, base, dir_fd=fd)
                if self.same_owner:
                    os.chown(base, m.uid, m.gid, dir_fd=fd, follow_symlinks=False)
                ns = int(m.mtime * 1_000_000_000)
                os.utime(base, ns=(ns, ns), dir_fd=fd, follow_symlinks=False)
            elif source is not None:
                os.link(source_name(m), base, src_dir_fd=source.fd, dst_dir_fd=fd,
                        follow_symlinks=False)
            elif m.ischr() or m.isblk() or m.isfifo():
                if not self._node(m, fd, base):
                    return
            else:
                raise PathError(f"unsupported entry type {m.type!r}")
            self._mark(path)
        finally:
            parent.close()
            if source is not None:
                source.close()

    def _file(self, tar: tarfile.TarFile, m: tarfile.TarInfo, dirfd: int, name: str) -> None:
        # O_EXCL|O_NOFOLLOW: the name was just cleared; never write through whatever is there.
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=dirfd)
        try:
            src = tar.extractfile(m)
            if src is not None:
                with open(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            self._set_meta(fd, _Meta.of(m))
        finally:
            os.close(fd)

    def _node(self, m: tarfile.TarInfo, dirfd: int, name: str) -> bool:
        if m.isfifo():
            kind, dev = stat.S_IFIFO, 0
        else:
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            dev = os.makedev(m.devmajor, m.devminor)
        try:
            os.mknod(name, kind | 0o600, dev, dir_fd=dirfd)
        except PermissionError:
            if m.isfifo():
                raise
            self.skipped_devices += 1  # device nodes need CAP_MKNOD
            return False
        if self.same_owner:
            os.chown(name, m.uid, m.gid, dir_fd=dirfd, follow_symlinks=False)
        os.chmod(name, m.mode & 0o7777, dir_fd=dirfd)
        ns = int(m.mtime * 1_000_000_000)
        os.utime(name, ns=(ns, ns), dir_fd=dirfd, follow_symlinks=False)
        return True

    def _set_meta(self, fd: int, meta: _Meta) -> None:
        # chown first: it clears setuid/setgid bits and file capabilities set before it.
        if self.same_owner:
            os.fchown(fd, meta.uid, meta.gid)
        os.fchmod(fd, meta.mode)
        for key, value in meta.xattrs.items():
            try:
                os.setxattr(fd, key, value)
            except OSError:
                pass  # "where allowed": trusted.*/security.* need privileges, some fs refuse
        os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))

    def _mark(self, path: Path_) -> None:
        for i in range(len(path), 0, -1):
            if path[:i] in self._keep:
                break
            self._keep.add(path[:i])

    def _forget(self, path: Path_) -> None:
        n = len(path)
        for key in [k for k in self._dirs if k[:n] == path]:
            del self._dirs[key]

    def _open_parent(self, parts: tuple[str, ...]) -> Opened:
        """The directory at `parts` (a dup of the cached one when it is the last entry's)."""
        if self._parent is None or self._parent[0] != parts:
            self._forget_parent()
            self._parent = parts, self.root.open_dir(parts, self._missing)
        cached = self._parent[1]
        return Opened(os.dup(cached.fd), cached.path)

    def _forget_parent(self) -> None:
        if self._parent is not None:
            self._parent[1].close()
            self._parent = None

    def _make_room(self, dirfd: int, name: str, keep_dir: bool) -> None:
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return  # a directory over a directory merges with it
        self._forget_parent()  # a name goes away: what paths resolve to may change
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=dirfd)  # fd-based: safe against symlinks inside
        else:
            os.unlink(name, dir_fd=dirfd)

    def _link_source(self, parts: list[str]) -> Opened:
        if not parts:
            raise PathError("hardlink to the root")
        parent = self.root.open_dir(parts[:-1])
        try:
            st = os.stat(parts[-1], dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            if not self.overlay or not self.lowers.copy_up((*parent.path, parts[-1]), parent.fd, self.same_owner):
                parent.close()
                raise PathError("hardlink target does not exist") from None
            st = os.stat(parts[-1], dir_fd=parent.fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            parent.close()
            raise PathError("hardlink to a directory")
        return parent

    # -- whiteouts -------------------------------------------------------------------------

    def _whiteout(self, parts: list[str], name: str) -> None:
        self._forget_parent()
        if name in ("", ".", ".."):
            raise PathError("whiteout of an invalid name")
        try:
            parent = self.root.open_dir(parts, self._missing if self.overlay else None)
        except FileNotFoundError:
            return  # nothing below to hide
        try:
            path = (*parent.path, name)
            if path in self._keep:
                return  # a layer's whiteouts hide lower layers only
            self._make_room(parent.fd, name, False)
            self._forget(path)
            if self.overlay:
                # overlayfs reads a 0/0 character device as "deleted in this layer".
                os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent.fd)
                self._whited.add(path)
        finally:
            parent.close()

    def _opaque(self, parts: list[str]) -> None:
        self._forget_parent()
        try:
            d = self.root.open_dir(parts, self._missing if self.overlay else None)
        except FileNotFoundError:
            return
        try:
            if self.overlay:
                os.setxattr(d.fd, OVERLAY_OPAQUE, b"y")
            else:
                self._prune(d.fd, d.path)
            if d.path:
                self._mark(d.path)
        finally:
            d.close()

    def _set_opaque(self, dirfd: int, name: str) -> None:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
        try:
            os.setxattr(fd, OVERLAY_OPAQUE, b"y")
        finally:
            os.close(fd)

    def _prune(self, dirfd: int, path: Path_) -> None:
        """Delete every entry below `path` that this layer did not make."""
        for name in os.listdir(dirfd):
            child = (*path, name)
            if child not in self._keep:
                self._make_room(dirfd, name, False)
                self._forget(child)
            elif stat.S_ISDIR(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode):
                fd = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
                try:
                    self._prune(fd, child)
                finally:
                    os.close(fd)

    # -- lower layers (overlay mode) -------------------------------------------------------

    def _missing(self, dirfd: int, name: str, path: Path_) -> str | None:
        """A parent directory this layer's tar does not hold: take it from the lower layers."""
        found = self.lowers.lookup(path)
        if found is not None and stat.S_ISLNK(found[0].st_mode):
            return found[1]
        os.mkdir(name, 0o755, dir_fd=dirfd)
        if found is not None and stat.S_ISDIR(found[0].st_mode):
            st = found[0]
            # overlayfs shows the upper directory's attributes: keep the lower one's.
            self._dirs[path] = _Meta(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                     st.st_mtime_ns, {})
        return None


def source_name(m: tarfile.TarInfo) -> str:
    return split(m.linkname)[-1]


def _exists(dirfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
