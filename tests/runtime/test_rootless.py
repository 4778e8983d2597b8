"""Rootless `pyreg run`: as an unprivileged user, inside a user namespace.

The project's Python lives in root's home here, which other users cannot enter: the test runs
Debian's /usr/bin/python3 as the user, with a copy of pyreg's pure-Python packages (oci, runtime,
client: the commands used here import nothing from outside the standard library) in a world-readable
directory. Two users: `nobody`, without /etc/subuid entries (a single-uid mapping), and
`pyreg-rootless`, a system user given a subordinate range, created here when missing and removed
afterwards (newuidmap/newgidmap map 65536 ids).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.runtime.conftest import (
    IMAGE_CONFIG,
    image_layers,
    mounts_under,
    require_root_and_busybox,
)
from tests.runtime.images import write_layout

SOURCE = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
SUBUSER = "pyreg-rootless"


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(what)
    pytest.skip(what)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Path]:
    """A world-readable directory with pyreg's packages and the test image, for other users."""
    require_root_and_busybox()
    if not SYSTEM_PYTHON.exists():
        _missing("Debian's python3 is not installed (apt-get install python3)")
    base = Path(tempfile.mkdtemp(prefix="pyreg-rootless-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        package = base / "py" / "pyreg"
        package.mkdir(parents=True)
        for folder in ("oci", "runtime", "client"):
            shutil.copytree(SOURCE / folder, package / folder,
                            ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run(["chmod", "-R", "a+rX", str(base / "py")], check=True)
        write_layout(base / "image", image_layers(), IMAGE_CONFIG, tag="docker.io/library/bb:latest")
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def subordinate_user() -> Iterator[str]:
    """A user with an /etc/subuid and /etc/subgid range."""
    created = False
    try:
        pwd.getpwnam(SUBUSER)
    except KeyError:
        if not shutil.which("useradd"):
            _missing("useradd is not installed")
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SUBUSER], check=True)
        created = True
    if SUBUSER not in Path("/etc/subuid").read_text():
        subprocess.run(["usermod", "--add-subuids", "300000-365535", "--add-subgids",
                        "300000-365535", SUBUSER], check=True)
    try:
        yield SUBUSER
    finally:
        if created:
            subprocess.run(["userdel", SUBUSER], check=False)


class Rootless:
    """`pyreg` as `user`, with a store of its own that holds the test image as `bb`."""

    def __init__(self, sandbox: Path, user: str) -> None:
        entry = pwd.getpwnam(user)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.root = sandbox / f"root-{user}"
        shutil.copytree(sandbox / "image", self.root)
        subprocess.run(["chown", "-R", f"{self.uid}:{self.gid}", str(self.root)], check=True)
        self.sandbox = sandbox

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root),
               "PYTHONPATH": str(self.sandbox / "py"), "PYTHONDONTWRITEBYTECODE": "1"}
        return subprocess.run(
            ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
             str(SYSTEM_PYTHON), "-m", "pyreg.client.cli", "--root", str(self.root), *args],
            capture_output=True, text=True, env=env, cwd="/", timeout=120, check=False,
            stdin=subprocess.DEVNULL)

    def left_behind(self) -> list[str]:
        containers = self.root / "runtime" / "containers"
        return mounts_under(self.root) + [p.name for p in containers.glob("*")]


def test_rootless_with_a_single_uid(sandbox: Path) -> None:
    pyreg = Rootless(sandbox, "nobody")
    result = pyreg("run", "--rm", "--pull", "never", "bb", "sh", "-c",
                   "id -u; cat /proc/self/uid_map; echo $$; hostname; cat /srv/hello.txt; exit 3")
    assert result.returncode == 3, result.stderr
    uid, inside, outside, count, pid, hostname, *hello = result.stdout.split()
    assert (uid, inside, outside, count, pid) == ("0", "0", str(pyreg.uid), "1", "1")
    assert len(hostname) == 12 and hello == ["hello", "from", "the", "image"]
    other_user = pyreg("run", "--rm", "--pull", "never", "-u", "app", "bb", "id")
    assert other_user.returncode == 125 and "not mapped" in other_user.stderr
    assert other_user.stderr.count("\n") == 1
    limits = pyreg("run", "--rm", "--pull", "never", "--memory", "64m", "bb", "true")
    assert limits.returncode == 125 and "need root" in limits.stderr
    # Detached, with exec entering the user namespace first.
    started = pyreg("run", "-d", "--name", "bg", "--pull", "never", "bb", "sleep", "60")
    assert started.returncode == 0, started.stderr
    assert pyreg("exec", "bg", "sh", "-c", "id -u; ps -o pid,comm | grep -c sleep").stdout.split() \
        == ["0", "1"]
    assert pyreg("rm", "-f", "bg").returncode == 0
    assert pyreg.left_behind() == []


def test_rootless_with_subordinate_ids(sandbox: Path, subordinate_user: str) -> None:
    if not (shutil.which("newuidmap") and shutil.which("newgidmap")):
        _missing("newuidmap/newgidmap are not installed (apt-get install uidmap)")
    pyreg = Rootless(sandbox, subordinate_user)
    result = pyreg("run", "--rm", "--pull", "never", "-u", "app", "bb", "sh", "-c",
                   "id; wc -l < /proc/self/uid_map; touch /tmp/x && stat -c %u /tmp/x")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["uid=1000(app)", "gid=1000(app)",
                                     "groups=10(wheel),29(audio),1000(app)", "2", "1000"]
    assert pyreg.left_behind() == []
