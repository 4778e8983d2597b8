"""S3 goes down in the middle of pushes, then comes back.

While it is down, every request answers quickly (no hang) with 503, the spec's error body
(`UNAVAILABLE`) and a `Retry-After`, never a 500; once it is back, the same pushes, retried by
their clients, complete, and every stored blob is whole (fetched and hashed again).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.api.helpers import OCI_MANIFEST, dumps, oci_manifest
from tests.conftest import RegistryServer
from tests.s3.registries import fresh_root, start_s3_pyreg
from tests.s3.seaweed import SeaweedServer, start_seaweedfs

pytestmark = pytest.mark.slow

MiB = 1 << 20
THREADS = 4
PUSHES = 6  # per thread
MAX_REQUEST = 20.0  # seconds: an answer, even a 503, must come within this while S3 is down
DEADLINE = 180.0


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def own_seaweedfs(tmp_path: Path) -> Iterator[SeaweedServer]:
    """A SeaweedFS of this test's own: it is killed and started again."""
    server = start_seaweedfs(tmp_path / "weed")
    yield server
    server.stop()


class Unavailable(Exception):
    pass


@dataclass
class Observed:
    lock: threading.Lock = field(default_factory=threading.Lock)
    unavailable: int = 0
    slowest: float = 0.0
    wrong: list[str] = field(default_factory=list)  # answers that are neither success nor 503

    def check(self, r: httpx.Response, elapsed: float, expected: int) -> None:
        with self.lock:
            self.slowest = max(self.slowest, elapsed)
        if r.status_code == expected:
            return
        if r.status_code == 503:
            body = r.json()
            ok = body["errors"][0]["code"] == "UNAVAILABLE" and int(r.headers["retry-after"]) > 0
            if not ok:
                self.wrong.append(f"503 without the spec's body or Retry-After: {r.headers} {body}")
            with self.lock:
                self.unavailable += 1
            raise Unavailable()
        self.wrong.append(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}")
        raise AssertionError(self.wrong[-1])


def push(client: httpx.Client, server: RegistryServer, repo: str, tag: str, blobs: list[bytes],
         seen: Observed) -> None:
    """One image: each blob monolithic or chunked (7 MiB: a multipart upload), then its manifest."""

    def send(method: str, url: str, expected: int, **kwargs: object) -> httpx.Response:
        started = time.monotonic()
        try:
            r = client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException:
            seen.wrong.append(f"{method} {url}: no answer within {MAX_REQUEST} s")
            raise
        seen.check(r, time.monotonic() - started, expected)
        return r

    for data in blobs:
        r = send("POST", f"{server.url}/v2/{repo}/blobs/uploads/", 202)
        location = urljoin(server.url, r.headers["location"])
        if len(data) > 5 * MiB:
            half = len(data) // 2
            r = send("PATCH", location, 202, content=data[:half],
                     headers={"Content-Range": f"0-{half - 1}"})
            location = urljoin(server.url, r.headers["location"])
            send("PUT", location, 201, params={"digest": sha256(data)}, content=data[half:])
        else:
            send("PUT", location, 201, params={"digest": sha256(data)}, content=data)
    body = dumps(oci_manifest(blobs[0], blobs[1:]))
    send("PUT", f"{server.url}/v2/{repo}/manifests/{tag}", 201, content=body,
         headers={"Content-Type": OCI_MANIFEST})


def test_s3_down_in_the_middle_of_pushes(own_seaweedfs: SeaweedServer, tmp_path: Path) -> None:
    server = start_s3_pyreg(own_seaweedfs, tmp_path / "registry", fresh_root())
    seen = Observed()
    rng = random.Random(3)
    jobs = [
        [(f"outage/t{t}", f"p{p}", [rng.randbytes(2000), rng.randbytes(100_000),
                                     rng.randbytes(7 * MiB if p % 3 == 0 else 30_000)])
         for p in range(PUSHES)]
        for t in range(THREADS)
    ]
    done = [0] * THREADS
    failures: list[BaseException] = []
    deadline = time.monotonic() + DEADLINE

    def worker(t: int) -> None:
        try:
            with httpx.Client(timeout=MAX_REQUEST) as client:
                for repo, tag, blobs in jobs[t]:
                    while True:  # a client that retries the whole push after a 503
                        try:
                            push(client, server, repo, tag, blobs, seen)
                            break
                        except Unavailable:
                            assert time.monotonic() < deadline, "S3 never came back"
                            time.sleep(0.2)
                    done[t] += 1
                    time.sleep(0.05)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        while sum(done) < THREADS and not failures:  # some pushes are through before the outage
            time.sleep(0.05)
        own_seaweedfs.kill()
        down_at = time.monotonic()
        while seen.unavailable < 2 * THREADS and time.monotonic() - down_at < 60 and not failures:
            time.sleep(0.1)
        unavailable_while_down = seen.unavailable
        own_seaweedfs.start()
        for thread in threads:
            thread.join(DEADLINE)
        assert not failures, failures
        assert not seen.wrong, seen.wrong
        assert unavailable_while_down >= 2 * THREADS, "pushes did not meet the outage"
        assert seen.slowest < MAX_REQUEST
        assert done == [PUSHES] * THREADS
        print(f"{seen.unavailable} answers 503 while S3 was down; slowest answer "
              f"{seen.slowest:.1f} s")

        # Everything pushed, before, during or after the outage, is there and whole.
        with httpx.Client(timeout=60, follow_redirects=True) as client:
            for thread_jobs in jobs:
                for repo, tag, blobs in thread_jobs:
                    r = client.get(f"{server.url}/v2/{repo}/manifests/{tag}",
                                   headers={"Accept": OCI_MANIFEST})
                    assert r.status_code == 200, r.text
                    for data in blobs:
                        got = client.get(f"{server.url}/v2/{repo}/blobs/{sha256(data)}")
                        assert got.status_code == 200
                        assert sha256(got.content) == sha256(data)
    finally:
        server.stop()


def test_an_upload_resumes_where_it_was_acknowledged_after_an_outage(
    own_seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    server = start_s3_pyreg(own_seaweedfs, tmp_path / "registry", fresh_root())
    data = random.Random(5).randbytes(13 * MiB + 5)
    acked = 6 * MiB
    try:
        with httpx.Client(timeout=MAX_REQUEST) as client:
            r = client.post(f"{server.url}/v2/outage/resume/blobs/uploads/")
            location = urljoin(server.url, r.headers["location"])
            r = client.patch(location, content=data[:acked],
                             headers={"Content-Range": f"0-{acked - 1}"})
            assert r.status_code == 202, r.text
            location = urljoin(server.url, r.headers["location"])

            own_seaweedfs.kill()
            for method, kwargs in [
                ("PATCH", {"content": data[acked:], "headers": {
                    "Content-Range": f"{acked}-{len(data) - 1}"}}),
                ("GET", {}),
                ("PUT", {"params": {"digest": sha256(data)}}),
            ]:
                started = time.monotonic()
                r = client.request(method, location, **kwargs)  # type: ignore[arg-type]
                assert time.monotonic() - started < MAX_REQUEST
                assert r.status_code == 503, f"{method}: {r.status_code} {r.text}"
                assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
                assert int(r.headers["retry-after"]) > 0

            own_seaweedfs.start()
            status = client.get(location)
            assert status.status_code == 204, status.text
            assert status.headers["range"] == f"0-{acked - 1}"  # what was acknowledged, exactly
            r = client.patch(location, content=data[acked:],
                             headers={"Content-Range": f"{acked}-{len(data) - 1}"})
            assert r.status_code == 202, r.text
            r = client.put(urljoin(server.url, r.headers["location"]),
                           params={"digest": sha256(data)})
            assert r.status_code == 201, r.text
            got = client.get(f"{server.url}/v2/outage/resume/blobs/{sha256(data)}",
                             follow_redirects=True)
            assert sha256(got.content) == sha256(data)
    finally:
        server.stop()
