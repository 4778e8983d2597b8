"""The embedded container runtime: unpack images and run them in Linux namespaces.

Started as a fresh process (`python -m pyreg.runtime`), synchronous, never forked from an asyncio
process. Errors:

    ContainerError
     ├── ImageError       an OCI layout, manifest or config that cannot be used
     ├── LayerError       a layer that cannot be applied safely (names the layer and the entry)
     ├── PathError        a path that would leave the container's root
     ├── UserError        a --user / image User that does not resolve
     └── SetupError       a step of the container's set-up failed (namespaces, mounts, exec)
"""

from __future__ import annotations


class ContainerError(Exception):
    """Base of every error raised by pyreg.runtime."""


class ImageError(ContainerError):
    """An OCI image layout, manifest or image config that cannot be used."""


class LayerError(ContainerError):
    """A layer that cannot be applied: unsafe entry, bad digest, unsupported compression."""


class PathError(ContainerError):
    """A path that would resolve outside the root it is scoped to."""


class UserError(ContainerError):
    """A user or group that does not resolve in the image's /etc/passwd and /etc/group."""


class SetupError(ContainerError):
    """A step of setting up the container failed."""
