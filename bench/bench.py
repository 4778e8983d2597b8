#!/usr/bin/env python3
"""pyreg vs CNCF distribution, side by side on this machine, in one run.

Both servers (pyreg and Debian's `docker-registry`) run at once, each on its own fresh filesystem
root inside one temporary directory (so both use the same disk). Every step runs on one server, then
on the other (the order is reversed on the next repeat), and each figure is the best of `--repeat`:

1. blob upload, single request: POST /v2/<repo>/blobs/uploads/, then PUT <location>?digest= with the
   whole body streamed from a generator;
2. blob upload in chunks: POST, PATCH with `Content-Range: start-end` and `Content-Length` per chunk,
   final PUT ?digest=;
3. blob download: GET /v2/<repo>/blobs/<digest>, data discarded by a raw client (`curl -o /dev/null`,
   or a raw-socket reader with `--download-client raw`), then optionally a second GET through a
   Python reader that verifies size and sha256 (informational: sha256 in the client runs at about
   the speed being measured, so it is not the headline figure);
4. manifest GET by tag with `wrk` at 1, 16 and 64 connections (requests/s, latency p50/p99);
5. the server's peak RSS over the whole run (VmRSS of the server process tree polled every 20 ms,
   and VmHWM read before shutdown).

Blob content: one 16 MiB block of os.urandom made once, repeated; the last piece of each blob starts
with a distinct tag, so every upload is a new digest. Digests are precomputed by streaming (the hash
of the common prefix is computed once and copied), and the client never holds more than two blocks.

Throughput is in MiB/s (2^20 bytes per second). Output: a Markdown table, printed and written to
bench/results/<date>.md. Run `python bench/bench.py --help` for the options.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB
BLOCK = 16 * MiB
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REPO = "bench/app"
TAG = "latest"
HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
TIMEOUT = 300.0  # seconds, any single HTTP exchange


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# Payload: a deterministic, streamable blob


class Payload:
    """`size` bytes made of one random block repeated; variant `i` differs only in its last piece."""

    def __init__(self, size: int, block: int = BLOCK) -> None:
        self.size = size
        self.block_size = min(block, size)
        self.block = os.urandom(self.block_size)
        self.pieces = -(-size // self.block_size)
        self.last_len = size - (self.pieces - 1) * self.block_size
        prefix = hashlib.sha256()
        view = memoryview(self.block)
        for _ in range(self.pieces - 1):
            prefix.update(view)
        self._prefix = prefix
        self._last: dict[int, bytes] = {}

    def last_piece(self, variant: int) -> bytes:
        if variant not in self._last:
            self._last = {
                variant: self._make_last(variant)
            }  # keep one: at most two blocks in memory
        return self._last[variant]

    def _make_last(self, variant: int) -> bytes:
        tag = f"pyreg-bench variant {variant:08d}\n".encode()[: self.last_len]
        return tag + self.block[len(tag) : self.last_len]

    def digest(self, variant: int) -> str:
        h = self._prefix.copy()
        h.update(self.last_piece(variant))
        return "sha256:" + h.hexdigest()

    def iter_range(self, variant: int, start: int, end: int) -> Iterator[memoryview]:
        """Bytes [start, end) of variant `variant`, as views of at most one block each."""
        last = memoryview(self.last_piece(variant))
        block = memoryview(self.block)
        off = start
        while off < end:
            index, inner = divmod(off, self.block_size)
            piece = last if index == self.pieces - 1 else block
            n = min(len(piece) - inner, end - off)
            yield piece[inner : inner + n]
            off += n


# --------------------------------------------------------------------------------------------------
# Process tree accounting: RSS and CPU time


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / tick


class RSSMonitor(threading.Thread):
    """Polls VmRSS of a process tree; keeps the peak of the sum, and each process's VmHWM."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.hwm_kib: dict[int, int] = {}
        self.nprocs = 1
        self._stop_event = threading.Event()

    def run(self) -> None:
        tree_refresh = 0.0
        pids = [self.pid]
        while not self._stop_event.is_set():
            now = time.monotonic()
            if now >= tree_refresh:
                pids = process_tree(self.pid)
                self.nprocs = max(self.nprocs, len(pids))
                tree_refresh = now + 0.5
            total = sum(_status_kib(p, "VmRSS:") for p in pids)
            self.peak_kib = max(self.peak_kib, total)
            self._stop_event.wait(self.interval)

    def read_hwm(self) -> None:
        for p in process_tree(self.pid):
            self.hwm_kib[p] = max(self.hwm_kib.get(p, 0), _status_kib(p, "VmHWM:"))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2)

    @property
    def peak_mib(self) -> float:
        # with one process VmHWM is exact; with several, the sampled sum of the tree is the figure
        hwm = max(self.hwm_kib.values(), default=0) if len(self.hwm_kib) <= 1 else 0
        return max(self.peak_kib, hwm) / 1024


# --------------------------------------------------------------------------------------------------
# Servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, root: Path, addr: str, extra: str = "") -> None:
    path.write_text(
        f"""version: 0.1
log:
  level: warn
{extra}http:
  addr: {addr}
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
"""
    )


@dataclass
class Server:
    name: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    root: Path
    monitor: RSSMonitor = field(init=False)

    def __post_init__(self) -> None:
        self.monitor = RSSMonitor(self.proc.pid)
        self.monitor.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.monitor.read_hwm()
        self.monitor.stop()
        if self.proc.poll() is not None:
            return
        # the server runs in its own session: signal exactly that process group
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


def wait_ready(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        try:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=2)
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
            conn.close()
            if status in (200, 401):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{server.name} did not answer /v2/ within {timeout}s:\n{server.log_tail()}")


def start_server(kind: str, workdir: Path, workers: int, dist_accesslog: bool) -> Server:
    port = free_port()
    addr = f"127.0.0.1:{port}"
    root = workdir / f"{kind}-root"
    root.mkdir()
    config = workdir / f"{kind}.yml"
    log = workdir / f"{kind}.log"
    env = dict(os.environ)
    if kind == "pyreg":
        write_config(config, root, addr)
        cmd = [sys.executable, "-m", "pyreg.registry.cli", "serve", str(config), "--addr", addr]
        if workers != 1:
            cmd += ["--workers", str(workers)]
    else:
        extra = "" if dist_accesslog else "  accesslog:\n    disabled: true\n"
        write_config(config, root, addr, extra)
        binary = shutil.which("docker-registry")
        if binary is None:
            raise BenchError("docker-registry is not installed (apt-get install docker-registry)")
        cmd = [binary, "serve", str(config)]
        env.pop("AWS_CA_BUNDLE", None)
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=workdir,
        )
    server = Server(kind, "127.0.0.1", port, proc, log, root)
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


# --------------------------------------------------------------------------------------------------
# A lean HTTP/1.1 client (http.client: bodies go to sock.sendall block by block)


class Client:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)

    def request(
        self, method: str, target: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        try:
            self.conn.request(method, target, body=body, headers=headers or {})  # type: ignore[arg-type]
            resp = self.conn.getresponse()
            data = resp.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            raise
        return resp.status, resp.headers, data

    def close(self) -> None:
        self.conn.close()


def expect(status: int, wanted: int, what: str, body: bytes) -> None:
    if status != wanted:
        raise BenchError(f"{what}: HTTP {status}, expected {wanted}: {body[:500]!r}")


def location_target(location: str | None, base: str) -> str:
    if not location:
        raise BenchError("upload response without Location")
    parts = urllib.parse.urlsplit(urllib.parse.urljoin(base + "/", location))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_query(target: str, **params: str) -> str:
    sep = "&" if "?" in target else "?"
    return target + sep + urllib.parse.urlencode(params)


def start_upload(c: Client, base: str) -> str:
    status, headers, body = c.request(
        "POST", f"/v2/{REPO}/blobs/uploads/", headers={"Content-Length": "0"}
    )
    expect(status, 202, "POST upload", body)
    return location_target(headers.get("Location"), base)


def upload_single(c: Client, base: str, payload: Payload, variant: int) -> str:
    digest = payload.digest(variant)
    target = start_upload(c, base)
    status, _, body = c.request(
        "PUT",
        with_query(target, digest=digest),
        body=payload.iter_range(variant, 0, payload.size),
        headers={"Content-Length": str(payload.size), "Content-Type": "application/octet-stream"},
    )
    expect(status, 201, "PUT monolithic", body)
    return digest


def upload_chunked(c: Client, base: str, payload: Payload, variant: int, chunk: int) -> str:
    digest = payload.digest(variant)
    target = start_upload(c, base)
    for start in range(0, payload.size, chunk):
        end = min(start + chunk, payload.size)
        status, headers, body = c.request(
            "PATCH",
            target,
            body=payload.iter_range(variant, start, end),
            headers={
                "Content-Range": f"{start}-{end - 1}",
                "Content-Length": str(end - start),
                "Content-Type": "application/octet-stream",
            },
        )
        expect(status, 202, f"PATCH {start}-{end - 1}", body)
        target = location_target(headers.get("Location"), base)
    status, _, body = c.request(
        "PUT", with_query(target, digest=digest), headers={"Content-Length": "0"}
    )
    expect(status, 201, "PUT final", body)
    return digest


def check_blob(c: Client, digest: str, size: int) -> None:
    status, headers, body = c.request("HEAD", f"/v2/{REPO}/blobs/{digest}")
    expect(status, 200, f"HEAD blob {digest}", body)
    if int(headers.get("Content-Length", -1)) != size:
        raise BenchError(
            f"HEAD blob: Content-Length {headers.get('Content-Length')}, expected {size}"
        )


def download_curl(url: str, size: int) -> float:
    curl = shutil.which("curl")
    if curl is None:
        raise BenchError(
            "curl is not installed (apt-get install curl), or use --download-client raw"
        )
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            curl,
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            str(int(TIMEOUT)),
            "-w",
            "%{http_code} %{size_download}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 10,
    )
    elapsed = time.perf_counter() - t0
    code, got = out.stdout.split()
    if code != "200" or int(got) != size:
        raise BenchError(f"curl GET: HTTP {code}, {got} bytes, expected {size}: {out.stderr}")
    return elapsed


def download_raw(host: str, port: int, target: str, size: int, verify: str | None = None) -> float:
    """GET over a bare socket with recv_into a 4 MiB buffer; optionally sha256 what arrives."""
    buf = bytearray(4 * MiB)
    view = memoryview(buf)
    h = hashlib.sha256() if verify else None
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=TIMEOUT) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)
        s.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            n = s.recv_into(view)
            if n == 0:
                raise BenchError("connection closed before the response headers")
            head += bytes(view[:n])
        head, _, rest = head.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        if status_line.split()[1] != "200":
            raise BenchError(f"GET blob: {status_line}")
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            raise BenchError("GET blob answered with chunked encoding; expected Content-Length")
        length = int(hdrs["content-length"])
        got = len(rest)
        if h:
            h.update(rest)
        while got < length:
            n = s.recv_into(view)
            if n == 0:
                break
            if h:
                h.update(view[:n])
            got += n
    elapsed = time.perf_counter() - t0
    if got != size or length != size:
        raise BenchError(f"GET blob: {got} bytes of {length}, expected {size}")
    if h and verify and "sha256:" + h.hexdigest() != verify:
        raise BenchError(
            f"GET blob: digest mismatch, got sha256:{h.hexdigest()}, expected {verify}"
        )
    return elapsed


# --------------------------------------------------------------------------------------------------
# A small OCI image for the manifest benchmark


def push_image(c: Client, base: str) -> bytes:
    layer = os.urandom(4096)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()],
            },
            "config": {"Cmd": ["/bin/sh"]},
        }
    ).encode()
    descriptors = []
    for data, media_type in ((config, OCI_CONFIG), (layer, OCI_LAYER)):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = start_upload(c, base)
        status, _, body = c.request(
            "PUT",
            with_query(target, digest=digest),
            body=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        expect(status, 201, f"PUT {media_type}", body)
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(data)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptors[0],
            "layers": descriptors[1:],
            "annotations": {"org.opencontainers.image.title": "pyreg bench"},
        },
        indent=3,
    ).encode()
    status, _, body = c.request(
        "PUT", f"/v2/{REPO}/manifests/{TAG}", body=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    expect(status, 201, "PUT manifest", body)
    status, headers, body = c.request(
        "GET", f"/v2/{REPO}/manifests/{TAG}", headers={"Accept": OCI_MANIFEST}
    )
    expect(status, 200, "GET manifest", body)
    if body != manifest or headers.get("Content-Type") != OCI_MANIFEST:
        raise BenchError(f"GET manifest: wrong bytes or Content-Type {headers.get('Content-Type')}")
    return manifest


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise BenchError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def run_wrk(url: str, connections: int, duration: float) -> WrkResult:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    threads = min(2, connections)
    out = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--timeout",
            "5s",
            "--latency",
            "-H",
            f"Accept: {OCI_MANIFEST}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    )
    text = out.stdout
    if out.returncode != 0:
        raise BenchError(f"wrk failed: {out.stderr}{text}")
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
        p50 = _ms(re.search(r"\s50%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
        p99 = _ms(re.search(r"\s99%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
        requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    except AttributeError as e:
        raise BenchError(f"cannot parse wrk output:\n{text}") from e
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    return WrkResult(rps, p50, p99, requests, errors)


# --------------------------------------------------------------------------------------------------
# Measurements: every step runs on each server in turn (order alternating between repeats), so that
# background load on a shared machine hits both alike; each figure is the best of the repeats.


@dataclass
class Phase:
    name: str
    server: str
    rep: int
    wall: float
    server_cpu: float
    client_cpu: float
    other_cpu: float  # busy CPU of every other process on the machine during the phase


@dataclass
class Results:
    samples: dict[str, list[float]] = field(default_factory=dict)
    wrk: dict[int, list[WrkResult]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failed: bool = False

    def add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)

    def metrics(self) -> dict[str, float]:
        # best of the repeats: highest throughput, lowest CPU cost
        out = {k: min(v) if k.endswith("_cpu") else max(v) for k, v in self.samples.items()}
        for conns, runs in self.wrk.items():
            best = max(runs, key=lambda w: w.rps)
            out[f"manifest_{conns}"] = best.rps
            out[f"manifest_{conns}_p50"] = best.p50_ms
            out[f"manifest_{conns}_p99"] = best.p99_ms
        return out


def _system_busy() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _client_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class PhaseTimer:
    """Times a phase: wall clock, server CPU, client CPU, everybody else's CPU.

    Dirty pages are flushed (untimed) first: distribution does not fsync, so otherwise the kernel
    writes its gigabytes back during the next phase and charges that to whoever runs then.
    """

    profile_dir: Path | None = None  # --profile: py-spy records pyreg during each phase

    def __init__(self, server: Server, phases: list[Phase], name: str, rep: int) -> None:
        self.server, self.phases, self.name, self.rep = server, phases, name, rep
        self.spy: subprocess.Popen[bytes] | None = None

    def _start_profiler(self) -> None:
        if self.profile_dir is None or self.server.name != "pyreg":
            return
        spy = shutil.which("py-spy")
        if spy is None:
            raise BenchError("--profile needs py-spy (pip install py-spy)")
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
        out = self.profile_dir / f"{slug}-rep{self.rep + 1}.txt"
        cmd = [spy, "record", "--pid", str(self.server.proc.pid), "--format", "raw", "--threads"]
        cmd += ["--subprocesses", "--rate", "200", "--output", str(out)]
        self.spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # let it attach

    def _stop_profiler(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.spy.wait(30)
            except subprocess.TimeoutExpired:
                self.spy.kill()
                self.spy.wait()

    def __enter__(self) -> PhaseTimer:
        os.sync()
        self._start_profiler()
        self.pids = self.server.pids()
        self.s0 = cpu_seconds(self.pids)
        self.c0 = _client_cpu()
        self.b0 = _system_busy()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.server_cpu = server = cpu_seconds(self.pids) - self.s0
        client = _client_cpu() - self.c0
        other = _system_busy() - self.b0 - server - client
        self._stop_profiler()
        self.phases.append(
            Phase(self.name, self.server.name, self.rep, self.wall, server, client, max(other, 0))
        )


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


Step = Callable[["Server", Results, int], None]


class Bench:
    def __init__(self, args: argparse.Namespace, payload: Payload) -> None:
        self.args = args
        self.payload = payload
        self.phases: list[Phase] = []
        self.variant = 0
        self.digest: dict[str, str] = {}  # server -> a blob it holds, for the download

    def _next_variant(self) -> int:
        self.variant += 1
        return self.variant

    def steps(self) -> list[tuple[str, Step]]:
        out: list[tuple[str, Step]] = [
            ("upload_single", self.upload_single),
            ("upload_chunked", self.upload_chunked),
            ("download", self.download),
        ]
        if self.args.verify:
            out.append(("download_verified", self.download_verified))
        out += [
            (f"manifest_{c}", functools.partial(self.manifest, conns=c))
            for c in self.args.connections
        ]
        return out

    def upload_single(self, server: Server, res: Results, rep: int) -> None:
        p, mib = self.payload, self.payload.size / MiB
        log(f"{server.name}: upload {mib:g} MiB, single PUT")
        c = Client(server.host, server.port)
        try:
            with PhaseTimer(server, self.phases, "upload single PUT", rep) as t:
                digest = upload_single(c, server.url, p, self._next_variant())
            check_blob(c, digest, p.size)
        finally:
            c.close()
        self.digest[server.name] = digest
        res.add("upload_single", mib / t.wall)
        res.add("upload_single_cpu", t.server_cpu * GiB / self.payload.size)

    def upload_chunked(self, server: Server, res: Results, rep: int) -> None:
        p, mib, chunk = self.payload, self.payload.size / MiB, self.args.chunk
        log(f"{server.name}: upload {mib:g} MiB, {chunk / MiB:g} MiB chunks")
        c = Client(server.host, server.port)
        try:
            with PhaseTimer(server, self.phases, f"upload {chunk / MiB:g} MiB chunks", rep) as t:
                digest = upload_chunked(c, server.url, p, self._next_variant(), chunk)
            check_blob(c, digest, p.size)
        finally:
            c.close()
        res.add("upload_chunked", mib / t.wall)
        res.add("upload_chunked_cpu", t.server_cpu * GiB / self.payload.size)

    def download(self, server: Server, res: Results, rep: int) -> None:
        p, mib, how = self.payload, self.payload.size / MiB, self.args.download_client
        target = f"/v2/{REPO}/blobs/{self.digest[server.name]}"
        log(f"{server.name}: download {mib:g} MiB ({how})")
        with PhaseTimer(server, self.phases, f"download ({how})", rep) as t:
            if how == "curl":
                download_curl(server.url + target, p.size)
            else:
                download_raw(server.host, server.port, target, p.size)
        res.add("download", mib / t.wall)
        res.add("download_cpu", t.server_cpu * GiB / self.payload.size)

    def download_verified(self, server: Server, res: Results, rep: int) -> None:
        p, mib, digest = self.payload, self.payload.size / MiB, self.digest[server.name]
        log(f"{server.name}: download {mib:g} MiB, verifying sha256 in the client")
        with PhaseTimer(server, self.phases, "download (python, sha256 verified)", rep) as t:
            download_raw(
                server.host, server.port, f"/v2/{REPO}/blobs/{digest}", p.size, verify=digest
            )
        res.add("download_verified", mib / t.wall)

    def manifest(self, server: Server, res: Results, rep: int, *, conns: int) -> None:
        url = f"{server.url}/v2/{REPO}/manifests/{TAG}"
        log(f"{server.name}: manifest GET, wrk {conns} connections, {self.args.duration:g}s")
        with PhaseTimer(server, self.phases, f"manifest GET c={conns}", rep):
            w = run_wrk(url, conns, self.args.duration)
        res.wrk.setdefault(conns, []).append(w)
        if w.errors:
            res.notes.append(
                f"wrk c={conns}: {w.errors} errors or non-2xx of {w.requests} requests"
            )

    def prepare(self, server: Server) -> None:
        c = Client(server.host, server.port)
        try:
            push_image(c, server.url)
        finally:
            c.close()
        run_wrk(f"{server.url}/v2/{REPO}/manifests/{TAG}", 16, 1)  # warm-up: caches, lazy imports

    def run(self, servers: dict[str, Server], results: dict[str, Results]) -> None:
        for name, server in servers.items():
            try:
                self.prepare(server)
            except BenchError as e:
                self._fail(server, results[name], e)
        for rep in range(self.args.repeat):
            order = list(servers) if rep % 2 == 0 else list(reversed(servers))
            for _, step in self.steps():
                for name in order:
                    server, res = servers[name], results[name]
                    if res.failed:
                        continue
                    try:
                        step(server, res, rep)
                    except (
                        BenchError,
                        OSError,
                        http.client.HTTPException,
                        subprocess.TimeoutExpired,
                    ) as e:
                        self._fail(server, res, e)

    @staticmethod
    def _fail(server: Server, res: Results, e: BaseException) -> None:
        res.failed = True
        res.notes.append(f"FAILED: {type(e).__name__}: {e}")
        log(
            f"{server.name} FAILED: {type(e).__name__}: {e}\n--- {server.name} log tail ---\n{server.log_tail()}"
        )


# --------------------------------------------------------------------------------------------------
# Report


@dataclass
class Row:
    key: str
    label: str
    fmt: str
    target: str = ""
    check: str = ""  # "ratio>=X" or "pyreg<=X"


def rows(args: argparse.Namespace) -> list[Row]:
    size = f"{args.size / GiB:g} GiB" if args.size >= GiB else f"{args.size / MiB:g} MiB"
    cpu = "  server CPU per GiB (s)"
    out = [
        Row("upload_single", f"upload {size}, single PUT (MiB/s)", "{:.0f}", ">= 3x", "ratio>=3"),
        Row("upload_single_cpu", cpu, "{:.2f}"),
        Row(
            "upload_chunked",
            f"upload {size}, {args.chunk // MiB} MiB chunks (MiB/s)",
            "{:.0f}",
            ">= 3x",
            "ratio>=3",
        ),
        Row("upload_chunked_cpu", cpu, "{:.2f}"),
        Row(
            "download",
            f"download {size}, {args.download_client} (MiB/s)",
            "{:.0f}",
            ">= 1x",
            "ratio>=1",
        ),
        Row("download_cpu", cpu, "{:.2f}"),
    ]
    if args.verify:
        out.append(Row("download_verified", f"download {size}, python + sha256 (MiB/s)", "{:.0f}"))
    for conns in args.connections:
        target, check = (">= 5x", "ratio>=5") if conns == 16 else ("", "")
        out.append(
            Row(
                f"manifest_{conns}",
                f"manifest GET by tag, {conns} conn (req/s)",
                "{:.0f}",
                target,
                check,
            )
        )
        out.append(Row(f"manifest_{conns}_p50", f"  latency p50, {conns} conn (ms)", "{:.2f}"))
        out.append(Row(f"manifest_{conns}_p99", f"  latency p99, {conns} conn (ms)", "{:.2f}"))
    out.append(Row("rss", "peak RSS (MiB)", "{:.0f}", "<= 100 MiB", "pyreg<=100"))
    return out


def render(
    results: dict[str, Results], phases: list[Phase], args: argparse.Namespace, meta: dict[str, str]
) -> str:
    py, di = results.get("pyreg"), results.get("distribution")
    pm = py.metrics() if py else {}
    dm = di.metrics() if di else {}
    pyname = "pyreg" if args.workers == 1 else f"pyreg ({args.workers} workers)"
    lines = [
        f"# pyreg vs distribution — {meta['date']}",
        "",
        f"Machine: {meta['machine']}. pyreg {meta['commit']}, {meta['distribution']}, Python {meta['python']}.",
        f"Blob {args.size / MiB:g} MiB (MiB/s = 2^20 bytes/s); PATCH chunks {args.chunk / MiB:g} MiB; "
        f"download client: {args.download_client} (data discarded); "
        f"wrk {args.duration:g} s per point, 2 threads. Each figure is the best of {args.repeat} "
        f"(servers interleaved step by step). Client and server share the {os.cpu_count()} cores.",
        "",
        f"| metric | {pyname} | distribution | ratio (pyreg/distribution) | target | pass |",
        "|---|---:|---:|---:|---|:---:|",
    ]
    for row in rows(args):
        a, b = pm.get(row.key), dm.get(row.key)
        fa = row.fmt.format(a) if a is not None else "—"
        fb = row.fmt.format(b) if b is not None else "—"
        ratio = f"{a / b:.2f}x" if a is not None and b else "—"
        mark = ""
        if row.check.startswith("ratio>=") and a is not None and b:
            mark = "✅" if a / b >= float(row.check[7:]) else "❌"
        elif row.check.startswith("pyreg<=") and a is not None:
            mark = "✅" if a <= float(row.check[7:]) else "❌"
        lines.append(f"| {row.label} | {fa} | {fb} | {ratio} | {row.target} | {mark} |")
    wall = sum(ph.wall for ph in phases)
    if wall:
        other = sum(ph.other_cpu for ph in phases) / wall
        lines += [
            "",
            f"Background load from other processes during the measured phases: {other:.2f} of "
            f"{os.cpu_count()} cores on average (figures from a busy machine are lower and noisier).",
        ]
    lines += [
        "",
        "Per phase, in seconds: wall time; CPU of the server's process tree, of the client "
        "(this script + curl/wrk), and of every other process on the machine (background load "
        "that makes the figures noisy).",
        "",
        "| phase | server | rep | wall | server CPU | client CPU | other CPU |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for ph in phases:
        lines.append(
            f"| {ph.name} | {ph.server} | {ph.rep + 1} | {ph.wall:.2f} | {ph.server_cpu:.2f} "
            f"| {ph.client_cpu:.2f} | {ph.other_cpu:.2f} |"
        )
    notes = []
    for name, res in results.items():
        m = res.metrics()
        if m.get("nprocs", 1) > 1:
            notes.append(
                f"- {name}: peak RSS is the sampled sum over its {m['nprocs']:.0f} processes"
            )
        notes += [f"- {name}: {note}" for note in res.notes]
    if notes:
        lines += ["", *notes]
    lines.append(f"\nCommand: `{meta['command']}`")
    return "\n".join(lines) + "\n"


def metadata(args: argparse.Namespace) -> dict[str, str]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, timeout=10, cwd=PROJECT
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dirty = (
        " (+ uncommitted changes)" if sh(["git", "status", "--porcelain", "--", "registry"]) else ""
    )
    return {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "commit": sh(["git", "rev-parse", "--short", "HEAD"]) + dirty,
        "distribution": (sh(["docker-registry", "--version"]).split(" ", 1)[-1] or "?").replace(
            "github.com/docker/distribution", "distribution"
        ),
        "python": platform.python_version(),
        "command": "python bench/bench.py " + " ".join(sys.argv[1:]),
    }


# --------------------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]i?b?)?", text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 1G, 256M)")
    mult = {"": 1, "k": 1024, "m": MiB, "g": GiB}[(m.group(2) or "")[:1]]
    return int(float(m.group(1)) * mult)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=parse_size, default=GiB, help="blob size (default 1G)")
    parser.add_argument(
        "--chunk", type=parse_size, default=16 * MiB, help="PATCH chunk size (default 16M)"
    )
    parser.add_argument(
        "--duration", type=float, default=5, help="seconds per wrk point (default 5)"
    )
    parser.add_argument(
        "--connections",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 16, 64],
        help="wrk connection counts (default 1,16,64)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of every step; best is kept (default 3)"
    )
    parser.add_argument("--only", choices=["pyreg", "distribution"], help="run one server only")
    parser.add_argument("--workers", type=int, default=1, help="pyreg worker processes (default 1)")
    parser.add_argument(
        "--download-client",
        choices=["curl", "raw"],
        default="curl" if shutil.which("curl") else "raw",
        help="client for the timed download: curl -o /dev/null (default when installed) or a "
        "Python recv_into loop",
    )
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip the second, sha256-verified download",
    )
    parser.add_argument(
        "--dist-accesslog",
        action="store_true",
        help="leave distribution's per-request access log on (off by default: pyreg logs none)",
    )
    parser.add_argument(
        "--tmpdir", default=None, help="parent of the temp directory (default: $TMPDIR or /tmp)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp directory (data, configs, logs)"
    )
    parser.add_argument(
        "--output", type=Path, default=HERE / "results", help="directory for <date>.md"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record pyreg with py-spy during each phase (raw stacks in DIR; figures are perturbed)",
    )
    # --pause: wait for Enter before stopping the servers (to attach a profiler)
    parser.add_argument("--pause", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size < 1 or args.chunk < 1:
        parser.error("--size and --chunk must be positive")

    # Ctrl-C and SIGTERM both unwind through the finally blocks below
    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(
        signal.SIGINT, on_term
    )  # also when started with SIGINT ignored (a background job)

    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        PhaseTimer.profile_dir = args.profile
    kinds = [args.only] if args.only else ["pyreg", "distribution"]
    workdir = Path(tempfile.mkdtemp(prefix="pyreg-bench-", dir=args.tmpdir))
    results: dict[str, Results] = {}
    servers: dict[str, Server] = {}
    bench: Bench | None = None
    status = 0
    t_start = time.monotonic()
    try:
        log(f"workdir {workdir}; preparing a {args.size / MiB:g} MiB payload and its digests")
        payload = Payload(args.size)
        for kind in kinds:
            log(f"starting {kind}")
            servers[kind] = start_server(kind, workdir, args.workers, args.dist_accesslog)
            results[kind] = Results()
        bench = Bench(args, payload)
        bench.run(servers, results)
        for kind, server in servers.items():
            server.monitor.read_hwm()
            results[kind].add("rss", server.monitor.peak_mib)
            results[kind].add("nprocs", server.monitor.nprocs)
        if any(r.failed for r in results.values()):
            status = 1
        if args.pause:
            pids = {k: s.proc.pid for k, s in servers.items()}
            input(f"servers {pids}; press Enter to stop them ")
    except KeyboardInterrupt:
        log("interrupted")
        status = 130
    except BenchError as e:
        log(f"FAILED: {e}")
        status = 1
    finally:
        for server in servers.values():
            server.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if results and bench is not None:
        meta = metadata(args)
        report = render(results, bench.phases, args, meta)
        if status == 130:
            report = report.replace("\n", " (INTERRUPTED: partial results)\n", 1)
        print(report)
        args.output.mkdir(parents=True, exist_ok=True)
        name = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
        suffix = f"-w{args.workers}" if args.workers != 1 else ""
        out = args.output / f"{name}{suffix}.md"
        out.write_text(report)
        log(f"wrote {out} (total {time.monotonic() - t_start:.0f}s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
