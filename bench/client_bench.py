#!/usr/bin/env python3
"""`pyreg pull`/`pyreg push` against `skopeo copy` and `podman pull`/`podman push`, side by side.

One registry (pyreg's by default, `--registry distribution` for Debian's docker-registry) on a fresh
root in one temporary directory. Two images, built once as OCI layouts:

- "multi": ~250 MB in 5 gzip layers;
- "big": one 1 GiB gzip layer.

Layers are random bytes in gzip *stored* blocks (level 0): valid gzip that costs no CPU to make,
and no tool recompresses them. For each tool and image, a push to a repository of its own (so
nothing is deduplicated), then a pull of that image into an empty destination: pyreg into a fresh
store, skopeo into a fresh OCI layout, podman into fresh storage (podman also unpacks layers, which
is part of what `podman pull` costs). Wall time of the command, MiB/s of the image's blob bytes, and
the CPU seconds (user + system) of the command and its children: on 2 shared cores the client's
CPU is taken from the registry's.

    python bench/client_bench.py [--multi-mib 250] [--big-mib 1024] [--tools pyreg,skopeo,podman]
                                 [--repeat 3] [--baseline DIR --tools pyreg,pyreg-baseline,skopeo]

`--repeat` runs rounds, reversing the tool order every other round, and reports each figure's best
and its spread (max - min): on a shared machine single figures move by ±50%. `--baseline` measures
another copy of the client side by side with this one (before/after tables from one run). `sync`
runs, untimed, before every timed command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import RegistryServer, start_distribution, start_pyreg  # noqa: E402

BLOCK = 16 << 20
PYREG = [sys.executable, "-m", "pyreg.client.cli"]


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(BLOCK):
            h.update(chunk)
    return "sha256:" + h.hexdigest(), path.stat().st_size


class HashingWriter:
    """Hashes what passes through: the diff_id is the digest of the uncompressed tar."""

    def __init__(self, inner: gzip.GzipFile) -> None:
        self.inner, self.hash = inner, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.inner.write(data)


def write_layer(dest: Path, size: int, seed: bytes) -> str:
    """A gzip (stored blocks) of a tar with one file of `size` pseudo-random bytes; its diff_id."""
    block = os.urandom(BLOCK)
    with dest.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=0, mtime=0) as gz:
        hashing = HashingWriter(gz)
        _write_tar(hashing, size, seed, block)
    return "sha256:" + hashing.hash.hexdigest()


def _write_tar(out: HashingWriter, size: int, seed: bytes, block: bytes) -> None:
    with tarfile.open(fileobj=out, mode="w|") as tar:  # type: ignore[call-overload]
        info = tarfile.TarInfo("data")
        info.size = size

        class Reader:
            left = size
            first = True

            def read(self, n: int = -1) -> bytes:
                take = min(self.left, BLOCK if n < 0 else n)
                if take <= 0:
                    return b""
                out = (seed + block)[:take] if self.first else block[:take]
                self.first = False
                self.left -= take
                return out

        tar.addfile(info, Reader())  # type: ignore[arg-type, unused-ignore]


def build_layout(root: Path, layer_sizes: list[int]) -> int:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layers, diff_ids, total = [], [], 0
    for i, size in enumerate(layer_sizes):
        tmp = root / f"layer{i}"
        diff_id = write_layer(tmp, size, f"{root.name}-{i}-{time.time_ns()}".encode())
        digest, length = sha256_file(tmp)
        tmp.rename(blobs / digest.split(":")[1])
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": length})
        diff_ids.append(diff_id)
        total += length
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    (blobs / config_digest.split(":")[1]).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)},
                           "layers": layers}).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    (blobs / manifest_digest.split(":")[1]).write_bytes(manifest)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "v1",
                                               "io.containerd.image.name": "bench.local/image:v1"}}]}))
    return total + len(config)


class Timing(NamedTuple):
    wall: float
    cpu: float  # user + system seconds of the command and its children


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str] | None = None) -> Timing:
    # Untimed: write back what earlier steps left dirty in the page cache, so that no tool pays
    # for another's writes (pyreg's fsyncs would wait for them; skopeo and podman do not sync).
    os.sync()
    cpu = _children_cpu()
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")
    return Timing(elapsed, _children_cpu() - cpu)


class Tools:
    def __init__(self, work: Path, registry: RegistryServer, pyreg_path: Path | None = None) -> None:
        self.work, self.host = work, registry.host
        (work / "home").mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.env.update({"HOME": str(work / "home"),
                         "PYREG_CONFIG": str(work / "home" / "none.toml")})
        if pyreg_path is not None:
            # Another copy of the client (the baseline): its `pyreg` package comes first.
            self.env["PYTHONPATH"] = str(pyreg_path)
        base = Path(tempfile.mkdtemp(prefix="pyreg-bench-podman-"))  # podman wants a short path
        self.podman_base = base
        self.podman_args = ["podman", "--root", str(base / "root"), "--runroot", str(base / "run"),
                            "--tmpdir", str(base / "tmp"), "--storage-driver", "vfs", "--events-backend", "file"]

    def push(self, tool: str, layout: Path, ref: str) -> Timing:
        if tool.startswith("pyreg"):
            store = self.work / "pyreg-push-store"
            subprocess.run([*PYREG, "--root", str(store), "load", "-q", "-i", str(layout)], check=True, env=self.env)
            subprocess.run([*PYREG, "--root", str(store), "tag", "bench.local/image:v1", ref], check=True, env=self.env)
            return timed([*PYREG, "--root", str(store), "push", "-q", ref], self.env)
        if tool == "skopeo":
            return timed(["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
                          f"oci:{layout}:v1", f"docker://{ref}"], self.env)
        timed([*self.podman_args, "pull", "-q", f"oci:{layout}:v1"], self.env)  # set-up, not measured
        image_id = subprocess.run([*self.podman_args, "images", "-q"], check=True, env=self.env,
                                  capture_output=True, text=True).stdout.split()[0]
        subprocess.run([*self.podman_args, "tag", image_id, ref], check=True, env=self.env)
        return timed([*self.podman_args, "push", "-q", "--tls-verify=false", ref], self.env)

    def pull(self, tool: str, ref: str) -> Timing:
        dest = Path(tempfile.mkdtemp(dir=self.work, prefix=f"pull-{tool}-"))
        try:
            if tool.startswith("pyreg"):
                return timed([*PYREG, "--root", str(dest), "pull", "-q", "--platform", "linux/amd64", ref], self.env)
            if tool == "skopeo":
                return timed(["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
                              f"docker://{ref}", f"oci:{dest}:v1"], self.env)
            subprocess.run([*self.podman_args, "rmi", "-a", "-f"], env=self.env, capture_output=True, check=False)
            return timed([*self.podman_args, "pull", "-q", "--tls-verify=false", ref], self.env)
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    def close(self) -> None:
        subprocess.run([*self.podman_args, "system", "reset", "-f"], env=self.env, capture_output=True, check=False)
        shutil.rmtree(self.podman_base, ignore_errors=True)


def _stats(values: list[Timing]) -> tuple[float, float, float]:
    """Best wall time, its spread (max - min), and the least CPU time."""
    walls = [v.wall for v in values]
    return min(walls), max(walls) - min(walls), min(v.cpu for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--multi-mib", type=int, default=250)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--tools", default="pyreg,skopeo,podman",
                        help="any of pyreg, pyreg-baseline (needs --baseline), skopeo, podman")
    parser.add_argument("--registry", choices=["pyreg", "distribution"], default="pyreg")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds (tool order reversed every other round); the best and the spread are reported")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a directory holding another `pyreg` package, measured as pyreg-baseline "
                             "(e.g. `git archive <commit> client oci | tar -x -C DIR/pyreg; touch DIR/pyreg/__init__.py`)")
    parser.add_argument("--label", default="", help="added to the report's title and file name")
    args = parser.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    for tool in tools:
        if tool == "pyreg-baseline" and args.baseline is None:
            raise SystemExit("pyreg-baseline needs --baseline DIR")
        if not tool.startswith("pyreg") and shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    # An installed pyreg has its bytecode compiled (pip does it at install); an editable checkout
    # under PYTHONDONTWRITEBYTECODE would recompile every module on every command. Compile it once
    # so that the figures are an installed pyreg's.
    subprocess.run([sys.executable, "-m", "compileall", "-q",
                    *(str(ROOT / d) for d in ("oci", "client", "registry", "runtime"))],
                   check=True, stdout=subprocess.DEVNULL)
    # Stopped by a signal: still stop the registries and remove the temporary directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mib = 1 << 20
    times: dict[tuple[str, str], tuple[list[Timing], list[Timing]]] = {}
    with tempfile.TemporaryDirectory(prefix="pyreg-client-bench-") as tmp:
        work = Path(tmp)
        print("building images…", file=sys.stderr)
        images = {
            "multi": (work / "multi", [args.multi_mib * mib // 5] * 5),
            "big": (work / "big", [args.big_mib * mib]),
        }
        sizes = {name: build_layout(path, layers) for name, (path, layers) in images.items()}
        start = start_pyreg if args.registry == "pyreg" else start_distribution
        for rep in range(args.repeat):
            for tool in tools if rep % 2 == 0 else tools[::-1]:
                # A registry, a home and a store per tool and round: nothing known from before
                # (skopeo's blob-info cache, pyreg's sources) turns an upload into a mount.
                run_dir = work / f"{tool}-{rep}"
                run_dir.mkdir()
                registry = start(run_dir / "registry")
                runner = Tools(run_dir, registry, args.baseline if tool == "pyreg-baseline" else None)
                try:
                    for name, (layout, _) in images.items():
                        ref = f"{registry.host}/bench/{tool}-{name}:v1"
                        push_s = runner.push(tool, layout, ref)
                        pull_s = runner.pull(tool, ref)
                        pushes, pulls = times.setdefault((name, tool), ([], []))
                        pushes.append(push_s)
                        pulls.append(pull_s)
                        print(f"round {rep + 1} {name} {tool}: push {push_s.wall:.2f}s ({push_s.cpu:.2f} CPU-s) "
                              f"pull {pull_s.wall:.2f}s ({pull_s.cpu:.2f} CPU-s)", file=sys.stderr)
                finally:
                    runner.close()
                    registry.stop()
                    shutil.rmtree(run_dir, ignore_errors=True)
    label = f", {args.label}" if args.label else ""
    lines = [f"# pyreg client vs skopeo and podman ({dt.date.today()}, registry: {args.registry}, "
             f"best of {args.repeat}, ± = max - min{label})", "",
             "| image | size | tool | push s | push MiB/s | push CPU-s | pull s | pull MiB/s | pull CPU-s |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name in images:
        for tool in tools:
            size = sizes[name]
            (push_wall, push_spread, push_cpu), (pull_wall, pull_spread, pull_cpu) = (
                _stats(v) for v in times[(name, tool)])
            lines.append(f"| {name} | {size / mib:.0f} MiB | {tool} | {push_wall:.2f} ± {push_spread:.2f} "
                         f"| {size / mib / push_wall:.0f} | {push_cpu:.2f} | {pull_wall:.2f} ± {pull_spread:.2f} "
                         f"| {size / mib / pull_wall:.0f} | {pull_cpu:.2f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"client-{dt.datetime.now():%Y%m%d-%H%M%S}{'-' + args.label if args.label else ''}.md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
