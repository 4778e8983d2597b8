"""Builders and small HTTP helpers for the black-box API tests.

Everything here speaks the wire protocol only: digests are computed with hashlib and manifests are
built as plain dicts, so the tests never share code (or bugs) with the server under test.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from tests.auth.suite import suite_headers

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# What real clients send: every manifest type they understand.
ACCEPT_ALL = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def unique_repo(prefix: str = "t") -> str:
    return f"{prefix}/r{uuid.uuid4().hex[:12]}"


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def descriptor(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def manifest_descriptor(body: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return descriptor(body, media_type, **extra)


def empty_descriptor() -> dict[str, Any]:
    return {"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2}


def config_bytes(seed: str | None = None) -> bytes:
    """A small, valid-looking image config that is unique per call unless seeded."""
    seed = seed or uuid.uuid4().hex
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"seed": seed}},
            "rootfs": {"type": "layers", "diff_ids": []},
        }
    ).encode()


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def oci_manifest(
    config: bytes,
    layers: list[bytes],
    *,
    config_type: str = OCI_CONFIG,
    layer_type: str = OCI_LAYER,
    media_type_field: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    m: dict[str, Any] = {"schemaVersion": 2}
    if media_type_field:
        m["mediaType"] = OCI_MANIFEST
    m["config"] = descriptor(config, config_type)
    m["layers"] = [descriptor(layer, layer_type) for layer in layers]
    m.update(extra)
    return m


def docker_manifest(config: bytes, layers: list[bytes]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(config, DOCKER_CONFIG),
        "layers": [descriptor(layer, DOCKER_LAYER) for layer in layers],
    }


def index_of(
    children: list[tuple[bytes, str]], media_type: str = OCI_INDEX, **extra: Any
) -> dict[str, Any]:
    platforms = [("amd64", "linux"), ("arm64", "linux"), ("s390x", "linux"), ("ppc64le", "linux")]
    manifests = []
    for i, (body, child_type) in enumerate(children):
        arch, os_ = platforms[i % len(platforms)]
        manifests.append(descriptor(body, child_type, platform={"architecture": arch, "os": os_}))
    idx: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}
    idx.update(extra)
    return idx


def with_query(url: str, **params: str) -> str:
    """Add query parameters to a URL, keeping the ones it has (upload Locations may carry state)."""
    from urllib.parse import urlencode

    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{urlencode(params)}"


def location_url(base: str, resp: httpx.Response) -> str:
    """The absolute URL of a response's Location header (servers may send a relative one)."""
    location = resp.headers.get("location")
    assert location, f"no Location header in {resp.status_code} response: {dict(resp.headers)}"
    return str(urljoin(base + "/", location))


def location_path(base: str, resp: httpx.Response) -> str:
    parts = urlsplit(location_url(base, resp))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def assert_error(
    resp: httpx.Response, status: int | set[int], codes: str | set[str] | None = None
) -> None:
    """The response is an error of the spec's shape with the expected status and code."""
    statuses = {status} if isinstance(status, int) else status
    assert resp.status_code in statuses, (
        f"{resp.request.method} {resp.request.url}: expected {sorted(statuses)}, "
        f"got {resp.status_code}: {resp.text[:300]}"
    )
    if resp.request.method == "HEAD":
        assert resp.content == b""
        return
    assert resp.headers.get("content-type", "").split(";")[0].strip() == "application/json", (
        f"error Content-Type is {resp.headers.get('content-type')!r}"
    )
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"], body
    for err in body["errors"]:
        assert isinstance(err, dict), body
        assert isinstance(err.get("code"), str) and err["code"] == err["code"].upper(), body
        assert isinstance(err.get("message"), str), body
        assert set(err) <= {"code", "message", "detail"}, body
    if codes is not None:
        wanted = {codes} if isinstance(codes, str) else codes
        got = {err["code"] for err in body["errors"]}
        assert got & wanted, f"expected error code in {sorted(wanted)}, got {sorted(got)}: {body}"


def error_codes(resp: httpx.Response) -> set[str]:
    try:
        return {e["code"] for e in resp.json()["errors"]}
    except (ValueError, KeyError, TypeError):
        return set()


@dataclass
class Api:
    """A thin wrapper over an httpx client speaking to one registry."""

    client: httpx.Client
    base: str

    # ---- blobs

    def start_upload(self, repo: str, **params: str) -> httpx.Response:
        return self.client.post(f"/v2/{repo}/blobs/uploads/", params=params or None)

    def upload_path(self, resp: httpx.Response) -> str:
        return location_path(self.base, resp)

    def push_blob(self, repo: str, data: bytes, algorithm: str = "sha256") -> str:
        """POST then PUT with the body: the one upload flow every registry implements."""
        d = digest_of(data, algorithm)
        r = self.start_upload(repo)
        assert r.status_code == 202, r.text
        r = self.client.put(
            with_query(self.upload_path(r), digest=d),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, f"blob push failed: {r.status_code} {r.text}"
        return d

    def push_blobs(self, repo: str, *blobs: bytes) -> None:
        for b in blobs:
            self.push_blob(repo, b)

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.client.head(f"/v2/{repo}/blobs/{digest}")
        assert r.status_code in (200, 404), r
        return r.status_code == 200

    # ---- manifests

    def put_manifest(
        self, repo: str, ref: str, body: bytes | dict[str, Any], media_type: str | None = None
    ) -> httpx.Response:
        if isinstance(body, dict):
            media_type = media_type or body.get("mediaType")
            body = dumps(body)
        assert media_type, "a media type is needed"
        return self.client.put(
            f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type}
        )

    def get_manifest(self, repo: str, ref: str, method: str = "GET") -> httpx.Response:
        return self.client.request(
            method, f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT_ALL}
        )

    def push_image(
        self,
        repo: str,
        tag: str | None = None,
        *,
        layers: int = 2,
        media_type: str = OCI_MANIFEST,
        **extra: Any,
    ) -> tuple[bytes, str]:
        """Push config + layers + manifest; return (manifest bytes, manifest digest)."""
        config = config_bytes()
        blobs = [random_bytes(64 + i) for i in range(layers)]
        self.push_blobs(repo, config, *blobs)
        if media_type == DOCKER_MANIFEST:
            m = docker_manifest(config, blobs)
        else:
            m = oci_manifest(config, blobs, **extra)
        body = dumps(m)
        d = digest_of(body)
        r = self.put_manifest(repo, tag or d, body, media_type)
        assert r.status_code == 201, f"manifest push failed: {r.status_code} {r.text}"
        return body, d

    def tags(self, repo: str, **params: str | int) -> httpx.Response:
        return self.client.get(f"/v2/{repo}/tags/list", params=params or None)


def raw_http(
    host: str, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A request whose target goes on the wire exactly as given (no dot-segment normalisation)."""
    h, port = host.rsplit(":", 1)
    conn = http.client.HTTPConnection(h, int(port), timeout=30)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        all_headers = (
            {"Content-Length": str(len(body))} if body or method in ("PUT", "POST", "PATCH") else {}
        )
        all_headers.update(suite_headers(host))  # a token, when the suite runs with auth on
        all_headers.update(headers or {})
        for k, v in all_headers.items():
            conn.putheader(k, v)
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def send_truncated(host: str, method: str, target: str, claimed: int, data: bytes) -> bytes:
    """Send headers claiming `claimed` bytes, send only `data`, then close: a client that died."""
    h, port = host.rsplit(":", 1)
    with socket.create_connection((h, int(port)), timeout=10) as s:
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {claimed}\r\n\r\n"
        ).encode()
        s.sendall(head + data)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return received
