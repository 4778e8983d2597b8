"""Platforms (`os/architecture[/variant]`) and choosing an index entry for one, as containerd does.

Names are normalised the way containerd's `platforms` package does (`x86_64` is `amd64`,
`aarch64` is `arm64`, whose default variant is `v8`; `arm` defaults to `v7`), so that an index
that omits a variant still matches the machine that implies it.
"""

from __future__ import annotations

import platform as _platform
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from pyreg.oci.reference import ReferenceError

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "armel": "arm", "i386": "386", "i686": "386"}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


class PlatformError(ReferenceError):
    """A platform string that does not parse."""


class Platform(NamedTuple):
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise PlatformError(f"invalid platform {text!r}: expected os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None).normalized()

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Platform:
        variant = doc.get("variant")
        return cls(str(doc.get("os", "")), str(doc.get("architecture", "")),
                   str(variant) if variant else None).normalized()

    def normalized(self) -> Platform:
        arch = _ARCH_ALIASES.get(self.architecture, self.architecture)
        variant = self.variant or _DEFAULT_VARIANT.get(arch)
        if arch == "arm64" and variant == "8":
            variant = "v8"
        return Platform(self.os, arch, variant)

    def matches(self, other: Platform) -> bool:
        a, b = self.normalized(), other.normalized()
        return (a.os, a.architecture, a.variant) == (b.os, b.architecture, b.variant)

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant and self.variant != _DEFAULT_VARIANT.get(self.architecture):
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    """This machine's platform, which pulls resolve indexes to by default."""
    return Platform(_platform.system().lower(), _platform.machine().lower()).normalized()


def choose(entries: Iterable[Mapping[str, Any] | None], wanted: Platform) -> int | None:
    """The position of the first entry whose platform matches `wanted`, None when none does.

    Entries without a platform (attestations, artifacts) never match.
    """
    for i, entry in enumerate(entries):
        if entry and Platform.from_json(entry).matches(wanted):
            return i
    return None
