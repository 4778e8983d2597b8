"""More of docker's container commands: `inspect` of a container, `ps --filter/--format`,
`logs --since`, `volume prune`, `exec -d` (the `pyreg` commands as root), and the parsing behind
them (without root)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from pyreg.runtime import ContainerError
from pyreg.runtime.listing import ps
from pyreg.runtime.logs import parse_time
from pyreg.runtime.state import ContainerState, StateStore
from tests.client.cli import Pyreg
from tests.runtime.conftest import wait_for

NOW = 1_795_773_600_000_000_000  # 2026-11-27T10:00:00Z


@pytest.mark.parametrize(("text", "ns"), [
    ("2026-11-27T10:00:00Z", NOW),
    ("2026-11-27T10:00:00.25Z", NOW + 250_000_000),
    ("2026-11-27T11:00:00+01:00", NOW),
    ("2026-11-27T10:00:00.123456789Z", NOW + 123_456_789),
    ("2026-11-27", NOW - 10 * 3600 * 10**9),
    ("1795773600.5", NOW + 500_000_000),
    ("10m", NOW - 600 * 10**9),
    ("1h30m", NOW - 5400 * 10**9),
    ("1.5s", NOW - 1_500_000_000),
])
def test_since_takes_rfc3339_unix_seconds_and_durations(text: str, ns: int) -> None:
    assert parse_time(text, NOW) == ns


@pytest.mark.parametrize("text", ["yesterday", "10x", "2026-13", ""])
def test_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="invalid time"):
        parse_time(text, NOW)


def _states(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path)
    for i, (name, status, image, ref) in enumerate([
            ("web", "running", "nginx", "sha256:" + "a" * 64),
            ("db", "exited", "postgres:16", "sha256:" + "b" * 64),
            ("webtool", "created", "nginx:latest", "sha256:" + "a" * 64)]):
        cid = f"{i}" * 64
        store.dir(cid).mkdir(parents=True)
        # A running container is this test's own process (its pid and start time are real).
        pid = os.getpid() if status == "running" else 0
        from pyreg.runtime.state import process_start_time

        store.save(ContainerState(id=cid, name=name, image=image, command=["sh", "-c", "x"],
                                  created=time.time() - 60 * (i + 1), status=status, pid=pid,
                                  pid_start=process_start_time(pid) or 0 if pid else 0,
                                  exit_code=0 if status == "exited" else None,
                                  ports=["80/tcp"] if name == "web" else [], image_ref=ref))
    return store


def _ps(store: StateStore, *filters: str, fmt: str | None = None, all_: bool = False) -> str:
    import io

    out = io.StringIO()
    ps(store, all_, False, out, filters, fmt)
    return out.getvalue()


def test_ps_filters(tmp_path: Path) -> None:
    store = _states(tmp_path)
    names = "{{.Names}}"
    assert _ps(store, fmt=names) == "web\n"
    assert _ps(store, fmt=names, all_=True) == "web\ndb\nwebtool\n"
    assert _ps(store, "status=exited", fmt=names) == "db\n"  # no -a needed, as docker
    assert _ps(store, "status=exited", "status=created", fmt=names) == "db\nwebtool\n"
    assert _ps(store, "name=web", fmt=names, all_=True) == "web\nwebtool\n"
    assert _ps(store, "name=web", "status=created", fmt=names) == "webtool\n"
    assert _ps(store, "id=11", fmt=names, all_=True) == "db\n"
    assert _ps(store, "ancestor=nginx", fmt=names, all_=True) == "web\nwebtool\n"
    assert _ps(store, "ancestor=postgres:16", fmt=names, all_=True) == "db\n"
    assert _ps(store, "ancestor=sha256:bbbbbb", fmt=names, all_=True) == "db\n"
    for bad in ("color=red", "status=paused-forever", "name"):
        with pytest.raises(ContainerError, match="invalid filter"):
            _ps(store, bad)


def test_ps_formats(tmp_path: Path) -> None:
    store = _states(tmp_path)
    assert _ps(store, fmt="{{.ID}}: {{.Image}} {{.Command}} [{{.Ports}}] {{.Status}}") == (
        '000000000000: nginx "sh -c x" [80/tcp] Up 1 minute\n')
    assert _ps(store, fmt="{{.Names}}\\t{{ .Image }}") == "web\tnginx\n"
    table = _ps(store, fmt="table {{.Names}}\t{{.Status}}", all_=True).splitlines()
    assert table[0] == "NAMES     STATUS"
    assert re.fullmatch(r"db        Exited \(0\) 2 minutes ago", table[2]), table
    assert _ps(store) == _ps(store, fmt="table")  # docker's default columns
    with pytest.raises(ContainerError, match="unsupported field"):
        _ps(store, fmt="{{.Labels}}")


def test_inspect_falls_back_to_containers(pyreg: Pyreg) -> None:
    cid = pyreg("create", "--name", "box", "bb", "true").out.strip()
    [image] = json.loads(pyreg("inspect", "bb").out)
    assert image["Id"].startswith("sha256:")
    [box] = json.loads(pyreg("inspect", "box").out)
    assert (box["id"], box["name"]) == (cid, "box")
    both = json.loads(pyreg("inspect", "bb", cid[:8]).out)
    assert [d.get("id") for d in both] == [None, cid]
    assert pyreg("inspect", "--type", "image", "box").code == 1
    missing = pyreg("inspect", "--type", "container", "nosuch")
    assert missing.code == 1 and "No such container: nosuch" in missing.err


def test_ps_logs_since_exec_detached(pyreg: Pyreg) -> None:
    cid = pyreg("run", "-d", "--name", "svc", "bb", "sh", "-c",
                "echo early; sleep 1.5; echo late; sleep 60").out.strip()
    wait_for(lambda: "late" in pyreg("logs", "svc").out)
    assert pyreg("ps", "--filter", "name=svc", "--format", "{{.ID}} {{.Names}}").out == (
        f"{cid[:12]} svc\n")
    assert pyreg("ps", "-q", "-f", "status=exited").out == ""
    assert pyreg("ps", "--no-trunc", "-q").out == f"{cid}\n"
    assert pyreg("logs", "--since", "1s", "svc").out == "late\n"
    stamps = pyreg("logs", "-t", "svc").out.split()
    assert pyreg("logs", "--since", stamps[0], "svc").out == "early\nlate\n"
    assert pyreg("logs", "--since", stamps[2], "svc").out == "late\n"
    assert pyreg("logs", "--since", "2000-01-01T00:00:00Z", "--tail", "1", "svc").out == "late\n"
    bad = pyreg("logs", "--since", "yesterday", "svc")
    assert bad.code != 0 and "invalid time" in bad.err
    # exec -d returns at once; the command runs on in the container.
    begin = time.monotonic()
    detached = pyreg("exec", "-d", "svc", "sh", "-c", "sleep 1; echo done > /tmp/marker")
    assert (detached.code, detached.out) == (0, ""), detached.err
    assert time.monotonic() - begin < 1
    wait_for(lambda: pyreg("exec", "svc", "cat", "/tmp/marker").out == "done\n")
    failed = pyreg("exec", "-d", "svc", "no-such-command")
    assert failed.code == 127 and "executable file not found" in failed.err
    assert pyreg("rm", "-f", "svc").code == 0


def test_volume_prune(pyreg: Pyreg) -> None:
    anonymous = pyreg("volume", "create").out.strip()
    for name in ("kept", "loose"):
        assert pyreg("volume", "create", name).code == 0
    assert pyreg("run", "--rm", "-v", f"{anonymous}:/a", "bb", "sh", "-c", "echo x > /a/f").code == 0
    assert pyreg("create", "-v", "kept:/k", "bb", "true").code == 0  # a stopped user
    declined = pyreg("volume", "prune")
    assert declined.out.startswith("WARNING! This will remove anonymous local volumes")
    assert len(pyreg("volume", "ls", "-q").out.split()) == 3
    pruned = pyreg("volume", "prune", "-f")
    assert pruned.out.splitlines() == ["Deleted Volumes:", anonymous, "", "Total reclaimed space: 2B"]
    everything = pyreg("volume", "prune", "-a", stdin="y\n")
    assert "Deleted Volumes:\nloose\n" in everything.out
    assert pyreg("volume", "ls", "-q").out == "kept\n"
