"""RegistryClient against pyreg's registry and distribution on real sockets: every endpoint."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from pyreg.client import errors
from pyreg.client.api import MAX_MANIFEST_SIZE, RegistryClient
from pyreg.client.retry import RetryPolicy
from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest
from tests.conftest import RegistryServer


def repo() -> str:
    return f"api/r{uuid.uuid4().hex[:10]}"


async def upload(api: RegistryClient, name: str, data: bytes) -> Digest:
    digest = Digest.from_bytes(data)
    state = await api.start_upload(name)
    await api.put_upload(state, digest, data)
    return digest


def image_manifest(config: Digest, config_size: int, layers: list[tuple[Digest, int]]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": str(config), "size": config_size},
        "layers": [{"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": str(d), "size": s} for d, s in layers],
    }).encode()


async def test_every_endpoint(shared_registry: RegistryServer) -> None:
    name, other = repo(), repo()
    async with RegistryClient(shared_registry.url) as api:
        assert (await api.ping()).status_code == 200
        layer = os.urandom(3000)
        # chunked: two PATCHes with Content-Range, a status in between, then PUT
        state = await api.start_upload(name)
        state = await api.patch_upload(state, layer[:1000])
        assert state.offset == 1000
        status = await api.upload_status(state.location)
        assert status.offset == 1000
        state = await api.patch_upload(status, layer[1000:])
        layer_digest = Digest.from_bytes(layer)
        await api.put_upload(state, layer_digest)
        assert await api.head_blob(name, layer_digest) == 3000
        async with api.get_blob(name, layer_digest, start=2000) as response:
            assert response.status_code == 206
            assert await response.aread() == layer[2000:]
        config = b'{"architecture":"amd64","os":"linux"}'
        config_digest = await upload(api, name, config)
        body = image_manifest(config_digest, len(config), [(layer_digest, len(layer))])
        digest = await api.put_manifest(name, "v1", body, mediatypes.OCI_MANIFEST)
        got = await api.get_manifest(name, "v1")
        assert (got.data, got.digest, got.media_type) == (body, digest, mediatypes.OCI_MANIFEST)
        assert (await api.get_manifest(name, str(digest))).data == body
        assert await api.head_manifest(name, "v1") == (digest, mediatypes.OCI_MANIFEST, len(body))
        assert await api.head_manifest(name, "absent") is None
        # mount into another repository, then tags with pagination, catalog, referrers
        assert await api.mount_blob(other, layer_digest, name) is None
        assert await api.head_blob(other, layer_digest) == 3000
        for tag in ("v2", "v3"):
            await api.put_manifest(name, tag, body, mediatypes.OCI_MANIFEST)
        assert await api.list_tags(name, page_size=1) == ["v1", "v2", "v3"]
        assert name in await api.catalog(page_size=1000)
        assert (await api.referrers(name, digest))["manifests"] == []
        await api.delete_manifest(name, digest)
        with pytest.raises(errors.NotFound, match="manifest unknown: "):
            await api.get_manifest(name, "v1")
        state = await api.start_upload(name)
        await api.cancel_upload(state.location)


async def test_blob_unknown_and_mount_fallback(shared_registry: RegistryServer) -> None:
    async with RegistryClient(shared_registry.url) as api:
        missing = Digest.from_bytes(os.urandom(8))
        assert await api.head_blob(repo(), missing) is None
        with pytest.raises(errors.NotFound):
            async with api.get_blob(repo(), missing):
                pass
        state = await api.mount_blob(repo(), missing, repo())
        assert state is not None and state.offset == 0  # an upload session instead


async def test_manifest_digest_is_verified() -> None:
    body = b'{"schemaVersion":2}'
    wrong = Digest.from_bytes(b"something else")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": mediatypes.OCI_MANIFEST})

    async with RegistryClient("http://reg.test", transport=httpx.MockTransport(handler)) as api:
        with pytest.raises(errors.IntegrityError, match="digest"):
            await api.get_manifest("a", str(wrong))


async def test_an_oversized_manifest_is_refused_before_it_is_read() -> None:
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(64):  # 8 MiB in all, if it were all read
            sent.append(1)
            yield b" " * (128 << 10)

    def handler(request: httpx.Request) -> httpx.Response:
        declared = request.url.path.endswith("/declared")
        content = b"{}" * (MAX_MANIFEST_SIZE // 2 + 1) if declared else endless()
        return httpx.Response(200, headers={"Content-Type": mediatypes.OCI_MANIFEST}, content=content)

    async with RegistryClient("http://reg.test", transport=httpx.MockTransport(handler)) as api:
        with pytest.raises(errors.ResponseTooLarge, match="more than 4194304"):
            await api.get_manifest("a", "declared")
        with pytest.raises(errors.ResponseTooLarge, match="more than 4194304"):
            await api.get_manifest("a", "streamed")
    assert len(sent) == MAX_MANIFEST_SIZE // (128 << 10) + 1  # stopped at the first piece over
    # Just under the limit is fine.

    def small(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"{" + b" " * (MAX_MANIFEST_SIZE - 2) + b"}",
                              headers={"Content-Type": mediatypes.OCI_MANIFEST})

    async with RegistryClient("http://reg.test", transport=httpx.MockTransport(small)) as api:
        assert len((await api.get_manifest("a", "fits")).data) == MAX_MANIFEST_SIZE


async def test_retries_429_and_5xx_then_gives_up() -> None:
    statuses = [429, 503, 200]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    def handler(request: httpx.Request) -> httpx.Response:
        status = statuses.pop(0) if statuses else 500
        return httpx.Response(status, headers={"Retry-After": "3"} if status == 429 else {})

    policy = RetryPolicy(attempts=3, base_delay=0.5, sleep=sleep)
    async with RegistryClient("http://reg.test", transport=httpx.MockTransport(handler), retry=policy) as api:
        assert (await api.ping()).status_code == 200
        assert waits == [3.0, 1.0]  # Retry-After, then exponential backoff
        with pytest.raises(errors.ResponseError, match=r"\(500\)"):
            await api.ping()


async def test_connection_refused_is_unreachable() -> None:
    policy = RetryPolicy(attempts=2, base_delay=0)
    async with RegistryClient("http://127.0.0.1:9", retry=policy) as api:
        with pytest.raises(errors.Unreachable, match="cannot reach"):
            await api.ping()


async def test_retry_after_as_a_date_or_garbage() -> None:
    import email.utils
    import time

    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    statuses = [(503, {"Retry-After": "soon"}), (429, {"Retry-After": later}), (200, {})]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    def handler(request: httpx.Request) -> httpx.Response:
        status, headers = statuses.pop(0)
        return httpx.Response(status, headers=headers)

    policy = RetryPolicy(attempts=3, base_delay=0.5, sleep=sleep)
    async with RegistryClient("http://reg.test", transport=httpx.MockTransport(handler), retry=policy) as api:
        assert (await api.ping()).status_code == 200
    assert waits[0] == 0.5 and 28 < waits[1] <= 30  # no advice: backoff; a date: until then


async def test_an_error_carries_its_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "12"}, json={"errors": [{"code": "TOOMANYREQUESTS"}]})

    async with RegistryClient("http://reg.test", transport=httpx.MockTransport(handler),
                              retry=RetryPolicy(attempts=1)) as api:
        with pytest.raises(errors.TooManyRequests) as caught:
            await api.head_blob("a", Digest.from_bytes(b"x"))
    assert caught.value.retry_after == 12.0 and caught.value.status == 429
