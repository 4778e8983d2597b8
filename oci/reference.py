"""Repository names and tags, by the grammar of the OCI distribution spec."""

from __future__ import annotations

import re

from pyreg.oci import OCIError


class ReferenceError(OCIError):
    """A repository name, tag or reference that does not parse."""


# distribution-spec: <name> = [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
NAME_MAX = 255


def is_valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and NAME_RE.fullmatch(name) is not None


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


def check_name(name: str) -> str:
    if len(name) > NAME_MAX:
        raise ReferenceError(f"repository name longer than {NAME_MAX} characters")
    if NAME_RE.fullmatch(name) is None:
        raise ReferenceError(f"invalid repository name {name!r}")
    return name


def check_tag(tag: str) -> str:
    if TAG_RE.fullmatch(tag) is None:
        raise ReferenceError(f"invalid tag {tag!r}")
    return tag
