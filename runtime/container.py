"""Creating containers and running them, in the foreground or detached under a monitor.

    <root>/runtime/containers/<id>/  state.json, container.log, hosts, hostname, resolv.conf,
                                     rootfs/, upper/, work/
    <root>/runtime/layers/           the unpacked-layer cache (layers.py)

`<root>` is the client's image store (`pyreg --root`, $PYREG_ROOT): images are read from its OCI
layout unless `--layout` names another.

Everything mounted for a container lives in the container's own mount namespace (mounts.py) and
goes away with its last process; its cgroup is removed when it exits; `--rm` removes its directory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TextIO

from pyreg.runtime import ContainerError, SetupError, syscalls, userns
from pyreg.runtime.cgroups import NO_LIMITS, Cgroup, Limits
from pyreg.runtime.image import load_image
from pyreg.runtime.network import PortMapping, Slirp
from pyreg.runtime.process import SETUP_FAILED, container_init
from pyreg.runtime.rootfs import prepare_rootfs
from pyreg.runtime.spec import (
    NETWORKS,
    BindMount,
    ContainerSpec,
    command_line,
    environment,
    new_id,
    write_etc_files,
)
from pyreg.runtime.state import (
    CONFIG,
    ContainerState,
    StateStore,
    process_start_time,
    runtime_dir,
)
from pyreg.runtime.supervisor import SignalForwarder, detached, exit_code, spawn, wait

if TYPE_CHECKING:
    import socket


class RunOptions(NamedTuple):
    """What `run` and `create` were asked for. `network` and `root` have no default: the caller
    chooses them (network.default_network() and state.default_root() are the command line's)."""

    layout: Path
    ref: str | None
    network: str
    root: Path
    image_name: str | None = None  # what ps shows (the name as the user typed it)
    platform: str | None = None
    command: tuple[str, ...] = ()
    entrypoint: str | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    name: str | None = None
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    readonly: bool = False
    remove: bool = False
    detach: bool = False
    tty: bool = False
    interactive: bool = False
    limits: Limits = NO_LIMITS


def create(options: RunOptions) -> tuple[ContainerSpec, ContainerState]:
    """Read the image, prepare the container's directory, root filesystem and state."""
    if options.network not in NETWORKS:
        raise ContainerError(f"unsupported network {options.network!r} (one of {NETWORKS})")
    store = StateStore(options.root)
    if options.name and store.name_taken(options.name):
        raise ContainerError(f"the container name {options.name!r} is already in use")
    if options.limits and os.geteuid() != 0:
        raise ContainerError("--memory, --cpus and --pids-limit need root: cgroups are not "
                             "delegated to this user (rootless)")
    image = load_image(options.layout, options.ref, options.platform, options.image_name)
    volumes: tuple[BindMount, ...] = ()
    if options.volumes:
        from pyreg.runtime.volumes import VolumeStore

        volumes = tuple(BindMount.parse(v, VolumeStore(options.root)) for v in options.volumes)
    ports = tuple(PortMapping.parse(p) for p in options.ports)
    if ports and options.network != "slirp":
        raise ContainerError(f"-p needs an isolated network (--network slirp), not "
                             f"{options.network!r}")
    cid = new_id()
    hostname = options.hostname or cid[:12]
    private(runtime_dir(options.root))
    container_dir = store.dir(cid)
    container_dir.mkdir(parents=True)
    try:
        os.chmod(container_dir, 0o700)  # the writable layer is the container's business only
        rootfs = prepare_rootfs(image, container_dir, runtime_dir(options.root))
        spec = ContainerSpec(
            id=cid,
            args=command_line(image.config, options.command, options.entrypoint),
            env=environment(image.config.env, options.env, hostname),
            rootfs=rootfs,
            container_dir=container_dir,
            hostname=hostname,
            cwd=options.workdir or image.config.working_dir or "/",
            user=options.user if options.user is not None else image.config.user,
            network=options.network,
            volumes=volumes,
            readonly=options.readonly,
            etc_files=write_etc_files(container_dir, hostname, options.network),
            limits=options.limits,
            ports=ports,
            tty=options.tty,
            interactive=options.interactive,
        )
        state = ContainerState(
            id=cid, name=options.name or f"pyreg-{cid[:8]}",
            image=options.image_name or options.ref or str(image.digest),
            command=list(spec.args), created=time.time(),
            ports=[str(p) for p in ports] + [p for p in image.config.exposed_ports if not any(
                f"{m.container_port}/{m.proto}" == p for m in ports)],
            env=list(spec.env), cwd=spec.cwd, user=spec.user, auto_remove=options.remove,
            image_ref=options.ref or str(image.digest),
        )
        store.save(state)
        (container_dir / CONFIG).write_text(json.dumps(spec.to_json(), indent=2))
    except BaseException:
        remove(container_dir)
        raise
    return spec, state


def private(path: Path) -> None:
    """The runtime's directory, for its owner only (docker's /var/lib/docker is 0710): the cached
    layers and the volumes hold what images ship, setuid files and device nodes included, which
    no other user of the host may reach (a 0666 node of a disk, a setuid shell)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, 0o700)  # made by an earlier version, or by `volume create`


def load_spec(store: StateStore, container_id: str) -> ContainerSpec:
    try:
        return ContainerSpec.from_json(json.loads((store.dir(container_id) / CONFIG).read_text()))
    except (OSError, ValueError) as e:
        raise ContainerError(f"container {container_id}: configuration unreadable: {e}") from None


def start_existing(store: StateStore, ref: str, attach: bool = False,
                   stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    """Start a created or exited container again (its writable layer kept)."""
    state = store.find(ref)
    if state.running:
        raise ContainerError(f"container {ref} is already running")
    spec = load_spec(store, state.id)
    state = state._replace(status="created", exit_code=None, finished=None, oom_killed=False,
                           error="", pid=0, pid_start=0)
    if attach:
        return run(spec, state, store, stderr, remove_after=state.auto_remove)
    code, message = detach(spec, state, store, state.auto_remove)
    if code:
        print(f"pyreg: {message}", file=stderr)
    return code


def remove(container_dir: Path) -> None:
    shutil.rmtree(container_dir, ignore_errors=True)


def _namespaces(spec: ContainerSpec, rootless: bool) -> int:
    flags = (syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
             | syscalls.CLONE_NEWPID)
    if rootless:
        flags |= syscalls.CLONE_NEWUSER
    return flags if spec.network == "host" else flags | syscalls.CLONE_NEWNET


def _unshare(flags: int) -> None:
    """unshare(2), its failures said in one line: what is missing, and where to look."""
    try:
        syscalls.unshare(flags)
    except OSError as e:
        kinds = ", ".join(name for bit, name in (
            (syscalls.CLONE_NEWUSER, "user"), (syscalls.CLONE_NEWNS, "mount"),
            (syscalls.CLONE_NEWPID, "pid"), (syscalls.CLONE_NEWUTS, "uts"),
            (syscalls.CLONE_NEWIPC, "ipc"), (syscalls.CLONE_NEWNET, "network")) if flags & bit)
        if e.errno == errno.EINVAL:
            why = f"this kernel lacks namespaces a container needs ({kinds})"
        elif e.errno == errno.ENOSPC:
            why = "the limit of namespaces is reached (/proc/sys/user/max_*_namespaces)"
        elif flags & syscalls.CLONE_NEWUSER:
            why = ("user namespaces are not allowed for this user "
                   "(kernel.unprivileged_userns_clone, user.max_user_namespaces)")
        else:
            why = f"not permitted to create {kinds} namespaces (no CAP_SYS_ADMIN here?)"
        raise SetupError(f"cannot create the container's namespaces: {why}: "
                         f"{os.strerror(e.errno or 0)}") from None


def run(spec: ContainerSpec, state: ContainerState, store: StateStore, stderr: TextIO = sys.stderr,
        remove_after: bool = False, started: Callable[[int], None] | None = None) -> int:
    """Run the container to its end: forward signals, keep its state, return its exit code."""
    cgroup = Cgroup(spec.id, spec.limits) if spec.limits else None
    mapping = userns.plan()
    slirp: Slirp | None = None
    code, oom, error = SETUP_FAILED, False, ""
    try:
        with SignalForwarder() as signals:
            if cgroup is not None:
                cgroup.create()
            ours: socket.socket | None = None
            theirs: socket.socket | None = None
            if spec.tty:
                # Here: the terminal's modules (socket, termios, selectors) for -t only.
                import socket

                from pyreg.runtime import console

                ours, theirs = socket.socketpair()
            flags = _namespaces(spec, mapping is not None)
            if mapping is None:
                # Root: the supervisor makes the PID namespace, the child enters the others.
                child = spawn(lambda: _unshare(flags & ~syscalls.CLONE_NEWPID),
                              lambda go, rep: container_init(spec, go, rep, theirs),
                              pid_namespace=lambda: _unshare(syscalls.CLONE_NEWPID))
            else:
                child = spawn(lambda: _unshare(flags),
                              lambda go, rep: container_init(spec, go, rep, theirs))
            if theirs is not None:
                theirs.close()
            signals.forward_to(child.pid)
            try:
                if mapping is not None:
                    # Before go: the child is root in its namespace only once it is mapped.
                    userns.apply(child.pid, mapping)
                if cgroup is not None:
                    # Before go: the command starts inside its limits.
                    cgroup.add(child.pid)
                if spec.network == "slirp":
                    # Before go: the command starts with its network up.
                    slirp = Slirp(child.pid, spec.container_dir, spec.ports,
                                  userns=mapping is not None)
                    slirp.start()
            except BaseException:
                child.abandon()
                raise
            master: list[int] = []

            def attach_terminal() -> None:
                assert ours is not None
                master.append(console.receive_master(ours))
                console.copy_window_size(console.terminal_size_source(), master[0])
                ours.send(b"k")  # the container may exec now

            failure = child.go(attach_terminal if ours is not None else None)
            if ours is not None:
                ours.close()
            if failure is None:
                state = state._replace(
                    status="running", pid=child.pid, started=time.time(),
                    pid_start=process_start_time(child.pid) or 0,
                    cgroups=[str(p) for p in (cgroup.dirs.values() if cgroup else ())])
                store.save(state)
                if started is not None:
                    started(child.pid)
            if master and failure is None:
                signals.on_winch = lambda: console.copy_window_size(
                    console.terminal_size_source(), master[0])
                code = exit_code(console.session(master[0], child.pid, spec.interactive))
            else:
                for fd in master:
                    os.close(fd)
                code = wait(child.pid)
            if failure is not None:
                code, error = failure
                print(f"pyreg: {error}", file=stderr)
            oom = cgroup is not None and cgroup.oom_killed()
    except ContainerError as e:
        error = str(e)
        raise
    finally:
        if slirp is not None:
            slirp.stop()
        if cgroup is not None:
            cgroup.remove()
        if remove_after:
            remove(spec.container_dir)
        else:
            with contextlib.suppress(OSError):
                with contextlib.suppress(ContainerError):
                    state = state._replace(name=store.load(state.id).name)  # renamed meanwhile
                store.save(state._replace(status="exited", exit_code=code, oom_killed=oom,
                                          finished=time.time(), error=error))
    return code


def detach(spec: ContainerSpec, state: ContainerState, store: StateStore, remove_after: bool
           ) -> tuple[int, str]:
    """Run the container under a monitor process of its own; (0, "") once it runs, or its
    failure. The container's output goes to its log file."""
    def stdio() -> None:
        from pyreg.runtime import logs

        out, err = logs.start_writer(store.dir(spec.id) / logs.LOG)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (null, out, err):
            os.close(fd)

    return detached(stdio, lambda errors, ready: run(spec, state, store, errors, remove_after,
                                                     lambda pid: ready()), "container")


def run_container(options: RunOptions, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr,
                  create_only: bool = False) -> int:
    """Create the container and run it, in the foreground or detached."""
    store = StateStore(options.root)
    spec, state = create(options)
    if create_only:
        print(spec.id, file=stdout)
        return 0
    if not options.detach:
        return run(spec, state, store, stderr, remove_after=options.remove)
    code, message = detach(spec, state, store, options.remove)
    if code:
        print(f"pyreg: {message}", file=stderr)
        return code
    print(spec.id, file=stdout)
    return 0
