"""Running the registry test suites on S3 storage (`PYREG_TEST_STORAGE=s3`, `-p tests.s3.suite`).

As a pytest plugin it starts one SeaweedFS for the session (on first use, stopped at the end) and
makes every registry the suites start keep its data there instead of in a directory:

- `start_pyreg` gets `storage.s3` on the session's bucket, under a root directory of its own
  derived from the test's storage root (so a registry restarted on the same root, as the restart
  and crash tests do, finds its data again);
- `start_distribution` (the oracle) gets distribution's `s3` driver on the same bucket, keys laid
  out the same way, so the data-directory interchange tests exchange a bucket prefix instead;
- `RegistryServer.storage` lists and reads keys under that prefix, so the tests that look at the
  stored layout check the bucket.

Blob GETs: the spec tests (tests/api, tests/registry) check the registry's own answer header by
header (Range, ETag, Docker-Content-Digest), so their registries stream blobs themselves
(`storage.redirect.disable: true`); every other test's registry answers with the default, a 307 to
a presigned URL, which the real clients of the interop tests follow, as they do with distribution
on S3. `PYREG_TEST_S3_REDIRECT=disable` or `=enable` sets one or the other for every test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

STORAGE_ENV = "PYREG_TEST_STORAGE"
REDIRECT_ENV = "PYREG_TEST_S3_REDIRECT"
SUITE_BUCKET = "pyreg-suite"
# Suites whose registries stream blobs instead of redirecting (see above).
STREAMING_SUITES = ("tests/api/", "tests/registry/")

_current_test = ""  # the node id of the test being set up: its registries follow its suite


def _redirect_disabled() -> bool:
    forced = os.environ.get(REDIRECT_ENV, "")
    if forced in ("disable", "enable"):
        return forced == "disable"
    return _current_test.startswith(STREAMING_SUITES)


def s3_storage_on() -> bool:
    return os.environ.get(STORAGE_ENV, "") == "s3"


def root_prefix(root: Path) -> str:
    """The bucket prefix standing for a storage root directory: `<hash of the path>/data`.

    Its parent (`<hash>`) stands for the root's parent directory, which the name tests check for
    anything that escaped the root.
    """
    return f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:20]}/data"


@dataclass
class S3View:
    """`RegistryServer.storage` on S3: the keys under one prefix of a bucket."""

    client: Any
    bucket: str
    prefix: str  # without slashes at either end

    def _keys(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        return keys

    def _key(self, path: str) -> str:
        return f"{self.prefix}/{path.strip('/')}".rstrip("/")

    def files(self, under: str = "") -> set[str]:
        start = len(self.prefix) + 1
        return {k[start:] for k in self._keys(self._key(under) + "/")}

    def read(self, path: str) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(path))
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(path) from None
        with obj["Body"] as body:
            data: bytes = body.read()
        return data

    def exists(self, path: str) -> bool:
        key = self._key(path)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except self.client.exceptions.ClientError:
            listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key + "/", MaxKeys=1)
            return bool(listed.get("Contents"))

    def beside_root(self) -> set[str]:
        parent, _, name = self.prefix.rpartition("/")
        start = len(parent) + 1
        return {k[start:].split("/", 1)[0] for k in self._keys(parent + "/")} - {name}


class SuiteStorage:
    """The session's SeaweedFS and bucket, started on first use."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.server: Any = None  # tests.s3.seaweed.SeaweedServer
        self.client: Any = None
        self.workdir: Path | None = None

    def ensure(self) -> Any:
        from tests.s3.seaweed import start_seaweedfs

        if self.server is None or self.server.proc is None or self.server.proc.poll() is not None:
            self.stop()
            self.workdir = Path(tempfile.mkdtemp(prefix="pyreg-suite-s3-"))
            self.server = start_seaweedfs(self.workdir, buckets=(SUITE_BUCKET,))
            self.client = self.server.client()
            self.config.add_cleanup(self.stop)
        return self.server

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)  # the session's bucket, gigabytes
            self.workdir = None

    def view(self, root: Path) -> S3View:
        self.ensure()
        return S3View(self.client, SUITE_BUCKET, root_prefix(root))

    def pyreg_storage(self, root: Path) -> dict[str, Any]:
        """The `storage` section of a pyreg config (its `delete` etc. are kept by the caller)."""
        server = self.ensure()
        s3 = {"bucket": SUITE_BUCKET, "region": "us-east-1", "regionendpoint": server.endpoint,
              "accesskey": "suite", "secretkey": "suite-secret", "forcepathstyle": True,
              "rootdirectory": "/" + root_prefix(root)}
        section: dict[str, Any] = {"s3": s3}
        if _redirect_disabled():
            section["redirect"] = {"disable": True}
        return section

    def distribution_storage(self, root: Path) -> dict[str, Any]:
        """distribution 2.8's `storage.s3` keys for the same bucket and prefix."""
        server = self.ensure()
        s3 = {"region": "us-east-1", "bucket": SUITE_BUCKET, "regionendpoint": server.endpoint,
              "accesskey": "suite", "secretkey": "suite-secret", "secure": False,
              "v4auth": True, "rootdirectory": "/" + root_prefix(root)}
        return {"s3": s3}


def _swap_storage(text: str, storage: dict[str, Any]) -> str:
    """A config's text with its storage driver replaced (its delete/redirect/... kept)."""
    doc = yaml.safe_load(text) or {}
    section = {k: v for k, v in (doc.get("storage") or {}).items()
               if k in ("delete", "maintenance", "redirect", "cache")}
    doc["storage"] = {**section, **storage}
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the test's fixtures (and so its registries) are set up."""
    global _current_test
    _current_test = item.nodeid


def pytest_configure(config: pytest.Config) -> None:
    if not s3_storage_on():
        return
    import tests.conftest as shared

    storage = SuiteStorage(config)
    original_pyreg = shared.start_pyreg
    original_distribution = shared.start_distribution
    original_write = shared.write_config

    def start_pyreg(root: Path, config: Path | None = None, workers: int = 1,
                    extra: str = "") -> shared.RegistryServer:
        if config is None:
            config = root.parent / f"config-s3-{root_prefix(root)[:12]}-{os.urandom(3).hex()}.yml"
            original_write(config, root, "127.0.0.1:5000", extra)  # start_pyreg gives --addr
        text = _swap_storage(config.read_text(), storage.pyreg_storage(root))
        swapped = config.with_name(config.stem + "-s3.yml")
        swapped.write_text(text)
        server = original_pyreg(root, swapped, workers)
        server.view = storage.view(root)
        return server

    def start_distribution(root: Path, extra: str = "") -> shared.RegistryServer:
        def write_config(path: Path, root: Path, addr: str, extra: str = "") -> None:
            original_write(path, root, addr, extra)
            path.write_text(_swap_storage(path.read_text(), storage.distribution_storage(root)))

        shared.write_config = write_config
        try:
            server = original_distribution(root, extra)
        finally:
            shared.write_config = original_write
        server.view = storage.view(root)
        return server

    _move_in_process_apps(storage)
    starters: dict[str, Callable[..., shared.RegistryServer]] = {
        "start_pyreg": start_pyreg, "start_distribution": start_distribution,
    }
    for name, fn in starters.items():
        setattr(shared, name, fn)


_in_process_drivers: list[Any] = []


def _move_in_process_apps(storage: SuiteStorage) -> None:
    """Apps built in-process (`create_app(config)`, tests/registry) on a directory get the S3
    driver under the prefix that stands for that directory: two apps on one directory (two
    workers, or a restart) then share one prefix."""
    from pyreg.registry import app as app_module

    original = app_module.build_driver

    def build_driver(config: Any) -> Any:
        if config.storage.driver != "filesystem":
            return original(config)
        root = Path(config.storage.filesystem_root)
        section = storage.pyreg_storage(root)
        config.storage.driver = "s3"
        config.storage.s3 = section["s3"]
        config.storage.redirect_disable = "redirect" in section
        driver = original(config)
        _in_process_drivers.append(driver)
        return driver

    app_module.build_driver = build_driver


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """In-process apps run no lifespan: close their drivers' threads and connections here."""
    while _in_process_drivers:
        _in_process_drivers.pop().close()
