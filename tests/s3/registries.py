"""pyreg processes on a SeaweedFS bucket: replicas sharing one prefix, for the replica and outage
tests (the whole-suite plugin, `suite.py`, starts its registries its own way)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from tests.conftest import RegistryServer, free_port, serving, start_pyreg
from tests.s3.seaweed import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedServer
from tests.s3.suite import S3View

ROOT = Path(__file__).resolve().parent.parent.parent
MINIMAL = ROOT / "deploy" / "config" / "minimal.yml"  # filesystem storage, replaced by the env


def s3_config(seaweed: SeaweedServer, rootdirectory: str, redirect: bool = True,
              bucket: str = BUCKET) -> dict[str, object]:
    """A pyreg configuration (distribution's format) on `seaweed`'s bucket under a prefix."""
    storage: dict[str, object] = {
        "s3": {"bucket": bucket, "region": "us-east-1", "regionendpoint": seaweed.endpoint,
               "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY, "forcepathstyle": True,
               "rootdirectory": rootdirectory},
        "delete": {"enabled": True},
    }
    if not redirect:
        storage["redirect"] = {"disable": True}
    return {"version": 0.1, "log": {"level": "warn"}, "http": {"addr": "127.0.0.1:5000",
            "secret": "replicas-share-this"}, "storage": storage}


def fresh_root() -> str:
    return f"/replicas-{uuid.uuid4().hex[:12]}"


def start_s3_pyreg(seaweed: SeaweedServer, workdir: Path, rootdirectory: str,
                   redirect: bool = True, workers: int = 1) -> RegistryServer:
    """One registry process on the bucket; start several on one `rootdirectory` for replicas."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"s3-{uuid.uuid4().hex[:8]}.yml"
    config.write_text(yaml.safe_dump(s3_config(seaweed, rootdirectory, redirect)))
    server = start_pyreg(workdir / "data", config=config, workers=workers)
    server.view = S3View(seaweed.shared_client(), BUCKET, rootdirectory.strip("/"))
    return server


def s3_environ(seaweed: SeaweedServer, rootdirectory: str) -> dict[str, str]:
    return {
        **os.environ,
        "REGISTRY_STORAGE": "s3",
        "REGISTRY_STORAGE_S3_BUCKET": BUCKET,
        "REGISTRY_STORAGE_S3_REGION": "us-east-1",
        "REGISTRY_STORAGE_S3_REGIONENDPOINT": seaweed.endpoint,
        "REGISTRY_STORAGE_S3_ACCESSKEY": ACCESS_KEY,
        "REGISTRY_STORAGE_S3_SECRETKEY": SECRET_KEY,
        "REGISTRY_STORAGE_S3_ROOTDIRECTORY": rootdirectory,
        "REGISTRY_STORAGE_S3_CHUNKSIZE": str(5 << 20),
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
        "REGISTRY_HTTP_SECRET": "shared-by-the-replicas",
        "REGISTRY_LOG_LEVEL": "warn",
    }


def serve_from_environment(env: dict[str, str], workers: int, workdir: Path) -> RegistryServer:
    addr = f"127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "pyreg.registry.cli", "serve", str(MINIMAL), "--addr", addr,
           "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, cwd=workdir)
    server = RegistryServer(f"http://{addr}", addr, workdir / "unused", MINIMAL, proc)
    return serving(server)
