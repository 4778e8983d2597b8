"""Thin wrappers around the real clients (skopeo, podman, docker) that the interop tests drive.

Every command runs with its output captured; a failure raises ``AssertionError`` carrying the
command line, its exit status and both streams, so a pytest report shows what the client said.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def run(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 180,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(cmd),
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed with exit status {proc.returncode}: {' '.join(cmd)}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def without_ca_bundles() -> dict[str, str]:
    """The environment for Go clients: a stray CA-bundle variable must not change their TLS set-up."""
    return {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}


@dataclass
class Skopeo:
    binary: str
    tmpdir: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = without_ca_bundles()
        env["TMPDIR"] = str(self.tmpdir)
        return run([self.binary, "--insecure-policy", *args], env=env, check=check)

    def copy(self, src: str, dest: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self(
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            *extra,
            src,
            dest,
        )

    def inspect_raw(self, ref: str) -> bytes:
        # --raw prints the manifest bytes as served; text mode keeps them intact for JSON.
        return self("inspect", "--raw", "--tls-verify=false", ref).stdout.encode()

    def inspect(self, ref: str) -> dict[str, Any]:
        out = self("inspect", "--tls-verify=false", ref).stdout
        doc: dict[str, Any] = json.loads(out)
        return doc

    def list_tags(self, ref: str) -> list[str]:
        out = json.loads(self("list-tags", "--tls-verify=false", ref).stdout)
        tags: list[str] = out["Tags"]
        return tags

    def delete(self, ref: str) -> subprocess.CompletedProcess[str]:
        return self("delete", "--tls-verify=false", ref)


@dataclass
class Podman:
    """podman on a throwaway store under the test's tmp directory (never the machine's own)."""

    binary: str
    base: Path
    global_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("root", "runroot", "tmp"):
            (self.base / name).mkdir(parents=True, exist_ok=True)
        self.global_args = [
            "--root",
            str(self.base / "root"),
            "--runroot",
            str(self.base / "runroot"),
            "--tmpdir",
            str(self.base / "tmp"),
            # vfs leaves no mounts behind, so pytest can delete the tmp directory afterwards.
            "--storage-driver",
            "vfs",
            # crun refuses this machine's hybrid cgroup set-up; runc with cgroupfs works.
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        env = without_ca_bundles()
        env["TMPDIR"] = str(self.base / "tmp")
        env["CONTAINERS_REGISTRIES_CONF"] = str(self._registries_conf())
        return run([self.binary, *self.global_args, *args], env=env, check=check, timeout=timeout)

    def _registries_conf(self) -> Path:
        # Fully qualified names only: no short-name prompts, no search registries.
        path = self.base / "registries.conf"
        if not path.exists():
            path.write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
        return path

    def image_digest(self, ref: str) -> str:
        return self("image", "inspect", "--format", "{{.Digest}}", ref).stdout.strip()

    def run_container(self, image: str, *cmd: str) -> str:
        return self(
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            image,
            *cmd,
        ).stdout

    def reset(self) -> None:
        self("rmi", "--all", "--force", check=False)


@dataclass
class Docker:
    binary: str
    host: str  # unix:///…/docker.sock
    config_dir: Path

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        env = without_ca_bundles()
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.config_dir)
        return run([self.binary, *args], env=env, check=check, timeout=timeout)

    def push(self, ref: str) -> tuple[str, str]:
        """Push and return (manifest digest, output) as docker reports them."""
        out = self("push", ref).stdout
        found = re.search(r"digest: (sha256:[0-9a-f]{64}) size: \d+", out)
        assert found, f"docker push printed no digest:\n{out}"
        return found.group(1), out

    def repo_digests(self, ref: str) -> list[str]:
        out = self("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout
        digests: list[str] = json.loads(out)
        return digests
