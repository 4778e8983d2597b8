"""Named volumes: directories the runtime keeps across containers.

    <root>/runtime/volumes/<name>/_data    the volume's content (docker's layout)

`-v NAME:/path` creates the volume on first use; like docker, a new (empty) volume is first filled
with what the image holds at /path, so a volume mounted over /var/lib/app starts with its files.
"""

from __future__ import annotations

import builtins
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

from pyreg.runtime import ContainerError

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


class Volume(NamedTuple):
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

    @staticmethod
    def _users(containers_root: Path) -> dict[str, str]:
        """The volumes' `_data` directories that containers (running or not) mount: by each, one
        of the containers."""
        out: dict[str, str] = {}
        for config in containers_root.glob("*/config.json"):
            try:
                doc = json.loads(config.read_text())
            except (OSError, ValueError):
                continue
            for v in doc.get("volumes", []):
                out.setdefault(str(v.get("source")), config.parent.name)
        return out

    def remove(self, name: str, containers_root: Path) -> None:
        volume = self._volume(name)
        user = self._users(containers_root).get(str(volume.path / "_data"))
        if user is not None:
            raise ContainerError(f"volume {name} is in use by container {user[:12]}")
        shutil.rmtree(volume.path)

    def prune(self, containers_root: Path, everything: bool = False
              ) -> builtins.list[tuple[str, int]]:
        """Remove the volumes no container uses: those made without a name (docker's anonymous
        ones: 64 hex digits), or all of them with `everything` (docker's `volume prune -a`);
        (name, bytes freed) of each."""
        used = self._users(containers_root)
        removed = []
        for volume in self.list():
            anonymous = re.fullmatch(r"[0-9a-f]{64}", volume.name) is not None
            if str(volume.path / "_data") in used or not (everything or anonymous):
                continue
            size = sum(p.lstat().st_size for p in volume.path.rglob("*") if not p.is_dir())
            shutil.rmtree(volume.path)
            removed.append((volume.name, size))
        return removed
