"""Upload sessions across processes: state lives in storage, hashers are only a cache.

Two apps on one filesystem root stand for two worker processes (or a restart): an upload
started on one continues and completes on the other, and the digest is always verified.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from pyreg.registry.app import create_app
from pyreg.registry.config import Config
from pyreg.registry.services import uploads as uploads_module


def make_client(root: Path) -> httpx.AsyncClient:
    config = Config()
    config.storage.filesystem_root = str(root)
    config.storage.delete_enabled = True
    app = create_app(config)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_chunks_through_two_workers_and_a_restart(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    a, b, c = make_client(tmp_path), make_client(tmp_path), make_client(tmp_path)
    async with a, b, c:
        r = await a.post("/v2/x/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["location"]
        r = await a.patch(location, content=data[:100_000], headers={"Content-Range": "0-99999"})
        assert r.status_code == 202
        # Worker b never saw this upload: it learns the offset from storage.
        r = await b.get(location)
        assert r.status_code == 204 and r.headers["range"] == "0-99999"
        r = await b.patch(location, content=data[100_000:200_000],
                          headers={"Content-Range": "100000-199999"})
        assert r.status_code == 202 and r.headers["range"] == "0-199999"
        # a's hasher is stale now (offset 100000): it must not be trusted.
        r = await a.patch(location, content=data[200_000:])
        assert r.status_code == 202
        r = await c.put(location, params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        r = await a.get(f"/v2/x/blobs/{sha256(data)}")
        assert r.status_code == 200 and r.content == data


async def test_stale_hasher_cannot_commit_wrong_content(tmp_path: Path) -> None:
    data = os.urandom(50_000)
    a, b = make_client(tmp_path), make_client(tmp_path)
    async with a, b:
        location = (await a.post("/v2/x/blobs/uploads/")).headers["location"]
        await a.patch(location, content=data[:25_000], headers={"Content-Range": "0-24999"})
        await b.patch(location, content=data[25_000:], headers={"Content-Range": "25000-49999"})
        # a's hasher covers only the first half; the digest of that half must be refused.
        r = await a.put(location, params={"digest": sha256(data[:25_000])})
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
        r = await a.head(f"/v2/x/blobs/{sha256(data[:25_000])}")
        assert r.status_code == 404


async def test_sha512_upload_is_verified_by_rehashing(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    async with make_client(tmp_path) as a:
        r = await a.post("/v2/x/blobs/uploads/", params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
        assert r.headers["docker-content-digest"] == digest
        r = await a.get(f"/v2/x/blobs/{digest}")
        assert r.content == data
    blob = tmp_path / "docker/registry/v2/blobs/sha512" / digest[7:9] / digest[7:] / "data"
    assert blob.read_bytes() == data


async def test_batches_larger_than_one_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads_module, "BATCH", 4096)
    data = os.urandom(100_000)

    async def body():  # type: ignore[no-untyped-def]
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    async with make_client(tmp_path) as a:
        location = (await a.post("/v2/x/blobs/uploads/")).headers["location"]
        r = await a.patch(location, content=body())
        assert r.status_code == 202 and r.headers["range"] == f"0-{len(data) - 1}"
        r = await a.put(location, params={"digest": sha256(data)})
        assert r.status_code == 201


async def test_purge_removes_only_stale_uploads(tmp_path: Path) -> None:
    config = Config()
    config.storage.filesystem_root = str(tmp_path)
    app = create_app(config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as a:
        old = (await a.post("/v2/x/blobs/uploads/")).headers["docker-upload-uuid"]
        new = (await a.post("/v2/x/blobs/uploads/")).headers["docker-upload-uuid"]
    started = tmp_path / f"docker/registry/v2/repositories/x/_uploads/{old}/startedat"
    started.write_text("2020-01-01T00:00:00Z")
    reg = app.app.state.registry  # type: ignore[attr-defined]
    assert [p.rsplit("/", 1)[1] for p in await reg.uploads.purge(3600, dry_run=True)] == [old]
    assert started.exists()
    await reg.uploads.purge(3600)
    assert not started.parent.exists()
    assert (tmp_path / f"docker/registry/v2/repositories/x/_uploads/{new}").exists()


async def test_prefix_and_host_shape_every_url(tmp_path: Path) -> None:
    config = Config()
    config.storage.filesystem_root = str(tmp_path)
    config.http.prefix = "/reg"
    config.http.host = "https://registry.example.test"
    app = create_app(config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as a:
        assert (await a.get("/v2/")).status_code == 404
        assert (await a.get("/reg/v2/")).status_code == 200
        r = await a.post("/reg/v2/x/blobs/uploads/")
        assert r.headers["location"].startswith("https://registry.example.test/reg/v2/x/blobs/uploads/")
        data = b"abc"
        r = await a.put(r.headers["location"].split(".test", 1)[1], params={"digest": sha256(data)},
                        content=data)
        assert r.headers["location"] == f"https://registry.example.test/reg/v2/x/blobs/{sha256(data)}"


async def test_read_only_mode_serves_reads_and_refuses_writes(tmp_path: Path) -> None:
    async with make_client(tmp_path) as a:
        data = b"kept"
        r = await a.post("/v2/x/blobs/uploads/", params={"digest": sha256(data)}, content=data)
        assert r.status_code == 201
    config = Config()
    config.storage.filesystem_root = str(tmp_path)
    config.storage.readonly = True
    app = create_app(config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as a:
        assert (await a.get(f"/v2/x/blobs/{sha256(data)}")).content == data
        r = await a.post("/v2/x/blobs/uploads/")
        assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert not (tmp_path / "docker/registry/v2/repositories/x/_uploads").exists() or not any(
        (tmp_path / "docker/registry/v2/repositories/x/_uploads").iterdir()
    )
