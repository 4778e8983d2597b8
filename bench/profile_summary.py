#!/usr/bin/env python3
"""Summarise py-spy raw (collapsed) stacks, as written by `bench.py --profile DIR`.

    python bench/profile_summary.py DIR/upload-single-put-rep1.txt [--top 15] [--match TEXT]

Per thread group (the event loop's MainThread, the executor threads): share of samples; the
leaf frames ("self": where the thread was when sampled); and inclusive frames ("total": on the
stack at all). py-spy samples only threads that are running (not idle), so the shares are of
busy time. A leaf of `_WorkItem.run (concurrent/futures/thread.py:58)` is a C function called
directly by the executor (hashlib's `update`, `os.pread`): the thread was in native code.
With `py-spy record --native`, idle waits (futex, epoll) are sampled too: read those shares as
wall time, not CPU.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_THREAD = re.compile(r"thread \(\d+\): (.*)")
# frames of the server's start-up, on every stack: left out of the inclusive list
_OUTER = ("runpy", "cli.py", "uvicorn/main.py", "server.py:86", "_compat.py", "runners.py")


def group_of(thread: str) -> str:
    if thread == "MainThread":
        return "event loop (MainThread)"
    if thread.startswith(("uvloop", "ThreadPoolExecutor", "asyncio")):
        return "executor threads"
    return thread


def load(path: Path) -> dict[str, list[tuple[list[str], int]]]:
    groups: dict[str, list[tuple[list[str], int]]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        thread = "?"
        if frames and (m := _THREAD.fullmatch(frames[0])):
            thread, frames = m.group(1), frames[1:]
        groups.setdefault(group_of(thread), []).append((frames, int(count)))
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--match", help="only count stacks containing this text")
    parser.add_argument(
        "--native",
        action="store_true",
        help="for `py-spy record --native` output: show each native leaf with its Python caller",
    )
    args = parser.parse_args(argv)
    for path in args.files:
        groups = load(path)
        total = sum(c for stacks in groups.values() for _, c in stacks)
        print(f"## {path.name}: {total} samples")
        for group, stacks in sorted(groups.items(), key=lambda kv: -sum(c for _, c in kv[1])):
            if args.match:
                stacks = [(f, c) for f, c in stacks if any(args.match in x for x in f)]
            n = sum(c for _, c in stacks)
            if not n:
                continue
            print(f"\n### {group}: {n} samples ({100 * n / total:.0f}% of all)")
            leaf: Counter[str] = Counter()
            incl: Counter[str] = Counter()
            for frames, c in stacks:
                if frames:
                    leaf[frames[-1]] += c
                    if args.native:
                        # native leaf, attributed to the innermost Python frame above it
                        py = [f for f in frames if ".py:" in f]
                        leaf[frames[-1]] -= c
                        leaf[f"{py[-1] if py else '-'}  ->  {frames[-1]}"] += c
                for f in set(frames):
                    if not args.native or ".py:" in f:
                        incl[f] += c
            print("\nself:")
            for f, c in [(f, c) for f, c in leaf.most_common() if c > 0][: args.top]:
                print(f"  {100 * c / n:5.1f}%  {f}")
            print("\ntotal (inclusive), below the event loop's run_forever:")
            shown = 0
            for f, c in incl.most_common():
                if any(s in f for s in (*_OUTER, "threading.py")):
                    continue
                print(f"  {100 * c / n:5.1f}%  {f}")
                shown += 1
                if shown >= args.top:
                    break
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
