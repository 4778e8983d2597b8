"""`python -m pyreg.runtime`: the runtime's own command line, which `pyreg run` wraps.

    python -m pyreg.runtime run --layout DIR [--ref TAG] [--platform OS/ARCH] [--rm] [-d] [-i]
        [-t] [--name N] [-e K=V] [--env-file F] [-w DIR] [-u USER] [--hostname H] [--entrypoint X]
        [--network slirp|none|host] [-p [IP:]HOST:CTR[/tcp]] [-v HOST|NAME:CTR[:ro]] [--read-only]
        [--memory 64m] [--pids-limit N] [--cpus 0.5] -- COMMAND...
    python -m pyreg.runtime create (the options of run, without -d) -- COMMAND...
    python -m pyreg.runtime start [-a] CONTAINER...     restart [-t SECONDS] CONTAINER...
    python -m pyreg.runtime rename CONTAINER NAME       inspect CONTAINER...      prune
    python -m pyreg.runtime volume create|inspect|rm NAME...     volume ls
    python -m pyreg.runtime ps [-a] [-q]
    python -m pyreg.runtime logs [-f] [--tail N] CONTAINER
    python -m pyreg.runtime stop [-t SECONDS] CONTAINER...
    python -m pyreg.runtime kill [-s SIGNAL] CONTAINER...
    python -m pyreg.runtime rm [-f] CONTAINER...
    python -m pyreg.runtime exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER COMMAND...

Every command takes --root (default $PYREG_ROOT). `run` exits with the container's code: its own,
128 + signal when killed, 125 when the runtime fails, 126 when the command cannot be executed, 127
when it is not found (docker's).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pyreg.runtime import ContainerError, lifecycle
from pyreg.runtime.cgroups import Limits, parse_memory
from pyreg.runtime.container import RunOptions, pyreg_root, run_container, start_existing
from pyreg.runtime.enter import exec_in
from pyreg.runtime.network import default_network
from pyreg.runtime.process import SETUP_FAILED
from pyreg.runtime.spec import NETWORKS
from pyreg.runtime.state import StateStore
from pyreg.runtime.volumes import VolumeStore


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pyreg.runtime")
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given at any level of `volume ...`, an absent one does not reset it.
    common.add_argument("--root", type=Path, default=argparse.SUPPRESS,
                        help="state directory (default $PYREG_ROOT)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", parents=[common], help="run a command in a new container")
    _container_options(run)
    run.add_argument("--rm", action="store_true", help="remove the container when it exits")
    run.add_argument("-d", "--detach", action="store_true")
    create = commands.add_parser("create", parents=[common], help="create a container")
    _container_options(create)
    create.add_argument("--rm", action="store_true", help="remove the container when it exits")
    start = commands.add_parser("start", parents=[common], help="start stopped containers")
    start.add_argument("-a", "--attach", action="store_true")
    start.add_argument("containers", nargs="+")
    restart = commands.add_parser("restart", parents=[common], help="stop, then start")
    restart.add_argument("-t", "--time", type=float, default=10)
    restart.add_argument("containers", nargs="+")
    rename = commands.add_parser("rename", parents=[common], help="rename a container")
    rename.add_argument("container")
    rename.add_argument("name")
    inspect = commands.add_parser("inspect", parents=[common], help="state and configuration")
    inspect.add_argument("containers", nargs="+")
    commands.add_parser("prune", parents=[common], help="remove all stopped containers")
    volume = commands.add_parser("volume", parents=[common], help="named volumes")
    volume_commands = volume.add_subparsers(dest="volume_command", required=True)
    for verb in ("create", "inspect", "rm"):
        sub = volume_commands.add_parser(verb, parents=[common])
        sub.add_argument("names", nargs="+")
    volume_commands.add_parser("ls", parents=[common])
    ps = commands.add_parser("ps", parents=[common], help="list containers")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true")
    logs = commands.add_parser("logs", parents=[common], help="a detached container's output")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--tail", type=int)
    logs.add_argument("container")
    stop = commands.add_parser("stop", parents=[common], help="SIGTERM, then SIGKILL")
    stop.add_argument("-t", "--time", type=float, default=10)
    stop.add_argument("containers", nargs="+")
    kill = commands.add_parser("kill", parents=[common], help="send a signal")
    kill.add_argument("-s", "--signal", default="KILL")
    kill.add_argument("containers", nargs="+")
    rm = commands.add_parser("rm", parents=[common], help="remove containers")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("containers", nargs="+")
    exe = commands.add_parser("exec", parents=[common], help="run a command in a container")
    exe.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    exe.add_argument("-w", "--workdir")
    exe.add_argument("-u", "--user")
    exe.add_argument("-i", "--interactive", action="store_true")
    exe.add_argument("-t", "--tty", action="store_true")
    exe.add_argument("container")
    exe.add_argument("cmd", nargs=argparse.REMAINDER)
    return parser


def _container_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("--layout", type=Path, required=True, help="OCI image layout directory")
    run.add_argument("--ref", help="tag or manifest digest in the layout")
    run.add_argument("--platform", help="os/arch[/variant] of a multi-platform image")
    run.add_argument("--name")
    run.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    run.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    run.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    run.add_argument("--env-file", action="append", default=[], type=Path)
    run.add_argument("-w", "--workdir")
    run.add_argument("-u", "--user")
    run.add_argument("--hostname")
    run.add_argument("--entrypoint")
    run.add_argument("--network", choices=NETWORKS, default=None,
                     help="default: slirp when slirp4netns is installed, else none")
    run.add_argument("-p", "--publish", action="append", default=[],
                     metavar="[IP:]HOST:CONTAINER[/tcp]")
    run.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:CTR[:ro]")
    run.add_argument("--read-only", action="store_true")
    run.add_argument("--memory", type=parse_memory)
    run.add_argument("--pids-limit", type=int)
    run.add_argument("--cpus", type=float)
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments")


def _env_files(paths: Sequence[Path]) -> list[str]:
    """docker's --env-file: K=V or a bare K per line; blank lines and # comments skipped."""
    entries = []
    for path in paths:
        try:
            text = path.read_text()
        except OSError as e:
            raise ContainerError(f"cannot read env file {path}: {e.strerror}") from None
        entries += [line.strip() for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    return entries


def _command(args: Sequence[str]) -> tuple[str, ...]:
    return tuple(args[1:] if args[:1] == ["--"] else args)


def _signal(name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals[name.upper() if name.upper().startswith("SIG")
                                  else f"SIG{name.upper()}"])
    except KeyError:
        raise ContainerError(f"unknown signal {name!r}") from None


def _volume(args: argparse.Namespace, root: Path, stdout: TextIO) -> int:
    volumes = VolumeStore(root)
    if args.volume_command == "ls":
        print("DRIVER    VOLUME NAME", file=stdout)
        for v in volumes.list():
            print(f"local     {v.name}", file=stdout)
    elif args.volume_command == "inspect":
        print(json.dumps([volumes.inspect(n).to_json() for n in args.names], indent=2),
              file=stdout)
    else:
        for name in args.names:
            if args.volume_command == "create":
                volumes.create(name)
            else:
                volumes.remove(name, root / "containers")
            print(name, file=stdout)
    return 0


def main(argv: Sequence[str] | None = None, stdout: TextIO = sys.stdout,
         stderr: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(argv)
    root: Path = getattr(args, "root", None) or pyreg_root()
    store = StateStore(root)
    try:
        if args.command in ("run", "create"):
            return run_container(RunOptions(
                layout=args.layout, ref=args.ref, platform=args.platform,
                command=_command(args.cmd),
                entrypoint=args.entrypoint, env=(*_env_files(args.env_file), *args.env),
                workdir=args.workdir, user=args.user, hostname=args.hostname, name=args.name,
                network=args.network or default_network(), ports=tuple(args.publish),
                volumes=tuple(args.volume), readonly=args.read_only, remove=args.rm,
                detach=getattr(args, "detach", False), tty=args.tty,
                interactive=args.interactive, root=root,
                limits=Limits(memory=args.memory, pids=args.pids_limit, cpus=args.cpus),
            ), stdout, stderr, create_only=args.command == "create")
        if args.command == "start" and args.attach:
            if len(args.containers) != 1:
                raise ContainerError("start -a takes one container")
            return start_existing(store, args.containers[0], True, stdout, stderr)
        if args.command == "rename":
            lifecycle.rename(store, args.container, args.name)
            return 0
        if args.command == "prune":
            for state in lifecycle.prune(store):
                print(state.id, file=stdout)
            return 0
        if args.command == "volume":
            return _volume(args, root, stdout)
        if args.command == "inspect":
            print(json.dumps([lifecycle.inspect(store, r) for r in args.containers], indent=2),
                  file=stdout)
            return 0
        if args.command == "ps":
            lifecycle.ps(store, args.all, args.quiet, stdout)
        elif args.command == "logs":
            for chunk in lifecycle.logs(store, args.container, args.follow, args.tail):
                stdout.buffer.write(chunk) if hasattr(stdout, "buffer") else stdout.write(
                    chunk.decode(errors="replace"))
                stdout.flush()
        elif args.command == "exec":
            return exec_in(store, args.container, _command(args.cmd), args.env, args.workdir,
                           args.user, stderr, args.tty, args.interactive)
        else:
            for ref in args.containers:
                if args.command == "stop":
                    lifecycle.stop(store, ref, args.time)
                elif args.command == "kill":
                    lifecycle.kill(store, ref, _signal(args.signal))
                elif args.command in ("start", "restart"):
                    if args.command == "restart":
                        lifecycle.stop(store, ref, args.time)
                    if start_existing(store, ref, False, stdout, stderr):
                        return 1
                else:
                    lifecycle.rm(store, ref, args.force)
                print(ref, file=stdout)
        return 0
    except (ContainerError, OSError) as e:
        print(f"pyreg: {e}", file=stderr)
        return SETUP_FAILED if args.command in ("run", "exec", "create") else 1
