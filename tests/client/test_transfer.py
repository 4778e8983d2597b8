"""Pull and push against real registries: dedup counted in bytes, mounts, platforms, integrity,
resumed downloads and chunked uploads."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from pyreg.client import errors
from pyreg.client.api import RegistryClient
from pyreg.client.config import ClientConfig, RegistrySettings
from pyreg.client.connect import connect
from pyreg.client.progress import Reporter
from pyreg.client.retry import RetryPolicy
from pyreg.client.session import RegistrySession
from pyreg.client.store import ImageStore
from pyreg.client.transfer.blobs import download_blob
from pyreg.client.transfer.pull import pull
from pyreg.client.transfer.push import push
from pyreg.oci import mediatypes
from pyreg.oci.digest import Digest
from pyreg.oci.imageref import parse_reference
from pyreg.oci.manifest import Descriptor
from pyreg.oci.platform import Platform
from tests.client.conftest import FAST_RETRY, put_image
from tests.client.images import SampleImage, index_of, make_layer
from tests.client.servers import CountingProxy
from tests.conftest import RegistryServer


class Recorder(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def done(self, key: str, status: str) -> None:
        self.lines.append(f"{key}: {status}")


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[CountingProxy]:
    p = CountingProxy(registry.host)
    yield p
    p.close()


class Forwarding(httpx.AsyncBaseTransport):
    """A transport in front of the real one: subclasses change some requests, forward the rest
    to `self.inner`."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def assert_pulls_whole(session: RegistrySession, tmp_path: Path, name: str,
                             image: SampleImage) -> None:
    """Pulled into a store of its own, `name`'s first layer is the image's, byte for byte."""
    other = ImageStore(tmp_path / "other")
    await pull(session, other, parse_reference(name))
    assert other.read_blob(image.layer_descriptors[0].digest) == image.layers[0][0]


def unique(host: str) -> str:
    return f"{host}/tx/r{uuid.uuid4().hex[:8]}"


async def test_push_then_pull_round_trip(shared_registry: RegistryServer, store: ImageStore,
                                         session: RegistrySession, tmp_path: Path) -> None:
    image = SampleImage([make_layer(2000), make_layer(3000)])
    name = unique(shared_registry.host) + ":v1"
    put_image(store, image, name)
    seen = Recorder()
    result = await push(session, store, parse_reference(name), progress=seen)
    assert result.digest == image.digest and result.size == len(image.manifest)
    assert seen.lines[0] == f"The push refers to repository [{name.rsplit(':', 1)[0]}]"
    assert sorted(seen.lines[1:]) == sorted(f"{d.digest.encoded[:12]}: Pushed" for d in image.layer_descriptors)
    other = ImageStore(tmp_path / "other")
    seen = Recorder()
    pulled = await pull(session, other, parse_reference(name), progress=seen)
    assert (pulled.digest, pulled.downloaded, pulled.up_to_date) == (image.digest, 3, False)
    assert seen.lines[0] == f"v1: Pulling from {parse_reference(name).path}"
    for digest, data in image.blobs().items():
        assert other.read_blob(digest) == data
    assert other.resolve(name).descriptor.digest == image.digest
    again = await pull(session, other, parse_reference(name), progress=(seen := Recorder()))
    assert again.up_to_date and again.downloaded == 0
    assert all(line.endswith("Already exists") for line in seen.lines[1:])


async def test_dedup_counted_in_bytes(proxy: CountingProxy, store: ImageStore, session: RegistrySession,
                                      tmp_path: Path) -> None:
    base = make_layer(300_000)
    first, second = SampleImage([base, make_layer(1000)]), SampleImage([base, make_layer(1000)])
    repo = unique(proxy.host)
    put_image(store, first, f"{repo}:1")
    put_image(store, second, f"{repo}:2")
    await push(session, store, parse_reference(f"{repo}:1"))
    assert proxy.sent > 300_000
    proxy.reset()
    seen = Recorder()
    await push(session, store, parse_reference(f"{repo}:2"), progress=seen)
    assert proxy.sent < 20_000  # the base layer is not sent again
    assert f"{Digest.from_bytes(base[0]).encoded[:12]}: Layer already exists" in seen.lines
    # another repository of the same registry: mounted, not uploaded
    proxy.reset()
    elsewhere = unique(proxy.host)
    store.add(parse_reference(f"{elsewhere}:1"), first.descriptor())
    seen = Recorder()
    result = await push(session, store, parse_reference(f"{elsewhere}:1"), progress=seen)
    assert result.uploaded == 0 and proxy.sent < 20_000
    assert f"{Digest.from_bytes(base[0]).encoded[:12]}: Mounted from {parse_reference(repo).path}" in seen.lines
    # pulling the second image into a store that has the first downloads only the new layer
    other = ImageStore(tmp_path / "other")
    await pull(session, other, parse_reference(f"{repo}:1"))
    proxy.reset()
    pulled = await pull(session, other, parse_reference(f"{repo}:2"))
    assert pulled.downloaded == 2 and proxy.received < 20_000


async def upload_image(session: RegistrySession, registry: RegistryServer, repo: str,
                       image: SampleImage, tag: str) -> None:
    conn = await connect(session.config.endpoint(registry.host))
    name = parse_reference(repo).path
    for digest, data in image.blobs().items():
        state = await conn.api.start_upload(name)
        await conn.api.put_upload(state, digest, data)
    await conn.api.put_manifest(name, tag, image.manifest, image.media_type)
    await conn.aclose()


async def test_a_single_platform_image_of_another_platform_is_refused(
        shared_registry: RegistryServer, store: ImageStore, session: RegistrySession) -> None:
    image = SampleImage([make_layer(300)], arch="amd64")
    repo = unique(shared_registry.host)
    await upload_image(session, shared_registry, repo, image, "1")
    # As docker: a platform asked for must be the image's; nothing of it enters the store.
    with pytest.raises(errors.PlatformNotFound, match=r"wanted linux/arm64/v8, actual: linux/amd64"):
        await pull(session, store, parse_reference(f"{repo}:1"), platform=Platform.parse("linux/arm64"))
    assert not store.has_blob(image.layer_descriptors[0].digest) and not store.images()
    assert (await pull(session, store, parse_reference(f"{repo}:1"),
                       platform=Platform.parse("linux/amd64"))).manifest.digest == image.digest
    # No platform asked for: whatever the image is, as docker pull does.
    other = SampleImage([make_layer(200)], arch="s390x")
    await upload_image(session, shared_registry, repo, other, "2")
    assert (await pull(session, store, parse_reference(f"{repo}:2"))).manifest.digest == other.digest


async def test_index_resolves_to_the_platform(shared_registry: RegistryServer, store: ImageStore,
                                              session: RegistrySession) -> None:
    shared = make_layer(500)
    amd, arm = SampleImage([shared, make_layer(10)], arch="amd64"), SampleImage([shared, make_layer(20)], arch="arm64")
    repo = unique(shared_registry.host)
    conn = await connect(session.config.endpoint(shared_registry.host))
    name = parse_reference(repo).path
    for image in (amd, arm):
        for digest, data in image.blobs().items():
            state = await conn.api.start_upload(name)
            await conn.api.put_upload(state, digest, data)
        await conn.api.put_manifest(name, str(image.digest), image.manifest, image.media_type)
    body, media = index_of([amd, arm], docker=True)
    await conn.api.put_manifest(name, "multi", body, media)
    await conn.aclose()
    result = await pull(session, store, parse_reference(f"{repo}:multi"), platform=Platform.parse("linux/arm64"))
    assert result.manifest.digest == arm.digest and result.digest == Digest.from_bytes(body)
    assert store.resolve(f"{repo}:multi").repo_digest == Digest.from_bytes(body)
    # docker's way: only the chosen platform is kept (not the index, nor the other's blobs)
    assert store.resolve(f"{repo}:multi").descriptor.digest == arm.digest
    assert not store.has_blob(amd.layer_descriptors[1].digest) and not store.has_blob(Digest.from_bytes(body))
    with pytest.raises(errors.PlatformNotFound, match=r"linux/s390x.*linux/amd64, linux/arm64/v8"):
        await pull(session, store, parse_reference(f"{repo}:multi"), platform=Platform.parse("linux/s390x"))
    # by digest: no tag in the store's name
    by_digest = await pull(session, store, parse_reference(f"{repo}@{Digest.from_bytes(body)}"),
                           platform=Platform.parse("linux/amd64"))
    assert by_digest.name.tag is None and by_digest.manifest.digest == amd.digest


async def test_corrupted_blob_is_detected_and_not_stored(registry: RegistryServer, store: ImageStore,
                                                         session: RegistrySession, tmp_path: Path) -> None:
    image = SampleImage([make_layer(5000)])
    name = unique(registry.host) + ":bad"
    put_image(store, image, name)
    await push(session, store, parse_reference(name))
    layer = image.layer_descriptors[0].digest
    data = registry.root / "docker/registry/v2/blobs/sha256" / layer.encoded[:2] / layer.encoded / "data"
    data.write_bytes(os.urandom(data.stat().st_size))  # same size, other bytes
    other = ImageStore(tmp_path / "other")
    with pytest.raises(errors.IntegrityError, match="digest mismatch"):
        await pull(session, other, parse_reference(name))
    assert not other.has_blob(layer)
    assert other.images() == []


async def test_cut_download_resumes_with_range(proxy: CountingProxy, store: ImageStore,
                                               session: RegistrySession, tmp_path: Path) -> None:
    image = SampleImage([make_layer(400_000)])
    name = unique(proxy.host) + ":cut"
    put_image(store, image, name)
    await push(session, store, parse_reference(name))
    layer = image.layer_descriptors[0]
    proxy.reset()
    proxy.cut(f"/blobs/{layer.digest}".encode(), after=150_000)
    other = ImageStore(tmp_path / "other")
    await pull(session, other, parse_reference(name))
    assert other.read_blob(layer.digest) == image.layers[0][0]
    assert any(b"range: bytes=" in r.lower() for r in proxy.requests)
    assert proxy.received < layer.size + 100_000  # resumed, not restarted


class FlakyPatch(Forwarding):
    """Forwards everything, but reports the second PATCH as failed after the server got it."""

    def __init__(self) -> None:
        super().__init__()
        self.patches = 0
        self.status_checks = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "GET" and "/blobs/uploads/" in request.url.path:
            self.status_checks += 1
        if request.method == "PATCH":
            self.patches += 1
            if self.patches == 2:
                await response.aclose()
                raise httpx.ReadError("connection reset by peer")
        return response



async def test_chunked_upload_resumes_through_upload_status(shared_registry: RegistryServer,
                                                            store: ImageStore, tmp_path: Path) -> None:
    flaky = FlakyPatch()
    session = RegistrySession(ClientConfig(), transport=flaky, retry=FAST_RETRY)
    image = SampleImage([make_layer(50_000)])
    name = unique(shared_registry.host) + ":chunked"
    put_image(store, image, name)
    try:
        await push(session, store, parse_reference(name), chunk_size=8000, monolithic_max=0)
        assert flaky.status_checks == 1 and flaky.patches >= 6
        await assert_pulls_whole(session, tmp_path, name, image)
    finally:
        await session.aclose()


async def test_mirrors_in_order_then_the_registry(registry: RegistryServer, shared_registry: RegistryServer,
                                                  store: ImageStore, tmp_path: Path) -> None:
    image = SampleImage([make_layer(100)])
    path = f"mirror/r{uuid.uuid4().hex[:8]}"
    origin, mirror = f"{registry.host}/{path}:1", f"{shared_registry.host}/{path}:1"
    put_image(store, image, origin)
    plain = RegistrySession(ClientConfig(), retry=FAST_RETRY)
    await push(plain, store, parse_reference(origin))
    config = ClientConfig(registries={registry.host: RegistrySettings(mirrors=("127.0.0.1:9", shared_registry.host))})
    session = RegistrySession(config, retry=FAST_RETRY)
    try:
        seen = Recorder()
        # the dead mirror and the mirror without the image hand over to the registry
        result = await pull(session, ImageStore(tmp_path / "a"), parse_reference(origin), progress=seen)
        assert result.digest == image.digest
        assert sum("mirror" in line and "failed" in line for line in seen.lines) == 2
        put_image(store, image, mirror)
        await push(plain, store, parse_reference(mirror))
        registry.stop()  # now only the mirror can serve it
        result = await pull(session, ImageStore(tmp_path / "b"), parse_reference(origin))
        assert result.digest == image.digest
    finally:
        await session.aclose()
        await plain.aclose()


def test_media_types_kept(store: ImageStore) -> None:
    image = SampleImage([make_layer(10)], docker=True)
    put_image(store, image, "x/y:1")
    assert store.resolve("x/y:1").descriptor.media_type == mediatypes.DOCKER_MANIFEST


class _Breaking(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes], after: int) -> None:
        self.stream, self.after = stream, after

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in self.stream:
            yield chunk[: self.after - sent]
            sent += len(chunk)
            if sent >= self.after:
                raise httpx.WriteError("connection reset by peer")


class CutUpload(Forwarding):
    """Forwards everything, but breaks the first PATCH's body after `after` bytes."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.cut = False
        self.status_checks = 0
        self.patches: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "/blobs/uploads/" in request.url.path:
            self.status_checks += 1
        if request.method == "PATCH":
            self.patches.append(request.headers["content-range"])
            if not self.cut:
                self.cut = True
                request.stream = _Breaking(request.stream, self.after)  # type: ignore[arg-type]
        return await self.inner.handle_async_request(request)



async def test_streamed_patch_cut_midway_goes_on(shared_registry: RegistryServer, store: ImageStore,
                                                 tmp_path: Path) -> None:
    cut = CutUpload(after=1 << 20)
    session = RegistrySession(ClientConfig(), transport=cut, retry=FAST_RETRY)
    image = SampleImage([make_layer(3 << 20)])
    name = unique(shared_registry.host) + ":streamed"
    put_image(store, image, name)
    try:
        # the layer goes in one streamed PATCH (docker's way), which breaks after 1 MiB
        await push(session, store, parse_reference(name), monolithic_max=0)
        # The registry is asked how much it kept (a status request may come before the broken
        # request is done with, and a PATCH from a stale offset is refused: ask again), and the
        # last PATCH goes on from there to the end, not from 0.
        layer_patches = [p for p in cut.patches if p.endswith(f"-{image.layer_descriptors[0].size - 1}")]
        assert cut.status_checks >= 1 and int(layer_patches[-1].split("-")[0]) > 0, cut.patches
        await assert_pulls_whole(session, tmp_path, name, image)
    finally:
        await session.aclose()


class Recording(Forwarding):
    """Forwards everything, recording `(method, path, query)` of each request as it is sent and
    how many blob GETs were in flight at most (each held a little, so that they overlap)."""

    def __init__(self, hold: float = 0.0) -> None:
        super().__init__()
        self.hold = hold
        self.sent: list[tuple[str, str, str]] = []
        self.in_flight = self.most_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path, request.url.query.decode()))
        blob_get = request.method == "GET" and "/blobs/sha256:" in request.url.path
        if blob_get:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            await asyncio.sleep(self.hold)
        try:
            return await self.inner.handle_async_request(request)
        finally:
            if blob_get:
                self.in_flight -= 1



async def test_pull_pool_is_bounded_and_fetches_each_digest_once(shared_registry: RegistryServer,
                                                                 store: ImageStore, tmp_path: Path) -> None:
    twice = make_layer(300)  # a layer listed twice in the manifest is fetched once
    image = SampleImage([twice, *(make_layer(200 + i) for i in range(6)), twice])
    name = unique(shared_registry.host) + ":pool"
    put_image(store, image, name)
    plain = RegistrySession(ClientConfig(), retry=FAST_RETRY)
    await push(plain, store, parse_reference(name))
    await plain.aclose()
    recording = Recording(hold=0.05)
    session = RegistrySession(ClientConfig(), transport=recording, retry=FAST_RETRY)
    try:
        result = await pull(session, ImageStore(tmp_path / "other"), parse_reference(name), concurrency=3)
    finally:
        await session.aclose()
    fetched = [path.rsplit("/", 1)[1] for method, path, _ in recording.sent
               if method == "GET" and "/blobs/sha256:" in path]
    assert sorted(fetched) == sorted(str(d) for d in image.blobs())  # 7 layers + config, each once
    assert result.downloaded == 8
    assert recording.most_in_flight == 3  # concurrent, within the pool


async def test_push_order_layers_config_children_index_tag_last(shared_registry: RegistryServer,
                                                                 store: ImageStore) -> None:
    amd = SampleImage([make_layer(400), make_layer(500)], arch="amd64")
    arm = SampleImage([make_layer(600)], arch="arm64")
    for image in (amd, arm):
        for digest, data in image.blobs().items():
            store.put_blob(data, digest)
        store.put_blob(image.manifest)
    body, media = index_of([amd, arm])
    index = store.put_blob(body)
    name = unique(shared_registry.host) + ":multi"
    store.add(parse_reference(name), Descriptor(media, index, len(body)))
    recording = Recording()
    session = RegistrySession(ClientConfig(), transport=recording, retry=FAST_RETRY)
    seen = Recorder()
    try:
        result = await push(session, store, parse_reference(name), progress=seen)
    finally:
        await session.aclose()
    assert (result.digest, result.size) == (index, len(body))
    sent = recording.sent
    # a blob is in once the PUT that completes its upload (…?digest=…) is sent
    done = {q.split("digest=")[1].replace("%3A", ":"): i for i, (m, _, q) in enumerate(sent)
            if m == "PUT" and "digest=" in q}
    manifests = [(i, path.rsplit("/", 1)[1]) for i, (m, path, _) in enumerate(sent) if m == "PUT" and "/manifests/" in path]
    at = {ref: i for i, ref in manifests}
    for image in (amd, arm):
        config = str(Digest.from_bytes(image.config))
        layers = [done[str(d.digest)] for d in image.layer_descriptors]
        assert max(layers) < done[config] < at[str(image.digest)]  # layers, config, then the manifest
    # the index by its tag, after both children, and nothing after it
    assert manifests[-1][1] == "multi" and manifests[-1][0] == len(sent) - 1
    assert max(at[str(amd.digest)], at[str(arm.digest)]) < at["multi"]
    # every blob was asked about first (HEAD), before any upload of it
    heads = {path.rsplit("/", 1)[1]: i for i, (m, path, _) in enumerate(sent) if m == "HEAD"}
    assert all(heads[d] < i for d, i in done.items())


class RefusingMounts(Forwarding):
    """Forwards everything but cross-repository mounts, which are refused as Docker Hub refuses a
    source the account may not pull (401 with an error body)."""

    def __init__(self) -> None:
        super().__init__()
        self.mounts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and "mount" in request.url.params:
            self.mounts += 1
            return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
        return await self.inner.handle_async_request(request)



async def test_a_refused_mount_falls_back_to_an_upload(shared_registry: RegistryServer, store: ImageStore,
                                                       tmp_path: Path) -> None:
    image = SampleImage([make_layer(3000)])
    first, second = unique(shared_registry.host) + ":1", unique(shared_registry.host) + ":1"
    put_image(store, image, first)
    plain = RegistrySession(ClientConfig(), retry=FAST_RETRY)
    await push(plain, store, parse_reference(first))  # the store now knows where the blobs live
    await plain.aclose()
    store.add(parse_reference(second), image.descriptor())
    refusing = RefusingMounts()
    session = RegistrySession(ClientConfig(), transport=refusing, retry=FAST_RETRY)
    seen = Recorder()
    try:
        result = await push(session, store, parse_reference(second), progress=seen)
        assert refusing.mounts == 2  # the layer and the config each tried a mount, then went up
        assert result.uploaded == image.total()
        assert f"{image.layer_descriptors[0].digest.encoded[:12]}: Pushed" in seen.lines
        # A source that refused is forgotten (as docker): the next push does not ask it again.
        layer = image.layer_descriptors[0].digest
        assert store.sources(shared_registry.host, layer) == [parse_reference(second).path]
        await assert_pulls_whole(session, tmp_path, second, image)
    finally:
        await session.aclose()


class FlakyPut(Forwarding):
    """The first monolithic PUT answers 503 (Retry-After: 2) unsent; the second breaks after the
    registry has taken it; the rest go through."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and "digest" in request.url.params:
            self.puts += 1
            if self.puts == 1:
                return httpx.Response(503, headers={"Retry-After": "2"})
            if self.puts == 2:
                response = await self.inner.handle_async_request(request)
                await response.aclose()
                raise httpx.ReadError("connection reset by peer")
        return await self.inner.handle_async_request(request)



async def test_a_monolithic_upload_is_retried(shared_registry: RegistryServer, store: ImageStore,
                                              tmp_path: Path) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    flaky = FlakyPut()
    session = RegistrySession(ClientConfig(), transport=flaky, retry=RetryPolicy(attempts=4, sleep=sleep))
    image = SampleImage([make_layer(5000)])
    name = unique(shared_registry.host) + ":mono"
    put_image(store, image, name)
    try:
        result = await push(session, store, parse_reference(name), concurrency=1)
        assert result.digest == image.digest and flaky.puts == 4  # layer: 3 PUTs, config: 1
        assert waits[0] == 2.0  # as Retry-After asked
        await assert_pulls_whole(session, tmp_path, name, image)
    finally:
        await session.aclose()


async def test_a_blob_download_waits_as_retry_after_asks(store: ImageStore) -> None:
    data = os.urandom(1000)
    digest = Digest.from_bytes(data)
    answers = [(429, {"Retry-After": "7"}, b""),
               (503, {"Retry-After": "soon"}, b""),  # no usable advice: backoff
               (200, {"Content-Length": str(len(data))}, data)]

    class Answers(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            status, headers, body = answers.pop(0)
            return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(attempts=4, base_delay=0.5, sleep=sleep)
    async with RegistryClient("http://reg.test", transport=Answers(), retry=policy) as api:
        desc = Descriptor(mediatypes.OCI_LAYER_GZIP, digest, len(data))
        assert await download_blob(api, "a/b", desc, store, Reporter(), policy)
    assert store.read_blob(digest) == data
    assert waits == [7.0, 2.0]
