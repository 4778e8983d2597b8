"""Entry point of `python -m pyreg.runtime` (see cli.py)."""

from __future__ import annotations

import sys

from pyreg.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
