"""The `pyreg` command's exit codes (docker's, where docker has one)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # the command failed: one line on stderr says why
    USAGE = 125  # docker's code for a bad flag or argument
    INTERRUPTED = 130  # Ctrl-C, 128 + SIGINT like a shell reports it
