"""The container's filesystem, set up by its first process inside its own mount namespace.

One ordered function, `enter_rootfs`, as runc does it: make every mount private → mount the root
(overlayfs, or a bind of the copy onto itself) → /proc, /dev, /dev/pts, /dev/shm, /sys, /tmp,
/etc files, volumes → mask the kernel's sensitive files → pivot_root(".", ".") → detach the old root.

Every mount target is resolved inside the new root by `ScopedRoot` and mounted through
/proc/self/fd/<n>, so a symlink in the image (say /proc -> /) cannot redirect a mount onto the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from pyreg.runtime import PathError, SetupError, syscalls
from pyreg.runtime.paths import ScopedRoot, split
from pyreg.runtime.spec import ContainerSpec
from pyreg.runtime.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
    mount,
)
from pyreg.runtime.userns import in_user_namespace

_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
            "tty": (5, 0)}
_DEV_LINKS = {"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
              "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "core": "/proc/kcore"}
# What docker hides from a container: host information and knobs that are not namespaced.
_MASKED = ("proc/asound", "proc/acpi", "proc/kcore", "proc/keys", "proc/latency_stats",
           "proc/timer_list", "proc/timer_stats", "proc/sched_debug", "proc/scsi",
           "sys/firmware")
_READONLY = ("proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger")


@contextlib.contextmanager
def _target(root: ScopedRoot, path: str, kind: str = "dir", create: bool = True
            ) -> Iterator[str | None]:
    """A mount target inside the root, as a /proc/self/fd path; None if absent and not created."""
    try:
        parent, name = root.resolve(path, _mkdir if create else None)
    except FileNotFoundError:
        if create:
            raise
        yield None
        return
    try:
        try:
            st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            if not create:
                yield None
                return
            if kind == "dir":
                os.mkdir(name, 0o755, dir_fd=parent.fd)
            else:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o644, dir_fd=parent.fd))
        else:
            if kind == "dir" and not stat.S_ISDIR(st.st_mode):
                raise PathError(f"/{path.lstrip('/')} is not a directory")
        # O_PATH|O_NOFOLLOW: a handle on exactly this inode, whatever happens to the name.
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent.fd)
        try:
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
    finally:
        parent.close()


def _mkdir(dirfd: int, name: str, path: tuple[str, ...]) -> None:
    os.mkdir(name, 0o755, dir_fd=dirfd)


def _mount_at(root: ScopedRoot, path: str, source: str | None, fstype: str | None, flags: int,
              data: str | None = None, kind: str = "dir") -> None:
    with _target(root, path, kind) as target:
        assert target is not None
        mount(source, target, fstype, flags, data)


def enter_rootfs(spec: ContainerSpec) -> None:
    """Build the container's mount table and make its root the process's root."""
    root = str(spec.rootfs.path)
    try:
        # Private, recursively: nothing mounted from here on propagates back to the host.
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        if spec.rootfs.overlay_options is not None:
            # The cached layers as lowerdirs, the container's own upper: mounted in this namespace
            # only, so it is gone when the container is, whatever way it ends. nodev: a device
            # node shipped in an image (say, of the host's disk) cannot be opened.
            mount("overlay", root, "overlay", MS_NODEV, spec.rootfs.overlay_options)
        else:
            # pivot_root needs the new root to be a mount point: bind the copy onto itself, then
            # make it nodev (bind mounts take flags only on a remount).
            mount(root, root, None, MS_BIND | MS_REC)
            mount(None, root, None, MS_REMOUNT | MS_BIND | MS_NODEV | _locked(root))
        with ScopedRoot(root) as scoped:
            _filesystems(scoped, spec)
        if spec.readonly:
            # Read-only root: remount the root's bind/overlay read-only (its submounts keep theirs).
            mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NODEV | _locked(root))
        os.chdir(root)
        # pivot_root(".", "."): the old root is stacked under the new one at "/"; detaching "."
        # then removes it, with every host mount below it, from this namespace.
        syscalls.pivot_root(".", ".")
        syscalls.umount2(".", MNT_DETACH)
        os.chdir("/")
    except (OSError, PathError) as e:
        raise SetupError(f"setting up the root filesystem: {e}") from e


def _filesystems(root: ScopedRoot, spec: ContainerSpec) -> None:
    # A proc of the new PID namespace: the container sees its own processes only.
    _mount_at(root, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _dev(root)
    # sysfs read-only: the container may look at the hardware, not reconfigure it.
    try:
        _mount_at(root, "sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except PermissionError:
        # Rootless with the host's network: a sysfs belongs to a network namespace this user
        # namespace does not own. The host's /sys, bound read-only, shows the same.
        _mount_at(root, "sys", "/sys", None, MS_BIND | MS_REC)
        _remount_readonly(root, "sys")
    with _target(root, "tmp", create=False) as tmp:
        if tmp is None:
            _mount_at(root, "tmp", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for volume in spec.volumes:
        kind = "dir" if volume.source.is_dir() else "file"
        try:
            if volume.populate:
                _populate(root, volume.target, volume.source)
            _mount_at(root, volume.target, str(volume.source), None, MS_BIND | MS_REC, kind=kind)
            if volume.readonly:
                _remount_readonly(root, volume.target)
        except (OSError, PathError) as e:
            # Say which volume: a directory over a file of the image, or the reverse, is a usual
            # mistake (`-v /etc/passwd:/bin`).
            why = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
            raise SetupError(f"cannot mount {volume.source} on {volume.target}: {why}") from None
    # After the volumes: a volume over /etc still gets the container's own files.
    for name, source in spec.etc_files.items():
        # Bind the runtime's files over the image's: editable per container, the image unchanged.
        _mount_at(root, f"etc/{name}", str(source), None, MS_BIND, kind="file")
    _mask(root)
    # The working directory is created when the image lacks it, before a read-only remount.
    root.open_dir(split(spec.cwd), _mkdir).close()


def _populate(root: ScopedRoot, target: str, volume: Path) -> None:
    """A new named volume starts with what the image holds where it is mounted (as docker's)."""
    with _target(root, target, kind="any", create=False) as source:
        if source is not None and os.path.isdir(source):
            # symlinks=True: links are copied as links, never followed out of the image.
            shutil.copytree(source, volume, symlinks=True, dirs_exist_ok=True,
                            copy_function=_copy_regular)
            shutil.copystat(source, volume)
            st = os.stat(source)
            os.chown(volume, st.st_uid, st.st_gid)


def _copy_regular(src: str, dst: str) -> None:
    # Regular files only: reading a device node or a FIFO would copy what it yields.
    if stat.S_ISREG(os.lstat(src).st_mode):
        shutil.copy2(src, dst, follow_symlinks=False)
        st = os.lstat(src)
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)


def _dev(root: ScopedRoot) -> None:
    # A fresh tmpfs /dev with only the safe devices, never the host's /dev.
    _mount_at(root, "dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    dev = root.open_dir(["dev"])
    try:
        for name, (major, minor) in _DEVICES.items():
            try:
                os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=dev.fd)
                os.chmod(name, 0o666, dir_fd=dev.fd)  # mknod's mode is masked by the umask
            except PermissionError:
                # No CAP_MKNOD (a user namespace): bind the host's device instead.
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666,
                                 dir_fd=dev.fd))
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev.fd)
                try:
                    mount(f"/dev/{name}", f"/proc/self/fd/{fd}", None, MS_BIND)
                finally:
                    os.close(fd)
        for name, target in _DEV_LINKS.items():
            os.symlink(target, name, dir_fd=dev.fd)
        for name, mode in (("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o755)):
            os.mkdir(name, mode, dir_fd=dev.fd)
            os.chmod(name, mode, dir_fd=dev.fd)
    finally:
        dev.close()
    # A devpts instance of its own: the container's ptys are not the host's.
    # gid 5 (tty) owns the terminals, as on the host; not in a rootless container that maps no
    # such group (the kernel refuses an unmapped gid).
    tty_group = ",gid=5" if _gid_mapped(5) else ""
    _mount_at(root, "dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
              f"newinstance,ptmxmode=0666,mode=0620{tty_group}")
    _mount_at(root, "dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=1777,size=65536k")
    with contextlib.suppress(OSError):  # mqueue belongs to the new IPC namespace
        _mount_at(root, "dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _gid_mapped(gid: int) -> bool:
    try:
        ranges = [line.split() for line in Path("/proc/self/gid_map").read_text().splitlines()]
    except OSError:
        return True
    return any(int(r[0]) <= gid < int(r[0]) + int(r[2]) for r in ranges if len(r) == 3)


def _mask(root: ScopedRoot) -> None:
    for path in _MASKED:
        with _target(root, path, kind="any", create=False) as target:
            if target is None:
                continue
            if os.path.isdir(target):
                # An empty read-only tmpfs hides a directory.
                mount("tmpfs", target, "tmpfs", MS_RDONLY)
            else:
                mount("/dev/null", target, None, MS_BIND)
    for path in _READONLY:
        with _target(root, path, kind="any", create=False) as target:
            if target is None:
                continue
            # Bind onto itself, then remount the bind read-only.
            mount(target, target, None, MS_BIND | MS_REC)
        _remount_readonly(root, path)


def _remount_readonly(root: ScopedRoot, path: str) -> None:
    # A bind mount only becomes read-only by remounting it; open the path anew, so that the
    # handle is on the new mount, not on the directory it covers.
    with _target(root, path, kind="any", create=False) as target:
        if target is not None:
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _locked(target, True))


# statvfs(3) flags → mount(2) flags: the ones a remount must repeat.
_STATVFS_FLAGS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC,
                  os.ST_NOATIME: 0x400, os.ST_NODIRATIME: 0x800, os.ST_RELATIME: 0x200000}


def _locked(path: str, always: bool = False) -> int:
    """The flags of the mount at `path` that a remount must keep: in a user namespace, the kernel
    refuses a remount that would clear flags a more privileged namespace set (they are locked).
    As root, only for read-only remounts (`always`): elsewhere they are the runtime's to choose."""
    if not (always or in_user_namespace()):
        return 0
    flags = os.statvfs(path).f_flag
    return sum(ms for st, ms in _STATVFS_FLAGS.items() if flags & st)
