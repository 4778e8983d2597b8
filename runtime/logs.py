"""A detached container's output, kept as docker's json-file log driver keeps it.

    <container dir>/container.log   one JSON object a line:
                                    {"log": "hello\\n", "stream": "stdout", "time": "2026-...Z"}

The container writes into two pipes; a log writer process, forked by the container's monitor
before the container starts, appends one record per line read (a line without its newline is
written when the pipe closes), so `logs -t` shows when each line was written and `logs` keeps
stdout and stderr apart. The writer holds an exclusive flock on the log while it runs: `logs -f`
takes it shared once the container has exited, and so sees every last line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import selectors
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOG = "container.log"
_STREAMS = ("stdout", "stderr")
_MAX_LINE = 16 * 1024  # docker's json-file splits longer lines too


def timestamp(ns: int) -> str:
    """RFC 3339 with nanoseconds in UTC, as docker's `logs -t` prints it."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def start_writer(path: Path) -> tuple[int, int]:
    """Fork the log writer; the write ends of its stdout and stderr pipes."""
    pipes = [os.pipe(), os.pipe()]
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    # Taken before the fork, inherited by the writer, released by our close below: no reader can
    # slip in between and see the log as complete.
    fcntl.flock(log, fcntl.LOCK_EX)
    if os.fork() == 0:  # pragma: no cover - the writer
        code = 1
        try:
            _only(log, pipes[0][0], pipes[1][0])
            _copy(log, {r: name for (r, _), name in zip(pipes, _STREAMS, strict=True)})
            code = 0
        finally:
            os._exit(code)
    os.close(log)
    for r, _ in pipes:
        os.close(r)
    return pipes[0][1], pipes[1][1]


def _only(*keep: int) -> None:  # pragma: no cover - the writer
    """Keep nothing else open: an inherited pipe (the caller's stdout, the monitor's report)
    would hold its reader waiting for an EOF until the container's end."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _copy(log: int, streams: dict[int, str]) -> None:  # pragma: no cover - the writer
    selector = selectors.DefaultSelector()
    partial: dict[int, bytes] = {}
    for fd in streams:
        selector.register(fd, selectors.EVENT_READ)
        partial[fd] = b""
    while streams:
        for key, _ in selector.select():
            fd = key.fd
            data = os.read(fd, 65536)
            lines = (partial[fd] + data).splitlines(keepends=True)
            partial[fd] = b""
            if data and lines and not lines[-1].endswith(b"\n") and len(lines[-1]) < _MAX_LINE:
                partial[fd] = lines.pop()
            _write(log, streams[fd], lines)
            if not data:
                selector.unregister(fd)
                os.close(fd)
                del streams[fd]


def _write(log: int, stream: str, lines: list[bytes]) -> None:  # pragma: no cover - the writer
    if not lines:
        return
    now = timestamp(time.time_ns())
    records = b"".join(json.dumps({"log": line.decode(errors="surrogateescape"), "stream": stream,
                                   "time": now}, ensure_ascii=True).encode() + b"\n"
                       for line in lines)
    view = memoryview(records)
    while view:
        view = view[os.write(log, view):]


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}
_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?)?"
                   r"(Z|[+-]\d\d:?\d\d)?")


def parse_time(text: str, now_ns: int | None = None) -> int:
    """docker's `--since`/`--until`: RFC 3339 (`2026-11-27T10:00:00Z`, fractions and offsets too;
    no offset is UTC, as docker reads it), a date, Unix seconds (`1700000000.5`), or a Go
    duration before now (`10m`, `1h30m`, `90s`). Nanoseconds since the epoch."""
    text = text.strip()
    now = time.time_ns() if now_ns is None else now_ns
    if text and _DURATION.sub("", text) == "":
        return now - int(sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text)))
    if re.fullmatch(r"\d+(\.\d{1,9})?", text):
        seconds, _, frac = text.partition(".")
        return int(seconds) * 1_000_000_000 + int(frac.ljust(9, "0") or 0)
    m = _TIME.fullmatch(text)
    if m is None:
        raise ValueError(f"invalid time {text!r}: give RFC 3339 (2026-11-27T10:00:00Z), Unix "
                         "seconds, or a duration such as 10m")
    import calendar  # here: its import (and datetime's) costs every container's start 2 ms

    year, month, day, hour, minute, second, frac, zone = m.groups()
    epoch = calendar.timegm((int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                             int(second or 0), 0, 0, 0))
    if zone and zone != "Z":
        offset = int(zone[1:3]) * 3600 + int(zone[-2:]) * 60
        epoch -= offset if zone[0] == "+" else -offset
    return epoch * 1_000_000_000 + int((frac or "").ljust(9, "0"))


def _record(line: bytes, timestamps: bool, since: int | None = None) -> tuple[str, bytes] | None:
    try:
        doc = json.loads(line)
        data = str(doc["log"]).encode(errors="surrogateescape")
        stream = "stderr" if doc.get("stream") == "stderr" else "stdout"
        if since is not None and parse_time(str(doc.get("time", ""))) < since:
            return None
    except (ValueError, KeyError, TypeError):
        return None
    if timestamps:
        data = f"{doc.get('time', '')} ".encode() + data
    return stream, data


def read(path: Path, follow: bool, tail: int | None, timestamps: bool,
         running: Callable[[], bool], since: int | None = None) -> Iterator[tuple[str, bytes]]:
    """(stream, bytes) of each record, from the last `tail` ones (of those written at `since`
    nanoseconds or later); with `follow`, until the container has exited (`running` says whether
    it still does) and its writer is done."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        lines = f.read().splitlines(keepends=True)
        rest = b""
        if lines and not lines[-1].endswith(b"\n"):
            rest = lines.pop()  # a record being written
        records = [r for line in lines if (r := _record(line, timestamps, since)) is not None]
        if tail is not None:
            records = records[-tail:] if tail > 0 else []
        yield from records
        finished = False
        while follow:
            chunk = f.read()
            if not chunk:
                if finished:
                    return
                if not running():
                    _wait_writer(f.fileno())
                    finished = True
                else:
                    time.sleep(0.1)
                continue
            *complete, rest = (rest + chunk).split(b"\n")
            for line in complete:
                if (record := _record(line, timestamps, since)) is not None:
                    yield record


def _wait_writer(fd: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(0.02)
            continue
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        return
