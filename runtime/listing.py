"""`ps`: the containers as docker lists them, with `--filter` and `--format`.

Filters (`--filter KEY=VALUE`, repeatable): values of one key are alternatives, different keys
must all match, as docker's. `status=` (created, running, exited) lists stopped containers without
`-a`, as docker does; `name=` matches part of the name, `id=` a prefix of the ID, `ancestor=` the
image by the name it was run as (`bb` and `bb:latest` alike) or by its digest (or a prefix).

`--format` takes the part of Go's templates that `docker ps --format` is used with: `{{.ID}}`,
`{{.Names}}`, `{{.Image}}`, `{{.Status}}`, `{{.Command}}`, `{{.Ports}}`, `{{.CreatedAt}}`,
`{{.RunningFor}}`, `{{.State}}`, literal text, `\\t`; a `table` prefix adds docker's header row and
aligns the columns.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from pyreg.runtime import ContainerError
from pyreg.runtime.state import ContainerState, StateStore, since

STATUSES = ("created", "running", "exited")
_FIELD = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def status_text(state: ContainerState) -> str:
    if state.status == "running":
        return f"Up {since(state.started or state.created)}"
    if state.status == "created":
        return "Created"
    code = "" if state.exit_code is None else f" ({state.exit_code})"
    why = " OOMKilled" if state.oom_killed else ""
    return f"Exited{code}{why} {since(state.finished or state.created)} ago"


def _command(state: ContainerState, trunc: bool) -> str:
    command = " ".join(state.command)
    return f'"{command[:20]}…"' if trunc and len(command) > 20 else f'"{command}"'


Field = Callable[[ContainerState, bool], str]
FIELDS: dict[str, tuple[str, Field]] = {
    "ID": ("CONTAINER ID", lambda s, trunc: s.id[:12] if trunc else s.id),
    "Image": ("IMAGE", lambda s, trunc: s.image),
    "Command": ("COMMAND", _command),
    "RunningFor": ("CREATED", lambda s, trunc: f"{since(s.created)} ago"),
    "CreatedAt": ("CREATED AT", lambda s, trunc: time.strftime(
        "%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(s.created))),
    "Status": ("STATUS", lambda s, trunc: status_text(s)),
    "State": ("STATE", lambda s, trunc: s.status),
    "Ports": ("PORTS", lambda s, trunc: ", ".join(s.ports)),
    "Names": ("NAMES", lambda s, trunc: s.name),
}
DEFAULT_FORMAT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def parse_filters(items: Sequence[str]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in ("status", "name", "id", "ancestor"):
            raise ContainerError(f"invalid filter '{item}'")
        if key == "status" and value not in STATUSES:
            raise ContainerError(f"invalid filter 'status={value}'")
        filters.setdefault(key, []).append(value)
    return filters


def _tagged(name: str) -> str:
    """`bb` is `bb:latest`, as docker reads a name without a tag."""
    return name if "@" in name or ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _ancestor(state: ContainerState, value: str) -> bool:
    if _tagged(value) in (_tagged(state.image), state.image_ref):
        return True
    digest, prefix = state.image_ref.removeprefix("sha256:"), value.removeprefix("sha256:")
    return state.image_ref.startswith("sha256:") and len(prefix) >= 3 and digest.startswith(prefix)


def matches(state: ContainerState, filters: dict[str, list[str]]) -> bool:
    tests: dict[str, Callable[[str], bool]] = {
        "status": lambda v: state.status == v,
        "name": lambda v: v in state.name,
        "id": lambda v: state.id.startswith(v),
        "ancestor": lambda v: _ancestor(state, v),
    }
    return all(any(tests[key](v) for v in values) for key, values in filters.items())


def _template(text: str) -> tuple[bool, list[str | tuple[str, Field]]]:
    """(table, parts): literal text and fields, in order."""
    table = text.startswith("table")
    if table:
        text = text[len("table"):].lstrip(" ")
    text = text.replace("\\t", "\t").replace("\\n", "\n")
    parts: list[str | tuple[str, Field]] = []
    end = 0
    for m in _FIELD.finditer(text):
        parts.append(text[end:m.start()])
        name = m.group(1).removeprefix(".")
        if not m.group(1).startswith(".") or name not in FIELDS:
            raise ContainerError(f"template: unsupported field {m.group(1)!r} (known: "
                                 f"{', '.join('.' + f for f in FIELDS)})")
        parts.append((name, FIELDS[name][1]))
        end = m.end()
    parts.append(text[end:])
    return table, [p for p in parts if p != ""]


def _render(parts: Sequence[str | tuple[str, Field]], cell: Callable[[str, Field], str]) -> str:
    return "".join(p if isinstance(p, str) else cell(*p) for p in parts)


def ps(store: StateStore, all_: bool = False, quiet: bool = False, out: TextIO = sys.stdout,
       filters: Sequence[str] = (), fmt: str | None = None, trunc: bool = True) -> None:
    wanted = parse_filters(filters)
    all_ = all_ or "status" in wanted
    table, parts = _template(DEFAULT_FORMAT if fmt in (None, "", "table") else fmt)
    states = [s for s in store.all() if (all_ or s.status == "running") and matches(s, wanted)]
    if quiet:
        for state in states:
            print(state.id[:12] if trunc else state.id, file=out)
        return

    def render(state: ContainerState) -> str:
        return _render(parts, lambda name, get: get(state, trunc))

    lines = [render(s) for s in states]
    if not table:
        for line in lines:
            print(line, file=out)
        return
    # docker's tabwriter: cells split at tabs, each column as wide as its widest cell plus 3.
    rows = [_render(parts, lambda name, get: FIELDS[name][0]).split("\t")]
    rows += [line.split("\t") for line in lines]
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            if i == len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(cell))
    for row in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])] + row[-1:]
        print("   ".join(cells).rstrip(), file=out)
