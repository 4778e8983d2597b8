"""The `pyreg-registry` command, run for real in a subprocess (and `main()` in-process)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from pyreg.registry.cli import distribution_dict, format_duration, main
from pyreg.registry.config import load_config
from tests.conftest import free_port

COMMAND = [sys.executable, "-m", "pyreg.registry.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without REGISTRY_* variables that would leak into the config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "PYREG_REGISTRY_"))}
    return {**env, **extra}


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=60,
                          env=env or clean_env(), cwd=cwd)


class Server:
    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen([*COMMAND, "serve", *args], env=env or clean_env(), cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr = ""

    def wait(self, url: str, verify: ssl.SSLContext | bool = True, timeout: float = 20) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.stderr}")
            try:
                return httpx.get(url, verify=verify, timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError(url)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
        return self.proc.returncode


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# -- failures: one line, exit 2 -------------------------------------------------------------------


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("pyreg-registry ")


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yml", "storage:\n  delete: {enabled: maybe}\n")
    result = run("serve", config)
    assert result.returncode == 2
    assert result.stderr == "pyreg-registry: storage.delete.enabled: expected a boolean, got 'maybe'\n"
    assert result.stdout == ""


def test_bad_env_override_names_the_variable(tmp_path: Path) -> None:
    result = run("serve", env=clean_env(REGISTRY_HTTP_ADDR="nowhere"))
    assert result.returncode == 2
    assert result.stderr.startswith("pyreg-registry: http.addr (from REGISTRY_HTTP_ADDR): ")
    assert result.stderr.count("\n") == 1


def test_missing_config_file(tmp_path: Path) -> None:
    result = run("serve", str(tmp_path / "absent.yml"))
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)
    assert "absent.yml: No such file" in result.stderr


def test_config_path_from_the_environment(tmp_path: Path) -> None:
    result = run("serve", env=clean_env(REGISTRY_CONFIGURATION_PATH=str(tmp_path / "nope.yml")))
    assert result.returncode == 2 and "nope.yml" in result.stderr


def test_bad_addr_flag() -> None:
    result = run("serve", "--addr", "localhost")
    assert result.returncode == 2 and result.stderr.startswith("pyreg-registry: --addr: ")


def test_missing_tls_files(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yml", "http:\n  tls: {certificate: /no/cert.pem, key: /no/key.pem}\n")
    result = run("serve", config)
    assert result.returncode == 2
    assert result.stderr == "pyreg-registry: http.tls.certificate: no such file '/no/cert.pem'\n"


def test_inmemory_refuses_several_workers() -> None:
    result = run("serve", "--workers", "2", env=clean_env(REGISTRY_STORAGE="inmemory"))
    assert result.returncode == 2 and "storage.inmemory" in result.stderr


# -- the config command ---------------------------------------------------------------------------


def test_config_command_masks_secrets(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yml", "http: {secret: hush}\nproxy: {remoteurl: 'https://up', password: pw}\n")
    result = run("config", config, env=clean_env(REGISTRY_STORAGE_DELETE_ENABLED="true"))
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["http"]["secret"] == "********" and shown["proxy"]["password"] == "********"
    assert shown["storage"]["delete"] == {"enabled": True}
    assert shown["storage"]["maintenance"]["uploadpurging"]["age"] == "168h"
    assert "hush" not in result.stdout and "pw" not in result.stdout


def test_config_command_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"], environ={"REGISTRY_HTTP_ADDR": ":6000"}) == 0
    assert yaml.safe_load(capsys.readouterr().out)["http"]["addr"] == ":6000"


def test_printed_config_reads_back_the_same(tmp_path: Path) -> None:
    original = load_config(str(Path(__file__).parent.parent / "deploy" / "config" / "full.yml"), {})
    printed = write(tmp_path / "printed.yml", yaml.safe_dump(distribution_dict(original, mask=False)))
    assert load_config(printed, {}) == original


@pytest.mark.parametrize(("seconds", "text"), [(604800, "168h"), (5400, "1h30m"), (0.5, "500ms"),
                                               (0, "0s"), (61.25, "1m1s250ms")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# -- serving --------------------------------------------------------------------------------------


def test_serve_embedded_default(tmp_path: Path, servers: list[Server]) -> None:
    port = free_port()
    server = Server("--addr", f"127.0.0.1:{port}", cwd=tmp_path)
    servers.append(server)
    response = server.wait(f"http://127.0.0.1:{port}/v2/")
    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    # A graceful stop; uvicorn then re-raises SIGTERM in a single process so the parent sees it.
    assert server.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in server.stderr
    line = f"listening on http://127.0.0.1:{port} with 1 worker, data in {tmp_path / 'registry-data'}"
    assert line in server.stderr


def test_serve_from_environment(tmp_path: Path, servers: list[Server]) -> None:
    port = free_port()
    server = Server(env=clean_env(**{
        "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "data"),
        "REGISTRY_HTTP_HEADERS_X-CONTENT-TYPE-OPTIONS": "[nosniff]",
    }))
    servers.append(server)
    response = server.wait(f"http://127.0.0.1:{port}/v2/")
    assert response.headers["x-content-type-options"] == "nosniff"  # http.headers on every response


def push_blob(base: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    response = httpx.post(f"{base}/v2/cli/test/blobs/uploads/", params={"digest": digest}, content=data)
    if response.status_code == 202:  # a registry that wants POST then PUT
        location = httpx.URL(base).join(response.headers["location"])
        response = httpx.put(location, params={"digest": digest}, content=data)
    assert response.status_code == 201, response.text
    return digest


def test_serve_two_workers(tmp_path: Path, servers: list[Server]) -> None:
    port = free_port()
    config = write(tmp_path / "c.yml", f"storage:\n  filesystem: {{rootdirectory: {tmp_path / 'data'}}}\n")
    server = Server(config, "--addr", f"127.0.0.1:{port}", "--workers", "2")
    servers.append(server)
    base = f"http://127.0.0.1:{port}"
    assert server.wait(f"{base}/v2/").status_code == 200
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    assert len(children) >= 2
    digest = push_blob(base, b"shared by every worker")
    # Fresh connections are spread over the workers: each must see the blob in the store.
    for _ in range(10):
        assert httpx.get(f"{base}/v2/cli/test/blobs/{digest}").content == b"shared by every worker"
    assert server.stop() in (0, -signal.SIGTERM)
    assert "with 2 workers" in server.stderr and "Traceback" not in server.stderr


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_serve_tls(tmp_path: Path, servers: list[Server]) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    config = write(tmp_path / "c.yml", f"""\
http:
  addr: 127.0.0.1:{port}
  tls: {{certificate: {cert}, key: {key}}}
storage:
  filesystem: {{rootdirectory: {tmp_path / 'data'}}}
""")
    server = Server(config, "--workers", "2")
    servers.append(server)
    response = server.wait(f"https://127.0.0.1:{port}/v2/", verify=ssl.create_default_context(cafile=str(cert)))
    assert response.status_code == 200
    server.stop()
    assert f"listening on https://127.0.0.1:{port}" in server.stderr


def test_debug_level_logs_json_with_access_log(tmp_path: Path, servers: list[Server]) -> None:
    port = free_port()
    config = write(tmp_path / "c.yml", f"""\
log: {{level: info, formatter: json, fields: {{service: registry}}}}
storage:
  filesystem: {{rootdirectory: {tmp_path / 'data'}}}
""")
    server = Server(config, "--addr", f"127.0.0.1:{port}", "--log-level", "debug")
    servers.append(server)
    server.wait(f"http://127.0.0.1:{port}/v2/")
    server.stop()
    records = [json.loads(line) for line in server.stderr.splitlines() if line.startswith("{")]
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert access and "GET /v2/" in access[0]["msg"] and access[0]["service"] == "registry"


def test_info_level_has_no_access_log(tmp_path: Path, servers: list[Server]) -> None:
    port = free_port()
    server = Server("--addr", f"127.0.0.1:{port}", "--root", str(tmp_path / "data"))
    servers.append(server)
    server.wait(f"http://127.0.0.1:{port}/v2/")
    server.stop()
    assert "GET /v2/" not in server.stderr
