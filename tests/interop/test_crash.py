"""SIGKILL in the middle of an upload: nothing partial becomes visible, and the upload goes on.

The request that is cut is written on a raw socket: its headers promise a body that only half
arrives before the server dies, exactly what a crash looks like from the server's side.
"""

from __future__ import annotations

import hashlib
import random
import socket
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.conftest import RegistryServer
from tests.interop.conftest import StartRegistry, is_pyreg, target_names

pytestmark = [pytest.mark.interop, pytest.mark.slow]

MiB = 1024 * 1024
SIZE = 200 * MiB
CHUNK = 16 * MiB
V2 = "docker/registry/v2"


@pytest.fixture(scope="module")
def big_blob() -> tuple[bytes, str]:
    data = random.Random(20261127).randbytes(SIZE)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def rebase(location: str, server: RegistryServer) -> str:
    """An upload URL on ``server``: a restarted registry listens on a new port."""
    parts = urlsplit(location)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return urljoin(server.url, path)


def send_half_and_kill(
    server: RegistryServer, method: str, url: str, body: bytes, sent: int
) -> None:
    """Send the headers and ``sent`` bytes of ``body``, then SIGKILL the server mid-request."""
    target = urlsplit(url)
    path = target.path + (f"?{target.query}" if target.query else "")
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {server.host}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
    )
    with socket.create_connection((target.hostname, target.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n")
        sock.sendall(body[:sent])
        time.sleep(0.5)  # let the server write some of it out
        server.kill()


def assert_invisible(server: RegistryServer, repo: str, digest: str) -> None:
    r = httpx.head(f"{server.url}/v2/{repo}/blobs/{digest}")
    assert r.status_code == 404, f"HEAD {repo}@{digest} after the crash: {r.status_code}"
    r = httpx.get(f"{server.url}/v2/{repo}/blobs/{digest}")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    hex_ = digest.split(":")[1]
    assert not server.storage.exists(f"{V2}/blobs/sha256/{hex_[:2]}/{hex_}/data")
    assert not server.storage.exists(f"{V2}/repositories/{repo}/_layers/sha256/{hex_}")


def assert_blob(server: RegistryServer, repo: str, data: bytes, digest: str) -> None:
    r = httpx.head(f"{server.url}/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert r.headers["docker-content-digest"] == digest
    assert int(r.headers["content-length"]) == len(data)
    # On S3 the GET is a redirect to the bucket, which clients follow.
    url = f"{server.url}/v2/{repo}/blobs/{digest}"
    with httpx.stream("GET", url, timeout=60, follow_redirects=True) as r:
        assert r.status_code == 200
        assert int(r.headers["content-length"]) == len(data)
        if not r.history:  # served by the registry itself
            assert r.headers["docker-content-digest"] == digest
        hasher = hashlib.sha256()
        for block in r.iter_bytes(4 * MiB):
            hasher.update(block)
    assert "sha256:" + hasher.hexdigest() == digest


def patch_from(client: httpx.Client, location: str, data: bytes, offset: int, end: int) -> str:
    while offset < end:
        chunk = data[offset : min(offset + CHUNK, end)]
        r = client.patch(
            location,
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
        )
        assert r.status_code == 202, f"PATCH {offset}: {r.status_code} {r.text}"
        assert r.headers["range"] == f"0-{offset + len(chunk) - 1}"
        location = urljoin(location, r.headers["location"])
        offset += len(chunk)
    return location


@pytest.mark.parametrize("kind", target_names(("pyreg", "distribution")))
def test_kill_during_chunked_upload_then_resume(
    kind: str, registries: StartRegistry, tmp_path: Path, big_blob: tuple[bytes, str]
) -> None:
    data, digest = big_blob
    repo = "crash/chunked"
    root = tmp_path / "data"
    server = registries(kind, root)
    with httpx.Client(timeout=60) as client:
        r = client.post(f"{server.url}/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = urljoin(server.url, r.headers["location"])
        acked = SIZE // 2
        location = patch_from(client, location, data, 0, acked)
    # The next chunk is cut halfway by a SIGKILL.
    send_half_and_kill(server, "PATCH", location, data[acked : acked + CHUNK], CHUNK // 2)

    server = registries(kind, root)
    assert_invisible(server, repo, digest)
    uploads = server.storage.files(f"{V2}/repositories/{repo}/_uploads")
    assert uploads, "the upload's state is gone from _uploads"

    location = rebase(location, server)
    with httpx.Client(timeout=60) as client:
        # A naive client sends the cut chunk again from its last acknowledged offset: the server
        # takes it (202) or, having kept part of it, answers 416 with the Range it holds.
        retry = client.patch(
            location,
            content=data[acked : acked + CHUNK],
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{acked}-{acked + CHUNK - 1}",
            },
        )
        if is_pyreg(server):
            assert retry.status_code in (202, 416), f"{retry.status_code} {retry.text}"
        if retry.status_code == 416:
            assert retry.headers["range"].startswith("0-"), retry.headers
            assert retry.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
        if retry.status_code == 202:
            location = urljoin(location, retry.headers["location"])
        status = client.get(location)
        if is_pyreg(server):
            assert status.status_code == 204, f"GET {location}: {status.status_code} {status.text}"
        if status.status_code == 204:
            first, last = status.headers["range"].split("-")
            assert first == "0"
            end = int(last) + 1
            if retry.status_code == 202:
                assert end == acked + CHUNK, status.headers["range"]
            else:
                # Everything acknowledged survived; what arrived of the cut chunk may count too.
                assert acked <= end <= acked + CHUNK // 2, status.headers["range"]
                assert retry.headers["range"] == status.headers["range"]
            assert status.headers["docker-upload-uuid"]
            location = urljoin(location, status.headers["location"])
        else:
            # distribution drops an upload whose file outgrew its signed state: start again.
            assert not is_pyreg(server)
            r = client.post(f"{server.url}/v2/{repo}/blobs/uploads/")
            assert r.status_code == 202
            location = urljoin(server.url, r.headers["location"])
            end = 0
        location = patch_from(client, location, data, end, SIZE)
        assert_invisible(server, repo, digest)  # complete, but not committed yet
        sep = "&" if "?" in location else "?"
        r = client.put(f"{location}{sep}digest={digest}")
        assert r.status_code == 201, f"PUT ?digest: {r.status_code} {r.text}"
        assert r.headers["docker-content-digest"] == digest
    assert_blob(server, repo, data, digest)


@pytest.mark.parametrize("kind", target_names(("pyreg", "distribution")))
def test_kill_during_monolithic_put_then_restart(
    kind: str, registries: StartRegistry, tmp_path: Path, big_blob: tuple[bytes, str]
) -> None:
    data = big_blob[0][: 64 * MiB]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    repo = "crash/monolithic"
    root = tmp_path / "data"
    server = registries(kind, root)
    r = httpx.post(f"{server.url}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = urljoin(server.url, r.headers["location"])
    sep = "&" if "?" in location else "?"
    send_half_and_kill(server, "PUT", f"{location}{sep}digest={digest}", data, len(data) // 2)

    server = registries(kind, root)
    assert_invisible(server, repo, digest)

    # Restarted from scratch as a single POST ?digest=: the blob arrives whole.
    r = httpx.post(
        f"{server.url}/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    if r.status_code == 202 and not is_pyreg(server):
        # distribution 2.8 ignores ?digest= on POST: finish with a PUT.
        location = urljoin(server.url, r.headers["location"])
        sep = "&" if "?" in location else "?"
        r = httpx.put(f"{location}{sep}digest={digest}", content=data, timeout=60)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert_blob(server, repo, data, digest)
