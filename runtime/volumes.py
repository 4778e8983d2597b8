"""Named volumes: directories the runtime keeps across containers.

    <root>/runtime/volumes/<name>/_data    the volume's content (docker's layout)

`-v NAME:/path` creates the volume on first use; like docker, a new (empty) volume is first filled
with what the image holds at /path, so a volume mounted over /var/lib/app starts with its files.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyreg.runtime import ContainerError

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    path: Path
    created: float

    def to_json(self) -> dict[str, Any]:
        return {"Name": self.name, "Driver": "local", "Mountpoint": str(self.path / "_data"),
                "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))}


def is_volume_name(source: str) -> bool:
    return not source.startswith("/") and bool(_NAME.fullmatch(source))


class VolumeStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "runtime" / "volumes"

    def _volume(self, name: str) -> Volume:
        if not _NAME.fullmatch(name):
            raise ContainerError(f"invalid volume name {name!r}")
        path = self.root / name
        try:
            created = path.stat().st_mtime
        except FileNotFoundError:
            raise ContainerError(f"no such volume: {name}") from None
        return Volume(name, path, created)

    def create(self, name: str) -> tuple[Volume, bool]:
        """The volume, created if missing; the flag says whether it is new."""
        if not _NAME.fullmatch(name):
            raise ContainerError(f"invalid volume name {name!r}")
        path = self.root / name
        try:
            (path / "_data").mkdir(parents=True)
        except FileExistsError:
            return self._volume(name), False
        return self._volume(name), True

    def inspect(self, name: str) -> Volume:
        return self._volume(name)

    def list(self) -> list[Volume]:
        if not self.root.is_dir():
            return []
        return [self._volume(p.name) for p in sorted(self.root.iterdir()) if p.is_dir()]

    def remove(self, name: str, containers_root: Path) -> None:
        volume = self._volume(name)
        for config in containers_root.glob("*/config.json"):
            try:
                doc = json.loads(config.read_text())
            except (OSError, ValueError):
                continue
            if any(v.get("source") == str(volume.path / "_data") for v in doc.get("volumes", [])):
                raise ContainerError(f"volume {name} is in use by container "
                                     f"{config.parent.name[:12]}")
        shutil.rmtree(volume.path)
