"""`python -m pyreg.runtime`: the runtime's own command line, which `pyreg run` wraps.

    python -m pyreg.runtime run [--layout DIR] [--ref TAG|DIGEST] [--image-name NAME]
        [--platform OS/ARCH] [--rm] [-d] [-i]
        [-t] [--name N] [-e K=V] [--env-file F] [-w DIR] [-u USER] [--hostname H] [--entrypoint X]
        [--network slirp|none|host] [-p [IP:]HOST:CTR[/tcp]] [-v HOST|NAME:CTR[:ro]] [--read-only]
        [--memory 64m] [--pids-limit N] [--cpus 0.5] -- COMMAND...
    python -m pyreg.runtime create (the options of run, without -d) -- COMMAND...
    python -m pyreg.runtime start [-a] CONTAINER...     restart [-t SECONDS] CONTAINER...
    python -m pyreg.runtime rename CONTAINER NAME       inspect CONTAINER...      prune
    python -m pyreg.runtime volume create|inspect|rm NAME...     volume ls     volume prune [-a]
    python -m pyreg.runtime ps [-a] [-q] [--no-trunc] [--filter K=V]... [--format TEMPLATE]
    python -m pyreg.runtime logs [-f] [-t] [--tail N] [--since TIME] CONTAINER
    python -m pyreg.runtime layer prune [--keep DIFF_ID]...   cached layers no container uses
    python -m pyreg.runtime stop [-t SECONDS] CONTAINER...
    python -m pyreg.runtime kill [-s SIGNAL] CONTAINER...
    python -m pyreg.runtime rm [-f] CONTAINER...
    python -m pyreg.runtime exec [-d] [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER COMMAND...

Every command takes --root, the client's image store (default $PYREG_ROOT, else
$XDG_DATA_HOME/pyreg): images are read from it (unless --layout names another OCI layout) and the
runtime's state lives in <root>/runtime/. `run` exits with the container's code: its own,
128 + signal when killed, 125 when the runtime fails, 126 when the command cannot be executed, 127
when it is not found (docker's).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from pyreg.runtime import ContainerError
from pyreg.runtime.cgroups import Limits, parse_memory
from pyreg.runtime.container import RunOptions, run_container, start_existing
from pyreg.runtime.network import default_network
from pyreg.runtime.process import SETUP_FAILED
from pyreg.runtime.spec import NETWORKS
from pyreg.runtime.state import StateStore, default_root, runtime_dir


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as every other failure (`pyreg run --memory 1k` is wrapped by the client).
        self.exit(2, f"pyreg: {message} (see '{self.prog} --help')\n")


Verb = Callable[[argparse.ArgumentParser, argparse.ArgumentParser], None]


def _run(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    _container_options(p)
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true")


def _create(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    _container_options(p)
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")


def _start(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("containers", nargs="+")


def _stop(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--time", type=float, default=10)
    p.add_argument("containers", nargs="+")


def _rename(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("name")


def _containers(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    p.add_argument("containers", nargs="+")


def _nothing(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    pass


def _volume_verbs(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    verbs = p.add_subparsers(dest="volume_command", required=True)
    for verb in ("create", "inspect", "rm"):
        verbs.add_parser(verb, parents=[common]).add_argument("names", nargs="+")
    verbs.add_parser("ls", parents=[common])
    verbs.add_parser("prune", parents=[common]).add_argument("-a", "--all", action="store_true")


def _ps(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--format", metavar="TEMPLATE")


def _logs(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", type=int)
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--since", metavar="TIME", help="RFC 3339, Unix seconds or a duration (10m)")
    p.add_argument("container")


def _layer(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    verbs = p.add_subparsers(dest="layer_command", required=True)
    verbs.add_parser("prune", parents=[common]).add_argument(
        "--keep", action="append", default=[], metavar="DIFF_ID",
        help="a layer to keep even if no container uses it")


def _kill(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")


def _rm(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("containers", nargs="+")


def _exec(p: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("container")
    p.add_argument("cmd", nargs=argparse.REMAINDER)


VERBS: dict[str, tuple[str, Verb]] = {
    "run": ("run a command in a new container", _run),
    "create": ("create a container", _create),
    "start": ("start stopped containers", _start),
    "restart": ("stop, then start", _stop),
    "rename": ("rename a container", _rename),
    "inspect": ("state and configuration", _containers),
    "prune": ("remove all stopped containers", _nothing),
    "volume": ("named volumes", _volume_verbs),
    "ps": ("list containers", _ps),
    "logs": ("a detached container's output", _logs),
    "layer": ("the unpacked-layer cache", _layer),
    "stop": ("SIGTERM, then SIGKILL", _stop),
    "kill": ("send a signal", _kill),
    "rm": ("remove containers", _rm),
    "exec": ("run a command in a container", _exec),
}


def _parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The command line; with `verb`, that verb's parser only (building all of them costs a
    container's start a sixth of its time)."""
    parser = _Parser(prog="python -m pyreg.runtime")
    common = _Parser(add_help=False)
    # SUPPRESS: given at any level of `volume ...`, an absent one does not reset it.
    common.add_argument("--root", type=Path, default=argparse.SUPPRESS,
                        help="state directory (default $PYREG_ROOT)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (text, build) in VERBS.items():
        if verb in (None, name):
            build(commands.add_parser(name, parents=[common], help=text), common)
    return parser


def _container_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("--layout", type=Path, help="OCI image layout (default: the root's store)")
    run.add_argument("--ref", help="name, tag or manifest digest in the layout")
    run.add_argument("--image-name", help="the image's name as ps shows it (default: --ref)")
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
    run.add_argument("--memory", type=_memory)
    run.add_argument("--pids-limit", type=int)
    run.add_argument("--cpus", type=float)
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments")


def _memory(value: str) -> int:
    try:
        return parse_memory(value)
    except ContainerError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
    from pyreg.runtime.volumes import VolumeStore

    volumes = VolumeStore(root)
    if args.volume_command == "prune":
        for name, size in volumes.prune(StateStore(root).root, args.all):
            print(f"{name} {size}", file=stdout)
    elif args.volume_command == "ls":
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
                volumes.remove(name, StateStore(root).root)
            print(name, file=stdout)
    return 0


def _write(stream: TextIO, data: bytes) -> None:
    if hasattr(stream, "buffer"):
        stream.flush()
        stream.buffer.write(data)
        stream.buffer.flush()
    else:
        stream.write(data.decode(errors="replace"))
    stream.flush()


def main(argv: Sequence[str] | None = None, stdout: TextIO = sys.stdout,
         stderr: TextIO = sys.stderr) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = argv[0] if argv else ""
    try:
        args = _parser(verb if verb in VERBS else None).parse_args(argv)
    except SystemExit as e:
        # A bad flag of run, create or exec is docker's 125 (the container did not start).
        if e.code == 2 and verb in ("run", "create", "exec"):
            return SETUP_FAILED
        raise
    root: Path = getattr(args, "root", None) or default_root()
    store = StateStore(root)
    try:
        if args.command in ("run", "create"):
            return run_container(RunOptions(
                layout=args.layout or root, ref=args.ref, image_name=args.image_name,
                platform=args.platform,
                command=_command(args.cmd),
                entrypoint=args.entrypoint, env=(*_env_files(args.env_file), *args.env),
                workdir=args.workdir, user=args.user, hostname=args.hostname, name=args.name,
                network=args.network or default_network(), ports=tuple(args.publish),
                volumes=tuple(args.volume), readonly=args.read_only, remove=args.rm,
                detach=getattr(args, "detach", False), tty=args.tty,
                interactive=args.interactive, root=root,
                limits=Limits(memory=args.memory, pids=args.pids_limit, cpus=args.cpus),
            ), stdout, stderr, create_only=args.command == "create")
        # The other verbs' modules: not imported for a container's start.
        from pyreg.runtime import enter, lifecycle, listing
        from pyreg.runtime.layers import LayerCache
        from pyreg.runtime.logs import parse_time

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
            listing.ps(store, args.all, args.quiet, stdout, args.filter, args.format,
                       not args.no_trunc)
        elif args.command == "logs":
            try:
                since = None if args.since is None else parse_time(args.since)
            except ValueError as e:
                raise ContainerError(str(e)) from None
            for stream, chunk in lifecycle.logs(store, args.container, args.follow, args.tail,
                                                args.timestamps, since):
                _write(stderr if stream == "stderr" else stdout, chunk)
        elif args.command == "layer":
            keep = set(args.keep)
            for diff_id in lifecycle.prune_layers(store, LayerCache(runtime_dir(root) / "layers"),
                                                  keep):
                print(f"deleted: {diff_id}", file=stdout)
        elif args.command == "exec" and args.detach:
            code, message = enter.exec_detached(store, args.container, _command(args.cmd),
                                                args.env, args.workdir, args.user)
            if code:
                print(f"pyreg: {message}", file=stderr)
            return code
        elif args.command == "exec":
            return enter.exec_in(store, args.container, _command(args.cmd), args.env,
                                 args.workdir, args.user, stderr, args.tty, args.interactive)
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
