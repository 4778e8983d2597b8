"""`pyreg volume create [NAME] | ls [-q] | inspect NAME... | rm NAME... | prune [-a] [-f]`: the
runtime's named volumes (`<root>/runtime/volumes/<name>/_data`), as docker's `volume` commands
show them. `prune` removes, of the volumes no container uses (running or stopped), those made
without a name (docker's anonymous volumes), or with `-a` all of them, as docker since 23.0."""

from __future__ import annotations

import argparse
import secrets

from pyreg.client.commands import Subparsers
from pyreg.client.commands.containers import runtime_output
from pyreg.client.commands.run import call_runtime
from pyreg.client.environment import Context


def register(sub: Subparsers) -> None:
    group = sub.add_parser("volume", help="Manage volumes", description="Manage volumes.")
    group.set_defaults(group=group)
    verbs = group.add_subparsers(dest="volume_command", metavar="COMMAND")
    create = verbs.add_parser("create", help="Create a volume")
    create.add_argument("names", nargs="?", metavar="VOLUME", help="Name (default: a random one)")
    ls = verbs.add_parser("ls", help="List volumes")
    ls.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")
    for verb, text in (("inspect", "Display detailed information on one or more volumes"),
                       ("rm", "Remove one or more volumes")):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("names", nargs="+", metavar="VOLUME")
    for verb in ("create", "ls", "inspect", "rm"):
        verbs.choices[verb].set_defaults(func=run, verb=verb)
    prune = verbs.add_parser("prune", help="Remove unused local volumes")
    prune.add_argument("-a", "--all", action="store_true",
                       help="Remove all unused volumes, not just anonymous ones")
    prune.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    prune.set_defaults(func=run_prune)


def run_prune(ctx: Context, args: argparse.Namespace) -> int:
    from pyreg.client.commands.images import human_size

    if not args.force:
        what = "all" if args.all else "anonymous"
        ctx.env.stdout.write(f"WARNING! This will remove {what} local volumes not used by at least one "
                             "container.\nAre you sure you want to continue? [y/N] ")
        ctx.env.stdout.flush()
        if ctx.env.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    removed = [line.rsplit(" ", 1) for line in
               runtime_output(ctx, ["volume", "prune", *(["--all"] if args.all else [])]).splitlines()]
    if removed:
        ctx.out("Deleted Volumes:")
        for name, _ in removed:
            ctx.out(name)
        ctx.out("")
    ctx.out(f"Total reclaimed space: {human_size(sum(int(size) for _, size in removed))}")
    return 0


def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.verb == "ls" and args.quiet:
        for line in runtime_output(ctx, ["volume", "ls"]).splitlines()[1:]:
            ctx.out(line.split(maxsplit=1)[1])
        return 0
    if args.verb == "ls":
        return call_runtime(ctx, ["volume", "ls"])
    names = args.names if isinstance(args.names, list) else [args.names or secrets.token_hex(32)]
    return call_runtime(ctx, ["volume", args.verb, *names])
