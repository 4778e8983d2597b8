"""What a command sees of the world, injected rather than read from `sys` and `os`.

`Environment` is the process boundary (streams, TTY, environment variables, and for tests a
transport); `Context` adds what the global options decided (store root, debug, pyreg's config)
and builds the objects commands use. Everything heavy (httpx, the event loop) is imported when a
command asks for it, so that `pyreg --help` or `pyreg images` do not pay for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from pyreg.client.config import ClientConfig, config_path, load_config
from pyreg.client.progress import BarReporter, LineReporter, Reporter
from pyreg.client.store import ImageStore, default_root
from pyreg.oci.imageref import ImageReference, parse_reference

if TYPE_CHECKING:
    import ssl

    import httpx

    from pyreg.client.credentials import DockerConfig
    from pyreg.client.retry import RetryPolicy
    from pyreg.client.session import RegistrySession

T = TypeVar("T")


@dataclass
class Environment:
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    stdout_isatty: bool = False
    stdin_isatty: bool = False
    # Test seams: an in-process transport, a retry policy that does not sleep, a helper PATH,
    # the TLS trust of registries that are not insecure.
    transport: httpx.AsyncBaseTransport | None = None
    retry: RetryPolicy | None = None
    verify: ssl.SSLContext | bool = True
    helper_path: str | None = None

    @classmethod
    def from_system(cls) -> Environment:
        return cls(stdout_isatty=sys.stdout.isatty(), stdin_isatty=sys.stdin.isatty())


@dataclass
class Context:
    env: Environment
    root: Path
    debug: bool = False
    config: ClientConfig = field(default_factory=ClientConfig)

    @classmethod
    def create(cls, env: Environment, root: str | None, debug: bool) -> Context:
        config = load_config(config_path(env.environ))
        return cls(env, Path(root) if root else default_root(dict(env.environ)), debug, config)

    def store(self) -> ImageStore:
        return ImageStore(self.root, self.config.default_registry)

    def docker_config(self) -> DockerConfig:
        from pyreg.client.credentials import DockerConfig, docker_config_dir

        return DockerConfig(docker_config_dir(self.env.environ), self.env.helper_path)

    def session(self) -> RegistrySession:
        from pyreg.client.session import RegistrySession

        return RegistrySession(self.config, self.docker_config(), transport=self.env.transport,
                               retry=self.env.retry, verify=self.env.verify)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a command's coroutine on a fresh event loop."""
        from pyreg.client.eventloop import run

        return run(coro)

    def reference(self, text: str, default_tag: str | None = "latest") -> ImageReference:
        return parse_reference(text, self.config.default_registry, default_tag)

    def reporter(self, quiet: bool) -> Reporter:
        if quiet:
            return Reporter()
        if self.env.stdout_isatty:
            return BarReporter(self.env.stdout)
        return LineReporter(self.env.stdout)

    def out(self, text: str = "") -> None:
        print(text, file=self.env.stdout)
