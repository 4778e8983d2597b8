"""What every handler shares: the registry's services, name and digest parsing, pagination."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import Request

from pyreg.oci.digest import Digest, DigestError
from pyreg.oci.reference import is_valid_name
from pyreg.registry.config import Config
from pyreg.registry.errors import (
    DigestInvalid,
    NameInvalid,
    PaginationNumberInvalid,
    SizeInvalid,
    Unsupported,
)
from pyreg.registry.services.blobs import BlobStore, RepositoryBlobs
from pyreg.registry.services.manifests import ManifestCache, ManifestStore
from pyreg.registry.services.uploads import UploadStore
from pyreg.registry.storage import StorageDriver


@dataclass
class Registry:
    """The services one app serves, built once from the configuration."""

    config: Config
    driver: StorageDriver
    blobs: BlobStore
    uploads: UploadStore
    manifest_cache: ManifestCache

    @classmethod
    def build(cls, config: Config, driver: StorageDriver) -> Registry:
        blobs = BlobStore(driver)
        return cls(config, driver, blobs, UploadStore(blobs), ManifestCache())

    def url(self, path: str) -> str:
        """The URL clients use for an API path: under `http.prefix`, absolute when `http.host`
        is set (distribution's rule), else relative, which every client resolves."""
        http = self.config.http
        base = "" if http.relativeurls or not http.host else http.host.rstrip("/")
        return f"{base}{http.prefix}{path}"

    def repository_blobs(self, name: str) -> RepositoryBlobs:
        return RepositoryBlobs(self.blobs, name)

    def manifests(self, name: str) -> ManifestStore:
        return ManifestStore(self.blobs, name, self.manifest_cache)

    def check_delete_enabled(self) -> None:
        if not self.config.storage.delete_enabled:
            raise Unsupported("deletion is disabled by the registry configuration")


def registry_of(request: Request) -> Registry:
    reg: Registry = request.app.state.registry
    return reg


def repository_name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not is_valid_name(name):
        raise NameInvalid(detail={"name": name[:300]})
    return name


def parse_digest(value: str) -> Digest:
    try:
        return Digest.parse(value)
    except DigestError as e:
        raise DigestInvalid(str(e), detail={"digest": value[:200]}) from None


def content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise SizeInvalid("invalid Content-Length")
    return int(raw)


def paginate(items: list[str], request: Request, path: str) -> tuple[list[str], dict[str, str]]:
    """Apply `?last=` and `?n=`, with a `Link` header when more remain (distribution's form)."""
    last = request.query_params.get("last")
    if last:
        items = [i for i in items if i > last]
    raw_n = request.query_params.get("n")
    if raw_n is None or raw_n == "":
        return items, {}
    if not raw_n.isdigit():
        raise PaginationNumberInvalid(detail={"n": raw_n[:50]})
    n = int(raw_n)
    if len(items) <= n:
        return items, {}
    page = items[:n]
    headers: dict[str, str] = {}
    if page:
        url = registry_of(request).url(path)
        headers["Link"] = f'<{url}?n={n}&last={quote(page[-1], safe="")}>; rel="next"'
    return page, headers
