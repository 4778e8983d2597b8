"""HTTPS registries: a self-signed certificate fails in one line naming the certificate; a registry
listed as insecure (loopback is, unless configured otherwise) is used without verification, as
docker does; a trusted certificate is verified."""

from __future__ import annotations

import io
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pyreg.client.cli import main
from pyreg.client.environment import Environment
from pyreg.client.tls import LazyTrustContext
from tests.client.cli import Pyreg
from tests.client.conftest import FAST_RETRY
from tests.client.test_commands import seeded
from tests.conftest import free_port
from tests.test_cli import self_signed


@pytest.fixture(scope="module")
def https_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """pyreg's registry over HTTPS with a self-signed certificate: (host, certificate)."""
    base = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(base)
    port = free_port()
    config = base / "config.yml"
    config.write_text(f"""version: 0.1
log: {{level: warn}}
http:
  addr: 127.0.0.1:{port}
  tls: {{certificate: {cert}, key: {key}}}
storage:
  filesystem: {{rootdirectory: {base / 'data'}}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "pyreg.registry.cli", "serve", str(config)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"https://127.0.0.1:{port}/v2/", verify=False, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"127.0.0.1:{port}", cert
    finally:
        proc.terminate()
        proc.wait(10)


def test_self_signed_certificate_fails_in_one_line(https_registry: tuple[str, Path], tmp_path: Path) -> None:
    host, _ = https_registry
    pyreg = Pyreg(tmp_path)
    # loopback is insecure by default, as in docker; this makes it a registry to verify
    pyreg.config(f'[registries."{host}"]\ninsecure = false\n')
    result = pyreg("pull", f"{host}/tls/app:1")
    assert result.code == 1, result
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert "certificate" in result.err and "self-signed" in result.err, result.err
    assert result.err.startswith(f"Error: https://{host}/v2/: tls: failed to verify certificate"), result.err


def test_insecure_registry_skips_verification(https_registry: tuple[str, Path], tmp_path: Path) -> None:
    host, _ = https_registry
    ref = f"{host}/tls/r{uuid.uuid4().hex[:8]}:1"
    pyreg = Pyreg(tmp_path / "a")
    pyreg.config(f'insecure-registries = ["{host}"]\n')
    image = seeded(pyreg, ref)
    pushed = pyreg("push", ref)
    assert pushed.code == 0, pushed.err
    # loopback without any configuration: insecure too (HTTP is tried, then HTTPS unverified)
    plain = Pyreg(tmp_path / "b")
    pulled = plain("pull", ref)
    assert pulled.code == 0, pulled.err
    assert f"Digest: {image.digest}" in pulled.out


def test_trusted_certificate_is_verified(https_registry: tuple[str, Path], tmp_path: Path) -> None:
    host, cert = https_registry
    ref = f"{host}/tls/r{uuid.uuid4().hex[:8]}:1"
    pyreg = Pyreg(tmp_path)
    pyreg.config(f'[registries."{host}"]\ninsecure = false\n')
    seeded(pyreg, ref)
    err = io.StringIO()
    env = Environment(stdout=io.StringIO(), stderr=err, environ=pyreg.environ, retry=FAST_RETRY,
                      verify=ssl.create_default_context(cafile=str(cert)))
    assert main(["push", "-q", ref], env) == 0, err.getvalue()


def test_trust_is_loaded_at_the_first_handshake(https_registry: tuple[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    host, cert = https_registry
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # as httpx: this bundle instead of certifi's
    lazy = LazyTrustContext(ssl.PROTOCOL_TLS_CLIENT)
    assert lazy.cert_store_stats()["x509_ca"] == 0 and lazy.verify_mode == ssl.CERT_REQUIRED
    ref = f"{host}/tls/r{uuid.uuid4().hex[:8]}:1"
    pyreg = Pyreg(tmp_path)
    pyreg.config(f'[registries."{host}"]\ninsecure = false\n')
    seeded(pyreg, ref)
    err = io.StringIO()
    env = Environment(stdout=io.StringIO(), stderr=err, environ=pyreg.environ, retry=FAST_RETRY, verify=lazy)
    assert main(["push", "-q", ref], env) == 0, err.getvalue()
    assert lazy.cert_store_stats()["x509_ca"] == 1
