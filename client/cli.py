"""The `pyreg` command."""

from __future__ import annotations

import sys
from importlib.metadata import version


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["--version"], ["-v"]):
        print(f"pyreg version {version('pyreg')}")
        return 0
    print("usage: pyreg COMMAND (commands arrive with the client issue)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
