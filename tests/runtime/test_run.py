"""Running containers (as root): commands, exit codes, the image config, namespaces, signals, and
nothing left behind."""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, require_tool
from tests.runtime.conftest import Runner, host_links, mounts_under


@pytest.fixture(autouse=True)
def nothing_left_behind(runtime_root: Path) -> Iterator[None]:
    links = host_links()
    yield
    assert mounts_under(runtime_root) == []
    containers = runtime_root / "runtime" / "containers"
    assert not containers.exists() or list(containers.iterdir()) == []
    assert host_links() <= links  # no tap or veth device left on the host (ip link)


def test_echo_and_exit_codes(run: Runner) -> None:
    result = run("sh", "-c", "echo hello; echo oops >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "hello\n", "oops\n")
    assert run("true").returncode == 0
    assert run("false").returncode == 1


def test_image_cmd_is_the_default(run: Runner) -> None:
    result = run()
    assert (result.returncode, result.stdout) == (0, "default\n")


def test_command_not_found_and_not_executable(run: Runner) -> None:
    missing = run("no-such-command")
    assert missing.returncode == 127
    assert "no-such-command" in missing.stderr and "not found" in missing.stderr
    assert run("/no/such/path").returncode == 127
    denied = run("/bin/not-exec")
    assert denied.returncode == 126 and "ermission denied" in denied.stderr
    assert run("/srv").returncode == 126


def test_env_workdir_user_from_the_image_and_the_command_line(run: Runner) -> None:
    result = run("sh", "-c", "echo $IMAGE_VAR $HOME; pwd; id")
    assert result.stdout.splitlines() == [
        "from-image /root", "/srv/app", "uid=0(root) gid=0(root) groups=0(root)"]
    result = run("sh", "-c", "echo $IMAGE_VAR $EXTRA $HOME; pwd; id", options=[
        "--rm", "-e", "IMAGE_VAR=overridden", "-e", "EXTRA=1", "-w", "/made/for/it", "-u", "app"])
    assert result.stdout.splitlines() == [
        "overridden 1 /home/app", "/made/for/it",
        "uid=1000(app) gid=1000(app) groups=10(wheel),29(audio),1000(app)"]
    assert run("id", options=["--rm", "-u", "nobody:audio"]).stdout == (
        "uid=65534(nobody) gid=29(audio) groups=29(audio)\n")
    assert run("id", options=["--rm", "-u", "4242:4343"]).stdout == (
        "uid=4242 gid=4343 groups=4343\n")
    unknown = run("id", options=["--rm", "-u", "nosuchuser"])
    assert unknown.returncode == 125 and "nosuchuser" in unknown.stderr


def test_pid_1_and_a_private_process_table(run: Runner) -> None:
    result = run("sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'")
    pid, count = result.stdout.split()
    assert pid == "1" and int(count) <= 3


def test_hostname_and_etc_files(run: Runner) -> None:
    short = run("hostname").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{12}", short)
    result = run("sh", "-c", "hostname; cat /etc/hostname; grep box /etc/hosts; "
                 "test -f /etc/resolv.conf && echo resolv",
                 options=["--rm", "--hostname", "box", "--network", "slirp"])
    assert result.stdout.split() == ["box", "box", "10.0.2.100", "box", "resolv"]


def test_filesystems(run: Runner) -> None:
    result = run("sh", "-c", "ls /dev | tr '\\n' ' '; echo; touch /sys/x 2>/dev/null || echo "
                 "sys-ro; readlink /dev/ptmx; grep -c devpts /proc/mounts; echo ok > /tmp/t && "
                 "cat /tmp/t")
    devices, sys_ro, ptmx, devpts, tmp = result.stdout.splitlines()
    for name in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "fd",
                 "stdin", "stdout", "stderr"):
        assert name in devices.split()
    assert (sys_ro, ptmx, devpts, tmp) == ("sys-ro", "pts/ptmx", "1", "ok")


@pytest.mark.parametrize("snapshotter", ["overlay", "copy"])
def test_privileges_are_limited(run: Runner, snapshotter: str) -> None:
    script = ("grep CapBnd /proc/self/status; mknod /tmp/m c 1 1 2>/dev/null || echo no-mknod; "
              "head -c 1 /srv/mem 2>/dev/null || echo no-dev; mount -t tmpfs t /mnt 2>/dev/null "
              "|| echo no-mount; hostname x 2>/dev/null || echo no-hostname")
    result = run("sh", "-c", script, env={"PYREG_SNAPSHOTTER": snapshotter})
    # docker's default set without CAP_MKNOD; a device node from the image cannot be opened.
    assert result.stdout.split() == ["CapBnd:", "00000000a00425fb", "no-mknod", "no-dev",
                                     "no-mount", "no-hostname"]
    assert run("grep", "CapEff", "/proc/self/status", options=["--rm", "-u", "app"]).stdout == (
        "CapEff:\t0000000000000000\n")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def host_server(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "index.html").write_text("from the host")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_network_none_has_only_loopback(run: Runner, host_server: int) -> None:
    result = run("sh", "-c", f"ip -o link | cut -d: -f2; ip route | wc -l; "
                 f"wget -q -T 2 -O - http://127.0.0.1:{host_server}/ || echo unreachable",
                 options=["--rm", "--network", "none"])
    assert result.stdout.split() == ["lo", "0", "unreachable"]


def test_default_network_is_slirp_with_published_ports(run: Runner, host_server: int) -> None:
    require_tool("slirp4netns")
    result = run("sh", "-c", "ip -o -4 addr show tap0 | tr -s ' ' | cut -d' ' -f4; ip route | "
                 f"grep default; cat /etc/resolv.conf; wget -q -T 2 -O - "
                 f"http://10.0.2.2:{host_server}/ || echo no-host-loopback")
    assert result.stdout.splitlines() == [
        "10.0.2.100/24", "default via 10.0.2.2 dev tap0 ", "nameserver 10.0.2.3",
        "no-host-loopback"]
    port = free_port()
    script = "mkdir /www && echo served > /www/index.html && echo up && httpd -f -p 80 -h /www"
    with subprocess.Popen(run.argv("sh", "-c", script, options=[
            "--rm", "-p", f"127.0.0.1:{port}:80"]), stdout=subprocess.PIPE, text=True) as runtime:
        assert runtime.stdout is not None and runtime.stdout.readline() == "up\n"
        deadline = time.monotonic() + 10
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert body == b"served\n"
        taken = run("true", options=["--rm", "-p", f"127.0.0.1:{port}:80"])
        assert taken.returncode == 125 and "already in use" in taken.stderr
        os.kill(_container_pid(runtime), signal.SIGKILL)
        assert runtime.wait(20) == 137
    assert run("true", options=["--rm", "--network", "none", "-p", "80:80"]).returncode == 125
    assert slirps_under(run.root) == []


def slirps_under(root: Path) -> list[int]:
    """slirp4netns processes started for containers of this runtime root (cwd: a container's)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "slirp4netns" and (
                    str(root) in os.readlink(proc / "cwd")):
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def test_network_host_shares_the_hosts(run: Runner, host_server: int) -> None:
    result = run("wget", "-q", "-O", "-", f"http://127.0.0.1:{host_server}/",
                 options=["--rm", "--network", "host"])
    assert result.stdout == "from the host"


def _container_pid(runtime: subprocess.Popen[str] | subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = Path(f"/proc/{runtime.pid}/task/{runtime.pid}/children").read_text().split()
        for child in children:
            # The container, once it has exec'd its command (no longer python).
            try:
                if Path(f"/proc/{child}/exe").resolve().name == "busybox":
                    return int(child)
            except OSError:
                pass
        time.sleep(0.05)
    raise TimeoutError("the container did not start")


def test_signals_are_forwarded_and_deaths_reported(run: Runner) -> None:
    script = "trap 'echo got TERM; exit 3' TERM; echo ready; sleep 60 & wait"
    with subprocess.Popen(run.argv("sh", "-c", script, options=["--rm"]),
                          stdout=subprocess.PIPE, text=True) as runtime:
        assert runtime.stdout is not None and runtime.stdout.readline() == "ready\n"
        runtime.send_signal(signal.SIGTERM)
        assert runtime.wait(20) == 3
        assert runtime.stdout.read() == "got TERM\n"

    with subprocess.Popen(run.argv("sleep", "60", options=["--rm"])) as runtime:
        os.kill(_container_pid(runtime), signal.SIGKILL)
        assert runtime.wait(20) == 128 + signal.SIGKILL


def test_the_container_dies_with_the_runtime(run: Runner, runtime_root: Path) -> None:
    with subprocess.Popen(run.argv("sleep", "60", options=[])) as runtime:
        container = _container_pid(runtime)
        runtime.kill()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{container}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{container}").exists()
    ps = subprocess.run([*run.argv()[:3], "ps", "-a", "-q", "--root", str(runtime_root)],
                        capture_output=True, text=True, check=True)
    assert ps.stdout.strip() != ""
    for cid in ps.stdout.split():
        subprocess.run([*run.argv()[:3], "rm", "--root", str(runtime_root), cid], check=True)


def test_the_image_stays_untouched(run: Runner) -> None:
    result = run("sh", "-c", "echo changed > /srv/hello.txt; rm /bin/true; cat /srv/hello.txt")
    assert result.stdout == "changed\n"
    assert run("cat", "/srv/hello.txt").stdout == "hello from the image\n"
    assert run("true").returncode == 0


@pytest.mark.parametrize("snapshotter", ["overlay", "copy"])
def test_both_snapshotters(run: Runner, snapshotter: str) -> None:
    result = run("sh", "-c", "head -c 14 /srv/hello.txt; echo; grep ' / ' /proc/mounts | cut -d' ' -f3",
                 env={"PYREG_SNAPSHOTTER": snapshotter})
    assert result.stdout.split() == ["hello", "from", "the", "overlay" if snapshotter == "overlay"
                                     else "ext4"]


def test_volumes_and_read_only(run: Runner, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in").write_text("from host\n")
    result = run("sh", "-c", "cat /data/in; echo back > /data/out; echo x > /ro/f || echo ro; "
                 "echo x > /etc/x || echo rootfs-ro", options=[
                     "--rm", "-v", f"{tmp_path / 'data'}:/data", "-v", f"{tmp_path}:/ro:ro",
                     "--read-only"])
    assert result.stdout.split() == ["from", "host", "ro", "rootfs-ro"], result.stderr
    assert (tmp_path / "data" / "out").read_text() == "back\n"
    bad = run("true", options=["--rm", "-v", "./relative:/x"])
    assert bad.returncode == 125 and "volume" in bad.stderr


def test_errors_leave_nothing_behind(run: Runner, tmp_path: Path) -> None:
    assert run("true", options=["--rm", "-u", "nosuchuser"]).returncode == 125
    assert run("no-such-command").returncode == 127
    missing = subprocess.run(Runner(tmp_path, run.root).argv("true", options=["--rm"]),
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 125 and "not an OCI image layout" in missing.stderr


def test_without_rm_the_container_stays_as_exited(run: Runner, runtime_root: Path) -> None:
    import json
    import sys

    result = run("sh", "-c", "exit 4", options=[])
    assert result.returncode == 4
    containers = list((runtime_root / "runtime" / "containers").iterdir())
    assert len(containers) == 1
    state = json.loads((containers[0] / "state.json").read_text())
    assert (state["status"], state["exit_code"]) == ("exited", 4)
    subprocess.run([sys.executable, "-m", "pyreg.runtime", "rm", "--root", str(runtime_root),
                    containers[0].name], check=True, capture_output=True)


def test_pid_namespace_cannot_see_host_processes(run: Runner) -> None:
    me = os.getpid()
    result = run("sh", "-c", f"test -e /proc/{me} && echo seen || echo hidden")
    assert result.stdout == "hidden\n" or me <= 3


def test_unused_socket_is_not_shared(run: Runner) -> None:
    # An abstract unix socket of the host is not reachable from a new network namespace.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(b"\0pyreg-test-abstract")
        s.listen()
        result = run("sh", "-c", "grep -c pyreg-test-abstract /proc/net/unix || true")
        assert result.stdout.strip() == "0"


def test_descriptors_of_the_caller_do_not_reach_the_container(run: Runner, tmp_path: Path
                                                              ) -> None:
    # An open directory of the host (a shell's `42<dir`) would be a way out of the root.
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.dup2(fd, 42)
        result = subprocess.run(run.argv("sh", "-c", "ls /proc/$$/fd", options=["--rm"]),
                                pass_fds=(42,),
                                capture_output=True, text=True, timeout=60, check=False)
    finally:
        os.close(fd)
        os.close(42)
    assert result.returncode == 0, result.stderr
    assert "42" not in result.stdout.split() and {"0", "1", "2"} <= set(result.stdout.split())


def test_namespaces_are_the_containers_own(run: Runner) -> None:
    kinds = ("mnt", "pid", "uts", "ipc", "net")
    script = "; ".join(f"readlink /proc/self/ns/{k}" for k in kinds)
    host = [os.readlink(f"/proc/self/ns/{k}") for k in kinds]
    inside = run("sh", "-c", script, options=["--rm", "--network", "none"]).stdout.split()
    assert len(inside) == len(kinds) and all(a != b for a, b in zip(inside, host, strict=True))
    shared = run("sh", "-c", script, options=["--rm", "--network", "host"]).stdout.split()
    assert shared[-1] == host[-1] and shared[:-1] != host[:-1]


def test_an_image_without_tmp_gets_a_tmpfs_and_its_user_applies(run: Runner, tmp_path: Path
                                                                 ) -> None:
    from tests.runtime.conftest import image_layers
    from tests.runtime.images import layer, whiteout, write_layout

    layout = tmp_path / "layout"
    write_layout(layout, [*image_layers(), layer([whiteout("tmp")])],
                 {"Cmd": ["sh"], "Env": ["PATH=/bin"], "User": "app"})
    result = Runner(layout, run.root)("sh", "-c", "id -un; grep ' /tmp ' /proc/mounts | "
                                      "cut -d' ' -f3; stat -c %a /tmp; echo x > /tmp/f && echo w")
    assert result.stdout.split() == ["app", "tmpfs", "1777", "w"], result.stderr


def _host_address() -> str | None:
    """This machine's address on its default route (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))  # no packet is sent: a route is looked up
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_the_default_network_reaches_the_host(run: Runner, tmp_path: Path) -> None:
    require_tool("slirp4netns")
    address = _host_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    (tmp_path / "index.html").write_text("from the host's address")
    server = http.server.ThreadingHTTPServer(
        ("0.0.0.0", 0), lambda *a: _Quiet(*a, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        result = run("sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {address} {port}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.stdout.endswith("from the host's address"), result.stderr


def test_the_runtime_directory_is_private(run: Runner, runtime_root: Path) -> None:
    # Cached layers hold the images' setuid files and device nodes: no other user may reach them.
    runtime = runtime_root / "runtime"
    runtime.mkdir(exist_ok=True)
    os.chmod(runtime, 0o755)
    assert run("true").returncode == 0
    assert runtime.stat().st_mode & 0o777 == 0o700
