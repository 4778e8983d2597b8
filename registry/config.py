"""Registry configuration: distribution's `config.yml` format, with REGISTRY_* overrides.

(minimal placeholder: the full loader replaces this)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TLSConfig:
    certificate: str | None = None
    key: str | None = None


@dataclass
class HTTPConfig:
    addr: str = "127.0.0.1:5000"
    secret: str | None = None
    prefix: str = ""
    tls: TLSConfig = field(default_factory=TLSConfig)


@dataclass
class UploadPurgingConfig:
    enabled: bool = True
    age: float = 168 * 3600.0  # seconds
    interval: float = 24 * 3600.0
    dryrun: bool = False


@dataclass
class StorageConfig:
    driver: str = "filesystem"
    filesystem_root: str = "./registry-data"
    delete_enabled: bool = False
    redirect_disable: bool = False
    uploadpurging: UploadPurgingConfig = field(default_factory=UploadPurgingConfig)
    s3: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    version: str = "0.1"
    log_level: str = "info"
    http: HTTPConfig = field(default_factory=HTTPConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    auth: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, Any] = field(default_factory=dict)
