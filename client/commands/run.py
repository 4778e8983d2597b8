"""`pyreg run IMAGE [COMMAND...]` and `pyreg create`: docker's flags, the image from the local
store (pulled first when missing, as docker does), the container run by the embedded runtime.

Where the runtime runs (it forks, and an asyncio process must never fork):

- in this very process, when pyreg is the command (its stdio and environment are this process's)
  and the process is still untouched: asyncio never imported, no thread but the main one. That is
  the case of `pyreg run` of an image already in the store, and of every lifecycle verb. Such a
  process is what a fresh `python -m pyreg.runtime` would be, plus some imported modules: no event
  loop, executor thread, self-pipe or signal wakeup fd exists to be copied half-way into a fork,
  and no lock can be held by a thread that the fork leaves behind. It saves a second interpreter
  start (half of `pyreg run --rm IMAGE true`).
- else (a pull happened: asyncio ran, its threads may live on) it execs into a fresh
  `python -m pyreg.runtime`, so that the terminal, signals and the exit code are the runtime's own.
- when `main` is called with streams of its own (tests), as a child whose output it copies.

Its state lives in `<root>/runtime/`, beside the store.

Exit codes are docker's: the container's own, 125 when pyreg or the runtime fails (image not found,
bad flag, a mount or network that cannot be set up), 126 when the command cannot be executed, 127
when it is not found.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pyreg.client.environment import Context, Environment
from pyreg.client.errors import ClientError, ImageNotFound
from pyreg.oci import OCIError

if TYPE_CHECKING:
    from pyreg.client.store import ImageStore, StoredImage

SETUP_FAILED = 125  # docker's code when the container could not be run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, text in (("run", "Create and run a new container from an image"),
                       ("create", "Create a new container")):
        p = sub.add_parser(verb, help=text, description=f"{text}.")
        container_options(p)
        if verb == "run":
            p.add_argument("-d", "--detach", action="store_true",
                           help="Run container in background and print container ID")
        p.add_argument("image", metavar="IMAGE")
        p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND",
                       help="Command and arguments (replace the image's Cmd)")
        p.set_defaults(func=run, verb=verb)


def container_options(p: argparse.ArgumentParser) -> None:
    add = p.add_argument
    add("--rm", action="store_true", help="Automatically remove the container when it exits")
    add("--name", help="Assign a name to the container")
    add("-i", "--interactive", action="store_true", help="Keep STDIN open")
    add("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    add("-e", "--env", action="append", default=[], metavar="K=V", help="Set environment variables")
    add("--env-file", action="append", default=[], help="Read in a file of environment variables")
    add("-w", "--workdir", help="Working directory inside the container")
    add("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    add("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    add("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
        help="Bind mount a host path or a named volume")
    add("--read-only", action="store_true", help="Mount the container's root filesystem as read only")
    add("--hostname", help="Container host name")
    add("-p", "--publish", action="append", default=[], metavar="[IP:]HOST:CONTAINER[/tcp]",
        help="Publish a container's port to the host")
    add("--network", choices=("slirp", "none", "host"),
        help="Connect a container to a network (default: slirp when available, else none)")
    add("-m", "--memory", help="Memory limit (e.g. 64m)")
    add("--cpus", help="Number of CPUs")
    add("--pids-limit", help="Tune container pids limit")
    add("--platform", help="Set platform if server is multi-platform capable (os/arch[/variant])")
    add("--pull", choices=("missing", "always", "never"), default="missing",
        help='Pull image before running ("always", "missing", "never")')


def _runtime_flags(args: argparse.Namespace) -> list[str]:
    flags: list[str] = []
    for name in ("rm", "interactive", "tty", "read_only", "detach"):
        if getattr(args, name, False):
            flags.append(f"--{name.replace('_', '-')}")
    for name in ("name", "workdir", "user", "entrypoint", "hostname", "network", "memory", "cpus",
                 "pids_limit", "platform"):
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", value]
    for name, values in (("env", args.env), ("env-file", args.env_file),
                         ("volume", args.volume), ("publish", args.publish)):
        for value in values:
            flags += [f"--{name}", value]
    return flags


def find_image(ctx: Context, text: str, pull: str, platform: str | None) -> str:
    """The store's manifest digest for IMAGE, pulling it first as `--pull` says."""
    store = ctx.store()
    if pull != "always":
        try:
            stored = store.resolve(text)
            if pull == "never" or not platform or _is_platform(store, stored, platform):
                return str(stored.descriptor.digest)
            # As docker: an image of another platform than --platform's is pulled for that one.
        except ImageNotFound:
            if pull == "never":
                raise
    ref = ctx.reference(text)
    if pull != "always":
        print(f"Unable to find image '{ref.familiar()}' locally", file=ctx.env.stderr)
    from pyreg.client.commands.pull import pull_images
    from pyreg.client.progress import LineReporter
    from pyreg.oci.platform import Platform

    # The pull's progress goes to stderr, as docker's: stdout is the container's.
    reporter = LineReporter(ctx.env.stderr)
    try:
        ctx.run(pull_images(ctx, ref, platform=Platform.parse(platform) if platform else None,
                            progress=reporter))
    finally:
        reporter.close()
    return str(store.resolve(str(ref)).descriptor.digest)


def _is_platform(store: ImageStore, image: StoredImage, platform: str) -> bool:
    """Whether the stored image is of `platform` (an index in the store always has it)."""
    from pyreg.oci.platform import Platform

    manifest = store.manifest(image.descriptor)
    if manifest.is_index or manifest.config is None:
        return True
    config = store.config(manifest)
    if not config.get("os") or not config.get("architecture"):
        return True
    return Platform.from_json(config).matches(Platform.parse(platform))


def run(ctx: Context, args: argparse.Namespace) -> int:
    try:
        digest = find_image(ctx, args.image, args.pull, args.platform)
    except (ClientError, OCIError) as e:
        # docker's shape for a container that cannot be started: one line, 125.
        print(f"Error: {e}", file=ctx.env.stderr)
        return SETUP_FAILED
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return call_runtime(ctx, [args.verb, "--ref", digest, "--image-name", args.image,
                              *_runtime_flags(args), "--", *cmd])


def _own_process(env: Environment) -> bool:
    """Whether the environment is this process's own stdio (pyreg run as a command)."""
    return env.stdin is sys.stdin and env.stdout is sys.stdout and env.stderr is sys.stderr


def runtime_argv(root: Path, args: Sequence[str]) -> list[str]:
    """What `python -m pyreg.runtime VERB --root ROOT ...` does, started faster: without the site
    module (`-S`: .pth files cost a third of an interpreter's start, twice per `pyreg run`), the
    two packages the runtime needs loaded from where this process found them (an editable
    install's finder is itself a .pth), site-packages kept on the path for zstandard."""
    import pyreg.oci
    import pyreg.runtime

    packages = {"oci": next(iter(pyreg.oci.__path__)),
                "runtime": next(iter(pyreg.runtime.__path__))}
    paths = [p for p in sys.path[1:] if p and os.path.isdir(p)]
    code = (
        "import sys, types, importlib.util as u\n"
        f"sys.path[1:1] = {paths!r}\n"
        "top = types.ModuleType('pyreg'); top.__path__ = []; sys.modules['pyreg'] = top\n"
        f"for n, d in {packages!r}.items():\n"
        "    s = u.spec_from_file_location('pyreg.' + n, d + '/__init__.py',"
        " submodule_search_locations=[d])\n"
        "    m = sys.modules[s.name] = u.module_from_spec(s); setattr(top, n, m)\n"
        "    s.loader.exec_module(m)\n"
        "from pyreg.runtime.cli import main\n"
        "sys.exit(main())\n")
    return [sys.executable, "-S", "-c", code, args[0], "--root", str(root), *args[1:]]


def untouched() -> bool:
    """Whether this process may fork as a fresh one would: asyncio never imported (so no event
    loop ever ran), and no thread other than the main one."""
    if "asyncio" in sys.modules:
        return False
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


def call_runtime(ctx: Context, args: Sequence[str]) -> int:
    """The runtime's VERB: run in this process when pyreg is the command and the process is
    untouched, exec'd when pyreg is the command otherwise (this process becomes the runtime and
    never returns), else run as a child, its output copied."""
    environ = dict(ctx.env.environ)
    if _own_process(ctx.env):
        for stream in (ctx.env.stdout, ctx.env.stderr):
            stream.flush()
        if untouched() and environ == os.environ:
            from pyreg.runtime.cli import main as runtime_main

            return runtime_main([args[0], "--root", str(ctx.root), *args[1:]])
        os.execve(sys.executable, runtime_argv(ctx.root, args), environ)
    import subprocess

    argv = runtime_argv(ctx.root, args)
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=environ,
                          check=False)
    ctx.env.stdout.write(done.stdout.decode(errors="replace"))
    ctx.env.stderr.write(done.stderr.decode(errors="replace"))
    return done.returncode
