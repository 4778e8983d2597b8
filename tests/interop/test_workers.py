"""pyreg with two worker processes on one store: no state that matters lives in one process.

Every request below opens a new connection, so the kernel spreads them over both workers; a
chunked upload therefore moves from worker to worker between its requests.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.conftest import RegistryServer, start_pyreg
from tests.interop.clients import Skopeo, without_ca_bundles
from tests.interop.images import Layout, assert_identical

pytestmark = pytest.mark.interop

KiB = 1024


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def connection_owners(server: RegistryServer) -> set[int]:
    """The worker pids that own the server's established connections (from /proc, as ss does)."""
    port = int(server.host.rsplit(":", 1)[1])
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            inodes.add(fields[9])
    owners: set[int] = set()
    for pid in children(server.proc.pid):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            owners.add(pid)
    return owners


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[RegistryServer]:
    server = start_pyreg(tmp_path / "data", workers=2)
    # uvicorn's supervisor forks the workers (and maybe a resource tracker): at least two children.
    assert len(children(server.proc.pid)) >= 2, "pyreg did not start two worker processes"
    # New connections do spread over both: hold a few open and see who owns them.
    owners: set[int] = set()
    for _ in range(4):
        clients = [httpx.Client(timeout=10) for _ in range(12)]
        try:
            for client in clients:
                assert client.get(f"{server.url}/v2/").status_code == 200
            owners |= connection_owners(server)
        finally:
            for client in clients:
                client.close()
        if len(owners) == 2:
            break
    assert len(owners) == 2, "48 new connections all went to one worker"
    yield server
    server.stop()  # SIGTERM: uvicorn's supervisor stops its workers (SIGKILL would orphan them)


def fresh(method: str, url: str, **kwargs: object) -> httpx.Response:
    """One request on its own connection."""
    with httpx.Client(timeout=30) as client:
        return client.request(method, url, **kwargs)  # type: ignore[arg-type]


def test_chunked_upload_across_connections(two_workers: RegistryServer) -> None:
    server = two_workers
    data = random.Random(7).randbytes(24 * 256 * KiB + 123)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = fresh("POST", f"{server.url}/v2/workers/chunked/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = urljoin(server.url, r.headers["location"])
    uuid = r.headers["docker-upload-uuid"]
    offset = 0
    chunk = 256 * KiB
    while offset < len(data):
        part = data[offset : offset + chunk]
        r = fresh(
            "PATCH",
            location,
            content=part,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(part) - 1}",
            },
        )
        assert r.status_code == 202, f"PATCH at {offset}: {r.status_code} {r.text}"
        location = urljoin(location, r.headers["location"])
        offset += len(part)
        status = fresh("GET", location)
        assert status.status_code == 204, f"status at {offset}: {status.status_code} {status.text}"
        assert status.headers["range"] == f"0-{offset - 1}"
        assert status.headers["docker-upload-uuid"] == uuid
    sep = "&" if "?" in location else "?"
    r = fresh("PUT", f"{location}{sep}digest={digest}")
    assert r.status_code == 201, f"PUT: {r.status_code} {r.text}"
    for _ in range(4):
        # On S3 the answer is a redirect to the bucket, which clients follow.
        r = fresh("GET", f"{server.url}/v2/workers/chunked/blobs/{digest}", follow_redirects=True)
        assert r.status_code == 200 and r.content == data
    # The session is over on every worker.
    assert fresh("GET", location).status_code == 404


def test_concurrent_skopeo_pushes(
    two_workers: RegistryServer, skopeo: Skopeo, image: Layout, index_image: Layout, tmp_path: Path
) -> None:
    """Four pushes at once, sharing the busybox layer and one tag: all succeed, all consistent."""
    host = two_workers.host
    jobs = [
        (image.ref, f"docker://{host}/workers/app:v1", []),
        (image.ref, f"docker://{host}/workers/app:v1", []),  # the same tag twice at once
        (index_image.ref, f"docker://{host}/workers/app:multi", ["--all"]),
        (index_image.ref, f"docker://{host}/workers/other:multi", ["--all"]),
    ]
    procs = [
        subprocess.Popen(
            [
                skopeo.binary,
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                *extra,
                src,
                dest,
            ],
            env=without_ca_bundles(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for src, dest, extra in jobs
    ]
    for proc, (_, dest, _) in zip(procs, jobs, strict=True):
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"push to {dest} failed:\n{err}"

    pulls = [
        ("workers/app:v1", image, "v1", []),
        ("workers/app:multi", index_image, "multi", ["--all"]),
        ("workers/other:multi", index_image, "multi", ["--all"]),
    ]
    for n, (ref, built, tag, extra) in enumerate(pulls):
        dest_dir = tmp_path / f"pulled-{n}"
        skopeo.copy(f"docker://{host}/{ref}", f"oci:{dest_dir}:{tag}", *extra)
        assert_identical(built, dest_dir, tag)
    tags = fresh("GET", f"{two_workers.url}/v2/workers/app/tags/list").json()
    assert tags == {"name": "workers/app", "tags": ["multi", "v1"]}
    # One copy of each blob in the store, whatever the number of repositories and pushes.
    blobs = two_workers.storage.files("docker/registry/v2/blobs/sha256")
    stored = {p.split("/")[-2] for p in blobs if p.endswith("/data")}
    expected = {d.split(":")[1] for d in image.all_digests() | index_image.all_digests()}
    assert stored == expected
