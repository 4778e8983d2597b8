"""Running `pyreg` in-process with an injected environment, and capturing what it printed."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from pyreg.client.cli import main
from pyreg.client.environment import Environment
from tests.client.conftest import FAST_RETRY


@dataclass
class Result:
    code: int
    out: str
    err: str


class Pyreg:
    """`pyreg` with its own store, docker config dir and pyreg config file under `home`."""

    def __init__(self, home: Path, **environ: str) -> None:
        self.home = home
        self.root = home / "store"
        self.environ = {"HOME": str(home), "DOCKER_CONFIG": str(home / "docker"),
                        "PYREG_CONFIG": str(home / "pyreg.toml"), "PYREG_ROOT": str(self.root), **environ}

    def config(self, text: str) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "pyreg.toml").write_text(text)

    def __call__(self, *args: str, stdin: str = "") -> Result:
        out, err = io.StringIO(), io.StringIO()
        env = Environment(stdin=io.StringIO(stdin), stdout=out, stderr=err, environ=self.environ,
                          retry=FAST_RETRY)
        code = main(list(args), env)
        return Result(code, out.getvalue(), err.getvalue())
