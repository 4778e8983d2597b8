"""A container's root filesystem: cached layers under overlayfs, or a per-container copy.

    <container dir>/rootfs/   the root the container sees (overlayfs' mount point, or the copy)
    <container dir>/upper/    overlayfs' upperdir: the container's writable layer
    <container dir>/work/     overlayfs' workdir

The overlay is mounted by the container's first process inside its own mount namespace (see
`mounts.py`), so it disappears with the container whatever way it ends: the host's mount table is
never touched. `PYREG_SNAPSHOTTER=overlay|copy` forces a choice; by default overlayfs is used when
the kernel lets this process mount it over the runtime root's filesystem.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import NamedTuple

from pyreg.runtime import SetupError, syscalls
from pyreg.runtime.image import Image
from pyreg.runtime.layers import LayerCache, unpack_layers

# overlayfs takes its options in one page: a longer lowerdir list falls back to a copy.
_MAX_OPTIONS = 4000


class RootfsPlan(NamedTuple):
    path: Path
    overlay_options: str | None  # None: `path` already holds a private copy


def overlay_options(lowers_top_first: list[Path], upper: Path, work: Path) -> str:
    lower = ":".join(str(p) for p in lowers_top_first)
    return f"lowerdir={lower},upperdir={upper},workdir={work}"


def prepare_rootfs(image: Image, container_dir: Path, runtime_root: Path) -> RootfsPlan:
    target = container_dir / "rootfs"
    mode = os.environ.get("PYREG_SNAPSHOTTER", "auto")
    if mode not in ("auto", "overlay", "copy"):
        raise SetupError(f"PYREG_SNAPSHOTTER must be overlay, copy or auto, not {mode!r}")
    blobs = image.layer_blobs()
    if mode != "copy" and (mode == "overlay" or overlay_works(runtime_root)):
        lowers = LayerCache(runtime_root / "layers").ensure(blobs)
        upper, work = container_dir / "upper", container_dir / "work"
        if not lowers:
            lowers = [runtime_root / "empty"]  # overlayfs needs one lower directory
        for d in (target, upper, work, *lowers[:1]):
            d.mkdir(parents=True, exist_ok=True)
        options = overlay_options(lowers[::-1], upper, work)
        if len(options) <= _MAX_OPTIONS:
            os.chmod(upper, 0o755)
            return RootfsPlan(target, options)
        for d in (target, upper, work):
            d.rmdir()
    unpack_layers(target, blobs)
    return RootfsPlan(target, None)


_probed: dict[Path, bool] = {}


def overlay_works(runtime_root: Path) -> bool:
    """Whether overlayfs can be mounted over directories of the runtime root: probed once per
    kernel, the answer kept in `<runtime root>/overlay.probe` (a probe costs a fork and a mount,
    the better part of a container's start)."""
    if runtime_root in _probed:
        return _probed[runtime_root]
    if os.geteuid() != 0:
        return False  # rootless: the per-container copy (see userns.py)
    marker = runtime_root / "overlay.probe"
    kernel = os.uname().release
    try:
        kept_kernel, _, answer = marker.read_text().partition(" ")
        if kept_kernel == kernel and answer in ("yes", "no"):
            _probed[runtime_root] = answer == "yes"
            return answer == "yes"
    except OSError:
        pass
    ok = _probe(runtime_root)
    with contextlib.suppress(OSError):
        tmp = marker.with_name(f".{marker.name}.{os.getpid()}")
        tmp.write_text(f"{kernel} {'yes' if ok else 'no'}")
        os.replace(tmp, marker)
    _probed[runtime_root] = ok
    return ok


def _probe(runtime_root: Path) -> bool:
    ok = False
    if "\toverlay\n" in Path("/proc/filesystems").read_text():
        import tempfile  # once per kernel

        runtime_root.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=".probe-", dir=runtime_root))
        try:
            for d in ("lower", "upper", "work", "merged"):
                (probe / d).mkdir()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                code = 1
                with contextlib.suppress(BaseException):
                    # A private mount namespace: the probe mount vanishes with this process.
                    syscalls.unshare(syscalls.CLONE_NEWNS)
                    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
                    syscalls.mount("overlay", str(probe / "merged"), "overlay", 0,
                                   overlay_options([probe / "lower"], probe / "upper",
                                                   probe / "work"))
                    code = 0
                os._exit(code)
            ok = os.waitpid(pid, 0)[1] == 0
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    return ok
