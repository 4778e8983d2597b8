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
from collections.abc import Sequence
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


# pyproject.toml's version, kept equal by a test: importlib.metadata costs 10 ms to import.
VERSION = "0.1.0"

# The command modules, in the order of `pyreg --help`, and the module of each command word (a test
# checks it against the parser of every command).
_MODULES = ("pull", "push", "login", "images", "rmi", "inspect", "archive", "run", "containers",
            "volumes")
_MODULE_OF = {
    "pull": "pull", "push": "push", "login": "login", "logout": "login", "images": "images",
    "tag": "images", "rmi": "rmi", "image": "rmi", "inspect": "inspect", "history": "inspect",
    "manifest": "inspect", "save": "archive", "load": "archive", "run": "run", "create": "run",
    **dict.fromkeys(("start", "stop", "kill", "restart", "rm", "ps", "logs", "exec", "rename",
                     "container", "system"), "containers"),
    "volume": "volumes",
}


def _modules_needed(argv: list[str]) -> tuple[str, ...]:
    """The command modules whose parsers `argv` needs: only its command's when it names one, none
    when it is `pyreg --version` (with other global options), else all (for the help, or the
    error). Importing and building every command's parser would cost `pyreg run --rm IMAGE true`
    a sixth of its time."""
    i = 0
    while i < len(argv) and (argv[i] in ("--root", "-D", "--debug", "-v", "--version")
                             or argv[i].startswith("--root=")):
        i += 2 if argv[i] == "--root" else 1
    if i < len(argv):
        module = _MODULE_OF.get(argv[i])
        return _MODULES if module is None else (module,)
    return () if "-v" in argv or "--version" in argv else _MODULES


def build_parser(env: Environment, modules: Sequence[str] = _MODULES) -> argparse.ArgumentParser:
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
    sub = cast(Subparsers, parser.add_subparsers(dest="command", metavar="COMMAND"))
    for name in modules:
        # __import__ rather than importlib.import_module: -X importtime shows only the former.
        __import__(f"pyreg.client.commands.{name}", fromlist=["register"]).register(sub)
    # A group without its command prints its help, as `docker image` does.
    if "rmi" in modules:
        from pyreg.client.commands import rmi

        image = sub.add_parser("image", help="Manage images", description="Manage images.")
        image.set_defaults(group=image)
        rmi.register_prune(image.add_subparsers(dest="image_command", metavar="COMMAND"))
    if "inspect" in modules:
        from pyreg.client.commands import inspect

        manifest = sub.add_parser("manifest", help="Inspect manifests in a registry", description="Inspect manifests.")
        manifest.set_defaults(group=manifest)
        inspect.register_manifest(manifest.add_subparsers(dest="manifest_command", metavar="COMMAND"))
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
    parser = build_parser(env, _modules_needed(args_list))
    try:
        args = parser.parse_args(args_list)
    except UsageError as e:
        print(f"pyreg: {e}", file=env.stderr)
        return ExitCode.USAGE
    except _Exit as e:
        return e.code
    if args.version:
        print(f"pyreg version {VERSION}", file=env.stdout)
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
