"""Repository names and tags, by the grammar of the OCI distribution spec."""

from __future__ import annotations

import re

from pyreg.oci import OCIError


class ReferenceError(OCIError):
    """A repository name, tag or reference that does not parse."""


# Patterns, compiled (and cached by `re`) on first use: the client's start-up time counts.
# distribution-spec: <name> = [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
NAME_MAX = 255


def is_valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and re.fullmatch(_NAME, name) is not None


def is_valid_tag(tag: str) -> bool:
    return re.fullmatch(_TAG, tag) is not None


def check_name(name: str) -> str:
    if len(name) > NAME_MAX:
        raise ReferenceError(f"repository name longer than {NAME_MAX} characters")
    if re.fullmatch(_NAME, name) is None:
        raise ReferenceError(f"invalid repository name {name!r}")
    return name


def check_tag(tag: str) -> str:
    if re.fullmatch(_TAG, tag) is None:
        raise ReferenceError(f"invalid tag {tag!r}")
    return tag
