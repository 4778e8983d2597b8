"""A SeaweedFS server with its S3 gateway on loopback, for the S3 driver's tests and others'.

`start_seaweedfs(workdir)` starts `weed server -s3` (master, volume server, filer and S3 gateway in
one process) on free ports and waits until an object can be written. Every SeaweedFS service also
listens on its port + 10000 for gRPC, so each port is chosen with that twin free too. No identities
are configured: the gateway accepts any access key.

`shared_seaweedfs(request)` gives one server per test session (started on first use, stopped at the
end of the session); `s3(request)` is the storage-driver factory for the conformance suite: a
driver on the shared server under a fresh root directory, so tests never see each other's keys.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pyreg.registry.storage.s3 import S3Driver, S3Options
from tests.conftest import require_tool

BUCKET = "pyreg-tests"
ACCESS_KEY = "pyreg"  # any key works: the gateway has no identities
SECRET_KEY = "pyreg-secret"
GRPC_OFFSET = 10000
SERVICES = ("master", "volume", "filer", "s3")
START_TIMEOUT = 60.0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_pair(taken: set[int]) -> int:
    """A port that is free together with its gRPC twin (port + 10000).

    Both lie below Linux's ephemeral range (32768 and up), where outgoing connections could take
    the twin between this check and weed's bind.
    """
    for _ in range(1000):
        port = random.randrange(10000, 22768)
        pair = {port, port + GRPC_OFFSET}
        if not pair & taken and all(_port_free(p) for p in pair):
            taken |= pair
            return port
    raise RuntimeError("no free pair of ports for SeaweedFS")


@dataclass
class SeaweedServer:
    binary: str
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _client: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def log(self) -> Path:
        return self.workdir / "weed.log"

    def options(self, bucket: str = BUCKET, **extra: Any) -> S3Options:
        """Driver options for a bucket of this server."""
        params: dict[str, Any] = {
            "bucket": bucket, "region": "us-east-1", "regionendpoint": self.endpoint,
            "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY, **extra,
        }
        return S3Options.from_params(params)

    def client(self) -> Any:
        """A plain boto3 client, to look at the bucket behind the driver's back."""
        from pyreg.registry.storage.s3_bucket import build_client

        return build_client(self.options())

    def shared_client(self) -> Any:
        """One client for the many drivers of the conformance suite: creating one takes ~0.3 s."""
        if self._client is None:
            self._client = self.client()
        return self._client

    def create_bucket(self, name: str) -> None:
        client = self.client()
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou,
                                     client.exceptions.BucketAlreadyExists):
                client.create_bucket(Bucket=name)
        finally:
            client.close()

    def start(self) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        if not self.ports:
            taken: set[int] = set()
            self.ports = {name: _free_port_pair(taken) for name in SERVICES}
        # The master's raft state: restarted on it, a master waits ~20 s for an election of one;
        # a fresh one leads at once and relearns the volumes from their heartbeats. The filer's
        # metadata beside it (filerldb2) is kept.
        meta = self.workdir / "meta"
        shutil.rmtree(meta / f"m{self.ports['master']}", ignore_errors=True)
        meta.mkdir(exist_ok=True)
        cmd = [
            self.binary, "server", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
            f"-master.dir={meta}",
            f"-master.port={self.ports['master']}", f"-volume.port={self.ports['volume']}",
            f"-filer.port={self.ports['filer']}", f"-s3.port={self.ports['s3']}",
            # Extra gateways this server would otherwise open on fixed ports.
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=1024", "-volume.max=0",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, start_new_session=True)
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until an object can be written: the gateway answers before volumes register."""
        client = self.client()
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.log}")
                try:
                    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou,
                                             client.exceptions.BucketAlreadyExists):
                        client.create_bucket(Bucket="pyreg-probe")
                    client.put_object(Bucket="pyreg-probe", Key="probe", Body=b"ok")
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"SeaweedFS did not start; see {self.log}") from None
                    time.sleep(0.1)
        finally:
            client.close()

    def kill(self) -> None:
        """Stop at once, as a crash or a lost machine would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                # weed takes ~10 s to stop gracefully; the data is safe after a kill anyway.
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        """Start again on the same ports and data."""
        self.stop()
        self.start()


def start_seaweedfs(workdir: Path, buckets: tuple[str, ...] = (BUCKET,)) -> SeaweedServer:
    """A running SeaweedFS with `buckets` created; fails under CI when `weed` is missing."""
    binary = require_tool("weed")
    for attempt in range(3):
        server = SeaweedServer(binary, workdir / f"weed-{attempt}")
        try:
            server.start()
            break
        except RuntimeError:  # weed exited: another process took one of its ports meanwhile
            if attempt == 2:
                raise
    for bucket in buckets:
        server.create_bucket(bucket)
    return server


_shared: SeaweedServer | None = None


def shared_seaweedfs(request: pytest.FixtureRequest) -> SeaweedServer:
    """The session's SeaweedFS, started on first use; do not stop it (others share it)."""
    global _shared
    if _shared is None or _shared.proc is None or _shared.proc.poll() is not None:
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        _shared = start_seaweedfs(factory.mktemp("seaweedfs"))
        request.config.add_cleanup(_shared.stop)
    return _shared


def s3_driver(
    server: SeaweedServer, request: pytest.FixtureRequest, own_client: bool = False, **extra: Any
) -> S3Driver:
    """A driver on `server` under a fresh root directory, closed after the test.

    It shares the server's client unless `own_client` (a test that hooks the client's events).
    """
    extra.setdefault("rootdirectory", f"/t-{uuid.uuid4().hex[:12]}")
    client = None if own_client else server.shared_client()
    driver = S3Driver(server.options(**extra), client)
    request.addfinalizer(driver.close)
    return driver


def s3(request: pytest.FixtureRequest) -> S3Driver:
    """The conformance suite's factory (its name is the test id)."""
    return s3_driver(shared_seaweedfs(request), request)
