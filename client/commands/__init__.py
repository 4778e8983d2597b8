"""One module per `pyreg` command: `register(subparsers)` adds its parser, `run(ctx, args)` runs it,
and the work itself is a plain function tests can call."""

from __future__ import annotations

import argparse
from typing import TypeAlias

# A string: argparse's class is generic to type checkers only.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
