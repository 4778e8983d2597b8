"""The `pyreg-registry` command (minimal placeholder: the full one replaces this)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

import yaml

from pyreg.registry.config import Config

CONFIG_ENV = "PYREG_REGISTRY_CONFIG_JSON"


def _load(path: str | None) -> Config:
    cfg = Config()
    if path:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
        storage = raw.get("storage") or {}
        if "filesystem" in storage:
            cfg.storage.filesystem_root = storage["filesystem"].get("rootdirectory", cfg.storage.filesystem_root)
        if "delete" in storage:
            cfg.storage.delete_enabled = bool(storage["delete"].get("enabled", False))
        http = raw.get("http") or {}
        cfg.http.addr = http.get("addr", cfg.http.addr)
    return cfg


def app_factory():  # type: ignore[no-untyped-def]
    from pyreg.registry.app import create_app
    from pyreg.registry.config import HTTPConfig, StorageConfig, TLSConfig, UploadPurgingConfig

    raw = json.loads(os.environ[CONFIG_ENV])
    cfg = Config(**raw)
    cfg.http = HTTPConfig(**raw["http"])
    cfg.http.tls = TLSConfig(**raw["http"]["tls"])
    cfg.storage = StorageConfig(**raw["storage"])
    cfg.storage.uploadpurging = UploadPurgingConfig(**raw["storage"]["uploadpurging"])
    return create_app(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyreg-registry")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("config", nargs="?")
    serve.add_argument("--addr")
    serve.add_argument("--root")
    serve.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    cfg = _load(args.config)
    if args.addr:
        cfg.http.addr = args.addr
    if args.root:
        cfg.storage.filesystem_root = args.root
    os.environ[CONFIG_ENV] = json.dumps(asdict(cfg))
    host, _, port = cfg.http.addr.rpartition(":")
    import uvicorn

    uvicorn.run(
        "pyreg.registry.cli:app_factory",
        factory=True,
        host=host or "0.0.0.0",
        port=int(port),
        workers=args.workers,
        log_level="warning",
        loop="uvloop",
        http="httptools",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
