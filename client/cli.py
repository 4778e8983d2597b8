"""The `pyreg` command: global options, dispatch to `commands/`, and one line per failure.

Every failure ends as one line on stderr and a non-zero `ExitCode`; `--debug` adds the
traceback. Streams and environment come from an injected `Environment`, so tests run `main`
in-process exactly as the console script does.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import traceback
from importlib.metadata import version
from typing import Any, NoReturn, cast

from pyreg.client.commands import Subparsers, archive, images, inspect, login, pull, push, rmi
from pyreg.client.environment import Context, Environment
from pyreg.client.errors import ClientError
from pyreg.client.exitcodes import ExitCode
from pyreg.oci import OCIError


class UsageError(Exception):
    pass


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def build_parser(env: Environment) -> argparse.ArgumentParser:
    class Parser(argparse.ArgumentParser):
        # argparse writes to sys and exits: send its text to the environment, and return instead.
        def _print_message(self, message: str, file: Any = None) -> None:
            if message:
                (file if file in (env.stdout, env.stderr) else env.stdout).write(message)

        def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
            if message:
                env.stderr.write(message)
            raise _Exit(status)

        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{message}\nSee '{self.prog} --help'.")

    parser = Parser(prog="pyreg", description="Pull, push and keep container images.")
    parser.add_argument("--root", help="Local image store (default $PYREG_ROOT, else $XDG_DATA_HOME/pyreg)")
    parser.add_argument("-D", "--debug", action="store_true", help="Show the traceback of a failure")
    parser.add_argument("-v", "--version", action="store_true", help="Print version information and quit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (pull, push, login, images, rmi, inspect, archive):
        module.register(sub)
    image = sub.add_parser("image", help="Manage images", description="Manage images.")
    rmi.register_prune(cast(Subparsers, image.add_subparsers(dest="image_command", metavar="COMMAND",
                                                             required=True)))
    manifest = sub.add_parser("manifest", help="Inspect manifests in a registry", description="Inspect manifests.")
    inspect.register_manifest(cast(Subparsers, manifest.add_subparsers(dest="manifest_command", metavar="COMMAND",
                                                                       required=True)))
    return parser


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return f"no space left on device{f': {error.filename}' if error.filename else ''}"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}{f': {error.filename}' if error.filename else ''}"
    return str(error) or type(error).__name__


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    import sys

    env = env or Environment.from_system()
    args_list = sys.argv[1:] if argv is None else argv
    parser = build_parser(env)
    try:
        args = parser.parse_args(args_list)
    except UsageError as e:
        print(f"pyreg: {e}", file=env.stderr)
        return ExitCode.USAGE
    except _Exit as e:
        return e.code
    if args.version:
        print(f"pyreg version {version('pyreg')}", file=env.stdout)
        return ExitCode.OK
    if not getattr(args, "func", None):
        parser.print_help(env.stderr)
        return ExitCode.USAGE
    try:
        ctx = Context.create(env, args.root, args.debug)
        return int(args.func(ctx, args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=env.stderr)
        return ExitCode.INTERRUPTED
    except (ClientError, OCIError, OSError, UsageError) as e:
        if args.debug:
            traceback.print_exc(file=env.stderr)
        print(f"Error: {_describe(e)}", file=env.stderr)
        return ExitCode.USAGE if isinstance(e, UsageError) else ExitCode.ERROR
    except Exception as e:  # a bug: still one line, unless asked for the traceback
        if args.debug:
            traceback.print_exc(file=env.stderr)
        print(f"Error: unexpected {type(e).__name__}: {e} (run with --debug for details)", file=env.stderr)
        return ExitCode.ERROR


if __name__ == "__main__":
    raise SystemExit(main())
