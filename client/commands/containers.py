"""The container lifecycle, docker's verbs mapped onto the embedded runtime's commands:

    pyreg start [-a] | stop [-t] | kill [-s] | restart [-t] | rm [-f] CONTAINER...
    pyreg ps [-a] [-q] [--no-trunc] [-f KEY=VALUE]... [--format TEMPLATE]
    pyreg logs [-f] [-t] [--tail N] [--since TIME] CONTAINER
    pyreg exec [-d] [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER COMMAND...
    pyreg rename CONTAINER NAME
    pyreg container inspect|prune|ls|... (every verb above, and run and create, as docker has them)
    pyreg system prune [-a] [-f]    stopped containers, dangling (-a: unused) images, cached layers

Each runs `python -m pyreg.runtime` (run.call_runtime); the runtime's state is the truth.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable, Sequence

from pyreg.client.commands import Subparsers
from pyreg.client.commands import run as run_command
from pyreg.client.commands.run import call_runtime, runtime_argv
from pyreg.client.environment import Context
from pyreg.client.errors import StoreError
from pyreg.client.store import ImageStore
from pyreg.oci import mediatypes

Adder = Callable[[argparse.ArgumentParser], None]


def _containers(p: argparse.ArgumentParser) -> None:
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


def _start(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR")
    _containers(p)


def _stop(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--time", help="Seconds to wait before killing the container")
    _containers(p)


def _kill(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", "--signal", help="Signal to send to the container (default KILL)")
    _containers(p)


def _rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of a running container")
    _containers(p)


def _ps(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="Filter output (status=, name=, id=, ancestor=)")
    p.add_argument("--format", help="Format output using a Go template ({{.ID}}, {{.Names}}, "
                   "{{.Image}}, {{.Status}}, {{.Command}}, {{.Ports}}; 'table' adds headers)")


def _logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("-n", "--tail", help='Number of lines to show from the end of the logs ("all")')
    p.add_argument("--since", help="Show logs since timestamp (e.g. 2026-11-27T10:00:00Z) or "
                   "relative (e.g. 42m for 42 minutes)")
    p.add_argument("container", metavar="CONTAINER")


def _exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: run command in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="Set environment variables")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")


def _rename(p: argparse.ArgumentParser) -> None:
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("name", metavar="NEW_NAME")


def _prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")


VERBS: dict[str, tuple[str, Adder]] = {
    "start": ("Start one or more stopped containers", _start),
    "stop": ("Stop one or more running containers", _stop),
    "kill": ("Kill one or more running containers", _kill),
    "restart": ("Restart one or more containers", _stop),
    "rm": ("Remove one or more containers", _rm),
    "ps": ("List containers", _ps),
    "logs": ("Fetch the logs of a container", _logs),
    "exec": ("Execute a command in a running container", _exec),
    "rename": ("Rename a container", _rename),
}


def register(sub: Subparsers) -> None:
    for verb, (text, add) in VERBS.items():
        p = sub.add_parser(verb, help=text, description=f"{text}.")
        add(p)
        p.set_defaults(func=run, verb=verb)
    group = sub.add_parser("container", help="Manage containers", description="Manage containers.")
    group.set_defaults(group=group)
    verbs = group.add_subparsers(dest="container_command", metavar="COMMAND")
    for verb, (text, add) in {**VERBS, "ls": ("List containers", _ps)}.items():
        p = verbs.add_parser(verb, help=text, description=f"{text}.")
        add(p)
        p.set_defaults(func=run, verb="ps" if verb == "ls" else verb)
    inspect = verbs.add_parser("inspect", help="Display detailed information on one or more containers")
    _containers(inspect)
    inspect.set_defaults(func=run, verb="inspect")
    prune = verbs.add_parser("prune", help="Remove all stopped containers")
    _prune(prune)
    prune.set_defaults(func=run_prune)
    run_command.register(verbs)
    system = sub.add_parser("system", help="Manage pyreg", description="Manage pyreg.")
    system.set_defaults(group=system)
    system_verbs = system.add_subparsers(dest="system_command", metavar="COMMAND")
    sprune = system_verbs.add_parser("prune", help="Remove unused data", description=(
        "Remove stopped containers, dangling images (-a: every image no container uses) and the "
        "unpacked layers of images no longer in the store."))
    sprune.add_argument("-a", "--all", action="store_true", help="Remove all unused images, not just dangling ones")
    _prune(sprune)
    sprune.set_defaults(func=run_system_prune)


def runtime_args(args: argparse.Namespace) -> list[str]:
    """The runtime's command line for a parsed verb (the runtime's flags are docker's)."""
    verb: str = args.verb
    out = [verb]
    for flag in ("attach", "force", "all", "quiet", "no_trunc", "follow", "timestamps", "interactive",
                 "tty", "detach"):
        if getattr(args, flag, False):
            out.append(f"--{flag.replace('_', '-')}")
    for option in ("time", "signal", "workdir", "user", "since", "format"):
        value = getattr(args, option, None)
        if value is not None:
            out += [f"--{option}", value]
    tail = getattr(args, "tail", None)
    if tail is not None and tail != "all":
        out += ["--tail", tail]
    for value in getattr(args, "env", None) or []:
        out += ["--env", value]
    for value in getattr(args, "filter", None) or []:
        out += ["--filter", value]
    if verb in ("logs", "exec", "rename"):
        out.append(args.container)
    out += getattr(args, "containers", None) or []
    if verb == "rename":
        out.append(args.name)
    if verb == "exec":
        out += args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return out


def run(ctx: Context, args: argparse.Namespace) -> int:
    return call_runtime(ctx, runtime_args(args))


def runtime_output(ctx: Context, args: Sequence[str]) -> str:
    """What a runtime command prints, for commands that reshape it; its error, as one line."""
    done = subprocess.run(runtime_argv(ctx.root, args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=dict(ctx.env.environ), check=False)
    if done.returncode != 0:
        raise StoreError(done.stderr.strip().removeprefix("pyreg: ") or f"{args[0]} failed")
    return done.stdout


def run_prune(ctx: Context, args: argparse.Namespace) -> int:
    removed = runtime_output(ctx, ["prune"]).split()
    ctx.out("Deleted Containers:" if removed else "Total reclaimed space: 0B")
    for cid in removed:
        ctx.out(cid)
    return 0


def _diff_ids(store: ImageStore) -> set[str]:
    """The layers (diff_ids) of every image in the store, each platform of an index included."""
    out: set[str] = set()
    stack = [image.descriptor for image in store.images()]
    while stack:
        desc = stack.pop()
        try:
            manifest = store.manifest(desc)
        except StoreError:
            continue
        if desc.media_type in mediatypes.INDEX_TYPES:
            stack.extend(m for m in manifest.manifests if store.has_blob(m.digest))
            continue
        rootfs = store.config(manifest).get("rootfs") or {}
        out.update(d for d in rootfs.get("diff_ids") or [] if isinstance(d, str))
    return out


def run_system_prune(ctx: Context, args: argparse.Namespace) -> int:
    from pyreg.client.commands.rmi import prune

    containers = runtime_output(ctx, ["prune"]).split()
    store = ctx.store()
    deleted, reclaimed = prune(store, args.all)  # passes by the images running containers use
    keep = [f"--keep={d}" for d in sorted(_diff_ids(store))]
    layers = runtime_output(ctx, ["layer", "prune", *keep]).split()[1::2]
    for title, items in (("Deleted Containers:", containers),
                         ("Deleted Images:", [f"deleted: {d}" for d in deleted]),
                         ("Deleted Layers:", layers)):
        if items:
            ctx.out(title)
            for item in items:
                ctx.out(item)
            ctx.out()
    ctx.out(f"Total reclaimed space: {_size(reclaimed)}")
    return 0


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}GB"
