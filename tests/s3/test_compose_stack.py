"""The S3 stack of docker-compose.yaml, run without Docker: the replicas' environment and the
load balancer's nginx configuration are read from the compose file itself, so what the stack
would run is what is tested (SeaweedFS from the test fixture, two `pyreg-registry serve`
replicas with the `registry-s3` service's environment, nginx with the `registry-lb` config)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import RegistryServer, free_port, require_tool, wait_for_http
from tests.interop.clients import Skopeo
from tests.interop.images import Layout, assert_identical
from tests.s3.registries import ROOT, serve_from_environment
from tests.s3.seaweed import BUCKET, SeaweedServer

pytestmark = [pytest.mark.slow, pytest.mark.interop]

COMPOSE = ROOT / "docker-compose.yaml"


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def replica_environ(seaweed: SeaweedServer, rootdirectory: str) -> dict[str, str]:
    """The `registry-s3` service's environment, pointed at the test's SeaweedFS and bucket."""
    env = {k: str(v) for k, v in compose()["services"]["registry-s3"]["environment"].items()}
    assert env["REGISTRY_STORAGE"] == "s3"
    env |= {"REGISTRY_STORAGE_S3_REGIONENDPOINT": seaweed.endpoint,
            "REGISTRY_STORAGE_S3_BUCKET": BUCKET,
            "REGISTRY_STORAGE_S3_ROOTDIRECTORY": rootdirectory,
            "REGISTRY_LOG_LEVEL": "warn"}
    return {**os.environ, **env}


def nginx_config(workdir: Path, port: int, replicas: list[RegistryServer]) -> str:
    """The `registry-lb` server block, with the compose service name replaced by an upstream of
    the replicas (Docker's DNS is not here) and its port by a free one on loopback."""
    block = str(compose()["configs"]["registry-lb"]["content"]).replace("$$", "$")
    lines = [line for line in block.splitlines() if not line.strip().startswith("resolver ")]
    block = "\n".join(lines).replace("listen 5001;", f"listen 127.0.0.1:{port};")
    assert "http://registry-s3:5000" in block
    block = block.replace("http://registry-s3:5000", "http://registry_s3")
    servers = "".join(f"server {r.host};" for r in replicas)
    temp = {name: workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return f"""daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
worker_processes 1;
{"user root;" if os.geteuid() == 0 else ""}
events {{}}
http {{
  access_log off;
  client_body_temp_path {temp["body"]};
  proxy_temp_path {temp["proxy"]};
  fastcgi_temp_path {temp["fastcgi"]};
  uwsgi_temp_path {temp["uwsgi"]};
  scgi_temp_path {temp["scgi"]};
  upstream registry_s3 {{ {servers} }}
{block}
}}
"""


@pytest.fixture
def stack(seaweedfs: SeaweedServer, tmp_path: Path) -> Iterator[str]:
    """The stack's address (nginx in front of two replicas on one bucket prefix)."""
    nginx = require_tool("nginx")
    env = replica_environ(seaweedfs, f"/compose-{uuid.uuid4().hex[:12]}")
    replicas: list[RegistryServer] = []
    workdir = Path(tempfile.mkdtemp(prefix="pyreg-lb-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(2):
            replicas.append(serve_from_environment(env, 2, tmp_path))
        port = free_port()
        config = workdir / "nginx.conf"
        config.write_text(nginx_config(workdir, port, replicas))
        checked = subprocess.run([nginx, "-t", "-c", str(config)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        proc = subprocess.Popen([nginx, "-c", str(config)], stderr=subprocess.DEVNULL)
        wait_for_http(f"http://127.0.0.1:{port}/v2/", proc)
        yield f"127.0.0.1:{port}"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        for server in replicas:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_push_and_pull_through_the_load_balancer(
    stack: str, skopeo: Skopeo, image: Layout, index_image: Layout, tmp_path: Path
) -> None:
    # Every request of a push may land on either replica: uploads continue across them.
    skopeo.copy(image.ref, f"docker://{stack}/compose/app:v1")
    skopeo.copy(index_image.ref, f"docker://{stack}/compose/app:multi", "--all")
    for tag, built, extra in (("v1", image, []), ("multi", index_image, ["--all"])):
        dest = tmp_path / f"pulled-{tag}"
        skopeo.copy(f"docker://{stack}/compose/app:{tag}", f"oci:{dest}:{tag}", *extra)
        assert_identical(built, dest, tag)
    # Upload URLs name the balancer (nginx passes the Host header on), not a replica.
    r = httpx.post(f"http://{stack}/v2/compose/app/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["location"]
    assert location.startswith("/") or location.startswith(f"http://{stack}/"), location
    r = httpx.get(f"http://{stack}/v2/compose/app/manifests/multi",
                  headers={"Accept": index_image.top.media_type})
    assert r.status_code == 200
    assert r.headers["docker-content-digest"] == index_image.top.digest
    # Blobs are streamed through the balancer (redirects are off in the stack).
    layer = image.images[0].blob_digests[-1]
    r = httpx.get(f"http://{stack}/v2/compose/app/blobs/{layer}")
    assert r.status_code == 200 and r.content == image.blob(layer)
