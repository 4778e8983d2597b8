"""The catalog: every repository in the store, found by walking `repositories/`."""

from __future__ import annotations

from pyreg.registry.services import paths
from pyreg.registry.storage import PathNotFound, StorageDriver

# A folder is a repository when it holds one of these (distribution looks for `_layers`; a
# repository holding only an index has `_manifests` alone).
_MARKERS = ("_layers", "_manifests")


async def catalog(driver: StorageDriver) -> list[str]:
    """All repository names, sorted lexically."""
    found: list[str] = []
    prefix = paths.REPOSITORIES + "/"

    async def visit(directory: str) -> None:
        try:
            entries = await driver.list(directory)
        except PathNotFound:
            return
        names = {e.rsplit("/", 1)[1] for e in entries}
        if any(m in names for m in _MARKERS):
            found.append(directory[len(prefix) :])
        for entry in sorted(entries):
            if not entry.rsplit("/", 1)[1].startswith("_"):
                try:
                    info = await driver.stat(entry)
                except PathNotFound:
                    continue  # deleted since it was listed
                if info.is_dir:
                    await visit(entry)

    await visit(paths.REPOSITORIES)
    found.sort()
    return found
