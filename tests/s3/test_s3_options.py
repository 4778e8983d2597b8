"""The s3 driver's configuration: distribution's `storage.s3` keys and defaults (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from pyreg.registry.app import build_driver
from pyreg.registry.config import Config, StorageConfig
from pyreg.registry.storage.s3 import S3Driver
from pyreg.registry.storage.s3_bucket import MiB, S3Options


def options(**params: Any) -> S3Options:
    return S3Options.from_params({"bucket": "b", "region": "eu-west-1", **params})


def test_defaults_are_distributions() -> None:
    o = options()
    assert o.endpoint is None and o.forcepathstyle is False  # AWS: virtual-hosted buckets
    assert o.chunksize == 10 * MiB
    assert o.copy_threshold == 32 * MiB and o.copy_chunksize == 32 * MiB
    assert o.rootdirectory == "" and o.region == "eu-west-1"


def test_regionendpoint_takes_its_scheme_from_secure() -> None:
    assert options(regionendpoint="127.0.0.1:8333").endpoint == "https://127.0.0.1:8333"
    assert options(regionendpoint="127.0.0.1:8333", secure=False).endpoint == "http://127.0.0.1:8333"
    assert options(regionendpoint="127.0.0.1:8333", secure="false").endpoint == "http://127.0.0.1:8333"
    assert options(regionendpoint="http://s3:1", secure=True).endpoint == "http://s3:1"


def test_path_style_is_the_default_with_an_endpoint() -> None:
    assert options(regionendpoint="http://s3:1").forcepathstyle is True
    assert options(regionendpoint="http://s3:1", forcepathstyle="false").forcepathstyle is False


def test_sizes_from_strings_and_limits() -> None:
    o = options(chunksize="6291456", multipartcopythresholdsize=64 * MiB)
    assert o.chunksize == 6 * MiB and o.copy_threshold == 64 * MiB
    with pytest.raises(ValueError, match="chunksize"):
        options(chunksize=MiB)
    with pytest.raises(ValueError, match="bucket"):
        S3Options.from_params({"region": "x"})


def test_keys_follow_rootdirectory_as_distribution() -> None:
    driver = S3Driver(options(rootdirectory="/registry/", regionendpoint="http://127.0.0.1:1",
                              accesskey="a", secretkey="b"))
    try:
        assert driver.bucket.key("/docker/registry/v2/x") == "registry/docker/registry/v2/x"
        assert driver.bucket.path("registry/docker/x") == "/docker/x"
    finally:
        driver.close()
    driver = S3Driver(options(regionendpoint="http://127.0.0.1:1", accesskey="a", secretkey="b"))
    try:
        assert driver.bucket.key("/docker/x") == "docker/x"
        assert driver.bucket.path("docker/x") == "/docker/x"
    finally:
        driver.close()


def test_build_driver_makes_an_s3_driver() -> None:
    params = {"bucket": "b", "region": "us-east-1", "regionendpoint": "http://127.0.0.1:1",
              "accesskey": "a", "secretkey": "b"}
    driver = build_driver(Config(storage=StorageConfig(driver="s3", s3=params)))
    assert isinstance(driver, S3Driver)
    driver.close()
    assert driver.name == "s3" and driver.options.endpoint == "http://127.0.0.1:1"
