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
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from pyreg.client.config import ClientConfig, config_path, load_config
from pyreg.client.store import ImageStore, default_root
from pyreg.oci.imageref import ImageReference, parse_reference

if TYPE_CHECKING:
    import ssl

    import httpx

    from pyreg.client.credentials import DockerConfig
    from pyreg.client.progress import Reporter
    from pyreg.client.retry import RetryPolicy
    from pyreg.client.session import RegistrySession

T = TypeVar("T")


# Plain classes rather than dataclasses: importing `dataclasses` costs the client's start-up 5 ms,
# creating each dataclass 0.5 ms more.
class Environment:
    """Keyword arguments left out are this process's: its streams and a copy of its environment."""

    __slots__ = ("environ", "helper_path", "retry", "stderr", "stdin", "stdin_isatty", "stdout",
                 "stdout_isatty", "transport", "verify")

    def __init__(
        self,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
        stdout_isatty: bool = False,
        stdin_isatty: bool = False,
        # Test seams: an in-process transport, a retry policy that does not sleep, a helper PATH,
        # the TLS trust of registries that are not insecure.
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        verify: ssl.SSLContext | bool = True,
        helper_path: str | None = None,
    ) -> None:
        self.stdin: TextIO = sys.stdin if stdin is None else stdin
        self.stdout: TextIO = sys.stdout if stdout is None else stdout
        self.stderr: TextIO = sys.stderr if stderr is None else stderr
        self.environ: Mapping[str, str] = dict(os.environ) if environ is None else environ
        self.stdout_isatty = stdout_isatty
        self.stdin_isatty = stdin_isatty
        self.transport = transport
        self.retry = retry
        self.verify = verify
        self.helper_path = helper_path

    @classmethod
    def from_system(cls) -> Environment:
        return cls(stdout_isatty=sys.stdout.isatty(), stdin_isatty=sys.stdin.isatty())


class Context:
    __slots__ = ("config", "debug", "env", "root")

    def __init__(self, env: Environment, root: Path, debug: bool = False,
                 config: ClientConfig | None = None) -> None:
        self.env = env
        self.root = root
        self.debug = debug
        self.config = ClientConfig() if config is None else config

    @classmethod
    def create(cls, env: Environment, root: str | None, debug: bool) -> Context:
        config = load_config(config_path(env.environ))
        return cls(env, Path(root) if root else default_root(env.environ), debug, config)

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
        from pyreg.client.progress import BarReporter, LineReporter, Reporter

        if quiet:
            return Reporter()
        if self.env.stdout_isatty:
            return BarReporter(self.env.stdout)
        return LineReporter(self.env.stdout)

    def out(self, text: str = "") -> None:
        print(text, file=self.env.stdout)
