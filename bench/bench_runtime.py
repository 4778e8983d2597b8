#!/usr/bin/env python3
"""`pyreg run --rm IMAGE true` beside `podman run --rm` and `runc run` of an unpacked bundle, and
pyreg's layer unpacking beside `umoci unpack`, side by side in one run.

Two images, built here (there is no registry to pull from):

- "small": the runtime tests' busybox image (busybox-static and a layer of test files), in a fresh
  pyreg store; podman reads the same OCI layout into fresh storage of its own (`oci:` transport);
  runc runs the bundle `umoci unpack` made of it.
- "debian": ~50 MB of this Debian machine's own files (/usr/lib, /usr/share) in 4 gzip layers,
  the last with whiteouts of files and an opaque directory: the unpacking benchmark.

Runs, each `--repeat` times (median and best reported; the machine is shared, so single figures
move a lot):

- python -c pass: the interpreter's own start (with site, as the `pyreg` script starts), the floor
  of anything written in Python;
- pyreg warm: the image's layers already in the layer cache (`pyreg run` of a stored image: the
  runtime runs in the `pyreg` process itself, no second interpreter);
- pyreg cold: the layer cache emptied before each run (unpack + run);
- podman: `podman run --rm --pull never --network none --runtime runc --cgroup-manager cgroupfs`
  with this machine's ulimits (its image already in its storage, so warm too);
- runc: `runc run` of the bundle (crun refuses this machine's hybrid cgroups; tried first);
- unpack: pyreg's per-container copy (`unpack_layers`) and layer cache (`LayerCache.ensure`, the
  overlayfs lower directories), in-process, beside `umoci unpack` of the same layout.

Every run uses `--network none` (podman's default network needs a bridge and iptables).

    python bench/bench_runtime.py [--repeat 10] [--debian-mib 50] [--no-unpack]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyreg.oci.digest import Digest  # noqa: E402
from pyreg.runtime.layers import LayerCache, unpack_layers  # noqa: E402
from tests.runtime.conftest import IMAGE_CONFIG, image_layers  # noqa: E402
from tests.runtime.images import write_layout  # noqa: E402

REF = "docker.io/library/bench:latest"
DEBIAN_REF = "docker.io/library/debian-files:latest"
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def timed(fn: Callable[[], object], repeat: int, before: Callable[[], None] | None = None
          ) -> list[float]:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def run(argv: Sequence[str], **kw: object) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}...: exit {done.returncode}: {done.stderr.strip()}")


@contextlib.contextmanager
def unmounting(base: Path) -> Iterator[None]:
    """On the way out, unmount what is still mounted below `base` (podman's storage keeps its
    overlay directory mounted on itself), so that the directory can be removed."""
    try:
        yield
    finally:
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts]
        for point in reversed(points):
            if point == str(base) or point.startswith(f"{base}/"):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def pyreg_command() -> list[str]:
    """`pyreg` as the console script runs it."""
    return [sys.executable, "-m", "pyreg.client.cli"]


# -- the ~50 MB Debian-based image ----------------------------------------------------------------

def _files(top: Path, budget: int, skip: set[Path]) -> list[Path]:
    out: list[Path] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if path in skip or not (path.is_symlink() or path.is_file()) or not os.access(
                    path, os.R_OK) or st.st_size > 2 << 20:  # many files, none huge: a distro's
                continue
            out.append(path)
            total += st.st_size if not path.is_symlink() else 0
            if total >= budget:
                return out
    return out


def _layer(paths: Sequence[Path], extra: Sequence[tuple[tarfile.TarInfo, bytes | None]] = ()
           ) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for path in paths:
            # Parent directories first, as image builders write them.
            parts = path.relative_to("/").parts
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    tar.add(f"/{d}", arcname=d, recursive=False)
            tar.add(str(path), arcname=str(path.relative_to("/")), recursive=False)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _empty(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = 0o600, 1_700_000_000
    return info, b""


def debian_layers(mib: int) -> list[bytes]:
    budget = mib << 20
    skip: set[Path] = set()
    plan = [(Path("/usr/lib/x86_64-linux-gnu"), budget * 4 // 10),
            (Path("/usr/share"), budget * 3 // 10), (Path("/usr/lib/python3"), budget * 2 // 10)]
    groups = []
    for top, size in plan:
        files = _files(top if top.exists() else Path("/usr/lib"), size, skip)
        skip.update(files)
        groups.append(files)
    layers = [_layer(files) for files in groups]
    # The top layer: some files of each lower layer again (changed), whiteouts, an opaque dir.
    again = [f for g in groups for f in g[:: max(1, len(g) // 40)]]
    extra = []
    for group in groups:
        victim = group[len(group) // 2].relative_to("/")
        extra.append(_empty(f"{victim.parent}/.wh.{victim.name}"))
    opaque = groups[1][0].relative_to("/").parent
    extra.append(_empty(f"{opaque}/.wh..wh..opq"))
    layers.append(_layer(again[: budget // (1 << 20)], extra))
    return layers


# -- the benchmark ------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--debian-mib", type=int, default=50)
    parser.add_argument("--no-unpack", action="store_true",
                        help="only the run timings (skip the ~50 MB unpacking benchmark)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (containers, podman's storage, runc)", file=sys.stderr)
        return 2
    rows: list[tuple[str, list[float], str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp, unmounting(Path(tmp)):
        base = Path(tmp)
        store = base / "store"
        write_layout(store, image_layers(), IMAGE_CONFIG, tag=REF)
        env = {**os.environ, "PYREG_ROOT": str(store)}
        pyreg = [*pyreg_command(), "run", "--rm", "--network", "none", "--pull", "never",
                 "bench", "true"]
        run(pyreg, env=env)  # the layer cache warm, and the overlayfs probe made
        floor = [sys.executable, "-c", "pass"]
        rows.append(("python -c pass (the floor)", timed(lambda: run(floor, env=env), args.repeat),
                     "-"))
        rows.append(("pyreg run --rm (layers cached)",
                     timed(lambda: run(pyreg, env=env), args.repeat), "small"))
        layers = store / "runtime" / "layers"
        rows.append(("pyreg run --rm (cold: layer cache emptied)",
                     timed(lambda: run(pyreg, env=env), args.repeat,
                           lambda: shutil.rmtree(layers, ignore_errors=True)), "small"))
        podman = ["podman", "--root", str(base / "podman"), "--runroot", str(base / "podman-run"),
                  "--storage-driver", "overlay", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
        if shutil.which("podman"):
            done = subprocess.run([*podman, "pull", "-q", f"oci:{store}:{REF}"],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"podman pull: exit {done.returncode}: {done.stderr.strip()}")
            pulled = done.stdout.split()[-1]
            argv = [*podman, "run", "--rm", "--pull", "never", "--network", "none", *ULIMITS,
                    pulled, "true"]
            run(argv)
            rows.append(("podman run --rm", timed(lambda: run(argv), args.repeat), "small"))
        bundle = base / "bundle"
        run(["umoci", "unpack", "--image", f"{store}:{REF}", str(bundle)])
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["args"], config["process"]["terminal"] = ["true"], False
        (bundle / "config.json").write_text(json.dumps(config))
        counter = iter(range(1_000_000))
        for oci_runtime in ("crun", "runc"):
            if not shutil.which(oci_runtime):
                continue
            try:
                run([oci_runtime, "run", "--bundle", str(bundle), f"bench-{next(counter)}"])
            except RuntimeError as e:
                why = str(e).rsplit(": ", 1)[-1]
                rows.append((f"{oci_runtime} run (bundle)", [], f"small; fails here: {why}"))
                continue
            rows.append((f"{oci_runtime} run (bundle)", timed(lambda rt=oci_runtime: run(
                [rt, "run", "--bundle", str(bundle), f"bench-{next(counter)}"]), args.repeat),
                "small"))

        if args.no_unpack:
            print(report(rows, args.repeat))
            return 0
        debian = base / "debian"
        raw = debian_layers(args.debian_mib)
        write_layout(debian, raw, {"Cmd": ["sh"]}, tag=DEBIAN_REF)
        size = sum(len(r) for r in raw) >> 20
        gz = sum(p.stat().st_size for p in (debian / "blobs" / "sha256").iterdir()) >> 20
        blobs = []
        manifest = json.loads((debian / "index.json").read_text())["manifests"][0]
        doc = json.loads((debian / "blobs" / "sha256" / manifest["digest"][7:]).read_bytes())
        for desc, layer in zip(doc["layers"], raw, strict=True):
            digest = Digest.parse(desc["digest"])
            blobs.append((debian / "blobs" / "sha256" / digest.encoded, digest,
                          Digest.from_bytes(layer)))
        out = base / "unpacked"
        label = f"debian, {len(raw)} layers, {size} MiB ({gz} MiB gzip)"
        reps = max(3, args.repeat // 3)

        def fresh() -> None:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()

        rows.append(("pyreg unpack: per-container copy", timed(
            lambda: unpack_layers(out / "rootfs", blobs), reps, fresh), label))
        rows.append(("pyreg unpack: layer cache (overlayfs lowers)", timed(
            lambda: LayerCache(out / "layers").ensure(blobs), reps, fresh), label))
        rows.append(("umoci unpack", timed(lambda: run(
            ["umoci", "unpack", "--image", f"{debian}:{DEBIAN_REF}", str(out / "bundle")]),
            reps, fresh), label))
    print(report(rows, args.repeat))
    return 0


def report(rows: list[tuple[str, list[float], str]], repeat: int) -> str:
    load = os.getloadavg()[0]
    lines = [f"# Runtime benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", "",
             f"{os.cpu_count()} CPUs, load average {load:.1f} at the end (a shared machine); "
             "median and best of each run's repeats, seconds.", "",
             "| what | image | runs | median s | best s |", "| --- | --- | --- | --- | --- |"]
    for name, times, image in rows:
        if not times:
            lines.append(f"| {name} | {image} | 0 | - | - |")
            continue
        lines.append(f"| {name} | {image} | {len(times)} | {statistics.median(times):.3f} | "
                     f"{min(times):.3f} |")
    medians = {name: statistics.median(t) for name, t, _ in rows if t}
    warm, podman = medians.get("pyreg run --rm (layers cached)"), medians.get("podman run --rm")
    if warm and podman:
        lines += ["", f"pyreg run (warm) / podman run: {warm / podman:.2f} (target: at most 0.5)"]
    text = "\n".join(lines) + "\n"
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"runtime-{dt.datetime.now():%Y%m%d-%H%M%S}.md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
