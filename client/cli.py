"""The `pyreg` command: global options, dispatch to `commands/`, and one line per failure.

Every failure ends as one line on stderr and a non-zero `ExitCode`; `--debug` adds the
traceback. Streams and environment come from an injected `Environment`, so tests run `main`
in-process exactly as the console script does.

Start-up time counts (a pull of a small image is mostly start-up): the command modules import
what they need when they run, so `pyreg --version` and `pyreg images` never import httpx or
asyncio. Check with `python -X importtime -m pyreg.client.cli --version`.
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Any, NoReturn, cast

from pyreg.client.commands import Subparsers
from pyreg.client.environment import Context, Environment
from pyreg.client.errors import ClientError
from pyreg.client.exitcodes import ExitCode
from pyreg.oci import OCIError


class UsageError(Exception):
    pass


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _only_run(argv: list[str]) -> bool:
    """Whether the command line is `pyreg [--root DIR] [-D] run|create ...`: then only that
    command's parser is built, and no other command module imported (a sixth of the time of
    `pyreg run --rm IMAGE true` otherwise goes to building the parsers of every command)."""
    i = 0
    while i < len(argv) and (argv[i] in ("--root", "-D", "--debug") or argv[i].startswith("--root=")):
        i += 2 if argv[i] == "--root" else 1
    return i < len(argv) and argv[i] in ("run", "create")


def build_parser(env: Environment, only_run: bool = False) -> argparse.ArgumentParser:
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
    if only_run:
        from pyreg.client.commands import run as run_command

        run_command.register(cast(Subparsers, sub))
        return parser
    from pyreg.client.commands import (
        archive,
        containers,
        images,
        inspect,
        login,
        pull,
        push,
        rmi,
        run,
        volumes,
    )

    for module in (pull, push, login, images, rmi, inspect, archive, run, containers, volumes):
        module.register(sub)
    # A group without its command prints its help, as `docker image` does.
    image = sub.add_parser("image", help="Manage images", description="Manage images.")
    image.set_defaults(group=image)
    rmi.register_prune(cast(Subparsers, image.add_subparsers(dest="image_command", metavar="COMMAND")))
    manifest = sub.add_parser("manifest", help="Inspect manifests in a registry", description="Inspect manifests.")
    manifest.set_defaults(group=manifest)
    inspect.register_manifest(cast(Subparsers, manifest.add_subparsers(dest="manifest_command", metavar="COMMAND")))
    return parser


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return f"no space left on device{f': {error.filename}' if error.filename else ''}"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}{f': {error.filename}' if error.filename else ''}"
    return str(error) or type(error).__name__


def _interrupted(error: BaseException) -> bool:
    if isinstance(error, KeyboardInterrupt):
        return True
    asyncio = sys.modules.get("asyncio")  # only loaded if a command used it
    return asyncio is not None and isinstance(error, asyncio.CancelledError)


def _traceback(env: Environment) -> None:
    import traceback

    traceback.print_exc(file=env.stderr)


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    # httpx imports its optional command-line module (and with it click, pygments and rich, a
    # third of pyreg's start-up) whenever those are installed, and httpcore imports trio when it
    # is installed; pyreg uses neither. Blocked only when httpx is not loaded yet, so that a
    # program that embeds pyreg and calls `main` keeps its httpx whole.
    if "httpx" not in sys.modules and "httpcore" not in sys.modules:
        modules = cast(dict[str, Any], sys.modules)  # None is the documented "not importable"
        modules.setdefault("httpx._main", None)
        modules.setdefault("trio", None)
    env = env or Environment.from_system()
    args_list = sys.argv[1:] if argv is None else argv
    parser = build_parser(env, _only_run(args_list))
    try:
        args = parser.parse_args(args_list)
    except UsageError as e:
        print(f"pyreg: {e}", file=env.stderr)
        return ExitCode.USAGE
    except _Exit as e:
        return e.code
    if args.version:
        from importlib.metadata import version

        print(f"pyreg version {version('pyreg')}", file=env.stdout)
        return ExitCode.OK
    if not getattr(args, "func", None):
        getattr(args, "group", parser).print_help(env.stdout)
        return ExitCode.OK
    try:
        ctx = Context.create(env, args.root, args.debug)
        return int(args.func(ctx, args))
    except (ClientError, OCIError, OSError, UsageError) as e:
        if args.debug:
            _traceback(env)
        print(f"Error: {_describe(e)}", file=env.stderr)
        return ExitCode.USAGE if isinstance(e, UsageError) else ExitCode.ERROR
    except BaseException as e:
        if _interrupted(e):
            print("interrupted", file=env.stderr)
            return ExitCode.INTERRUPTED
        if not isinstance(e, Exception):
            raise  # SystemExit and the like are not failures of pyreg's to report
        # A bug: still one line, unless asked for the traceback.
        if args.debug:
            _traceback(env)
        print(f"Error: unexpected {type(e).__name__}: {e} (run with --debug for details)", file=env.stderr)
        return ExitCode.ERROR


if __name__ == "__main__":
    raise SystemExit(main())
