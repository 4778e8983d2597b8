"""An image as the runtime needs it, read from an OCI image layout directory.

    <layout>/oci-layout, index.json, blobs/<alg>/<hex>

A reference is a tag (matched against the `org.opencontainers.image.ref.name` annotation, alone or
after the last `:` of a full name), or a manifest digest. An index is narrowed to this machine's
platform. Manifests and configs are small: they are verified against their digests when read; layers
are verified while they are unpacked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from pyreg.oci import OCIError, mediatypes
from pyreg.oci.digest import Digest
from pyreg.oci.manifest import Descriptor, Manifest, parse_manifest
from pyreg.runtime import ImageError

REF_NAME = "org.opencontainers.image.ref.name"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> tuple[str, str]:
    machine = os.uname().machine
    return "linux", _ARCH.get(machine, machine)


class ImageConfig(NamedTuple):
    """The parts of an image config that decide how a container runs."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    diff_ids: tuple[Digest, ...] = ()
    raw: Mapping[str, Any] = MappingProxyType({})  # the whole config document

    @classmethod
    def from_json(cls, doc: Any) -> ImageConfig:
        if not isinstance(doc, dict):
            raise ImageError("image config is not a JSON object")
        conf = doc.get("config") or {}
        rootfs = doc.get("rootfs") or {}
        if not isinstance(conf, dict) or not isinstance(rootfs, dict):
            raise ImageError("image config: config and rootfs must be objects")
        try:
            diff_ids = tuple(Digest.parse(d) for d in _strings(rootfs, "diff_ids"))
        except OCIError as e:
            raise ImageError(f"image config: rootfs.diff_ids: {e}") from None
        ports = conf.get("ExposedPorts") or {}
        return cls(
            entrypoint=_strings(conf, "Entrypoint"),
            cmd=_strings(conf, "Cmd"),
            env=_strings(conf, "Env"),
            working_dir=str(conf.get("WorkingDir") or ""),
            user=str(conf.get("User") or ""),
            exposed_ports=tuple(sorted(ports)) if isinstance(ports, dict) else (),
            diff_ids=diff_ids,
            raw=doc,
        )


def _strings(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"image config: {key} must be a list of strings")
    return tuple(value)


class Image(NamedTuple):
    """A runnable image: its manifest digest, config and layer blobs (bottom first)."""

    layout: Path
    digest: Digest
    config: ImageConfig
    layers: tuple[Descriptor, ...]

    def blob_path(self, digest: Digest) -> Path:
        return blob_path(self.layout, digest)

    def layer_blobs(self) -> list[tuple[Path, Digest, Digest]]:
        """(blob path, blob digest, diff_id) of each layer, bottom first."""
        return [(self.blob_path(d.digest), d.digest, diff_id)
                for d, diff_id in zip(self.layers, self.config.diff_ids, strict=True)]


def blob_path(layout: Path, digest: Digest) -> Path:
    return layout / "blobs" / digest.algorithm / digest.encoded


def _read_blob(layout: Path, desc: Descriptor) -> bytes:
    try:
        data = blob_path(layout, desc.digest).read_bytes()
    except FileNotFoundError:
        raise ImageError(f"blob {desc.digest} missing from the image layout {layout}") from None
    if Digest.from_bytes(data, desc.digest.algorithm) != desc.digest:
        raise ImageError(f"blob {desc.digest} in {layout} does not match its digest")
    return data


def _matches(desc: Descriptor, ref: str) -> bool:
    name = (desc.annotations or {}).get(REF_NAME)
    if name is None:
        return False
    return name == ref or (name.rsplit(":", 1)[-1] == ref and ":" not in ref.rsplit("/", 1)[-1])


def parse_platform(value: str | None) -> tuple[str, str, str | None]:
    """`os/arch[/variant]`, this machine's by default."""
    if not value:
        return (*host_platform(), None)
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ImageError(f"invalid platform {value!r}: expected os/arch[/variant]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def load_image(layout: Path, ref: str | None, platform: str | None = None,
               name: str | None = None) -> Image:
    """The image `ref` names in the OCI layout at `layout` (the only one when `ref` is None),
    for `platform` (os/arch[/variant], this machine's by default) when it is an index; a single
    image given `platform` must be of that platform. `name`: the image as the user named it, for
    messages."""
    wanted = parse_platform(platform)
    try:
        index = json.loads((layout / "index.json").read_text())
    except FileNotFoundError:
        raise ImageError(f"{layout} is not an OCI image layout (no index.json)") from None
    except ValueError as e:
        raise ImageError(f"{layout}/index.json: {e}") from None
    try:
        top = parse_manifest(json.dumps(index).encode(), mediatypes.OCI_INDEX)
    except OCIError as e:
        raise ImageError(f"{layout}/index.json: {e}") from None
    if ref is None:
        if len(top.manifests) != 1:
            raise ImageError(f"{layout} holds {len(top.manifests)} images: name one")
        desc = top.manifests[0]
    elif ref.startswith(("sha256:", "sha512:")):
        desc = next((d for d in top.manifests if str(d.digest) == ref), None) or _fail(ref, layout)
    else:
        desc = next((d for d in top.manifests if _matches(d, ref)), None) or _fail(ref, layout)
    manifest = _load_manifest(layout, desc)
    picked = False
    while manifest.is_index:
        desc = _pick_platform(manifest, ref or str(desc.digest), wanted)
        manifest = _load_manifest(layout, desc)
        picked = True
    assert manifest.config is not None
    config = ImageConfig.from_json(_json(_read_blob(layout, manifest.config), "config"))
    if platform and not picked:
        # A single-platform image asked for with --platform: it must be that platform.
        _check_platform(config.raw, name or ref or str(desc.digest), wanted)
    if len(config.diff_ids) != len(manifest.layers):
        raise ImageError(f"image {desc.digest}: {len(manifest.layers)} layers but "
                         f"{len(config.diff_ids)} diff_ids")
    return Image(layout, desc.digest, config, manifest.layers)


def _check_platform(doc: Mapping[str, Any], ref: str, wanted: tuple[str, str, str | None]
                    ) -> None:
    """docker's refusal of an image of another platform than --platform's (fields the config
    does not give are not held against it)."""
    actual = (doc.get("os"), doc.get("architecture"), doc.get("variant"))
    if any(want is not None and got is not None and want != got
           for want, got in zip(wanted, actual, strict=True)):
        raise ImageError(
            f"image with reference {ref} was found but does not match the specified platform: "
            f"wanted {'/'.join(p for p in wanted if p)}, "
            f"actual: {'/'.join(str(p) for p in actual if p)}")


def _fail(ref: str, layout: Path) -> Descriptor:
    raise ImageError(f"image {ref!r} not found in {layout}")


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise ImageError(f"{what} is not valid JSON: {e}") from None


def _load_manifest(layout: Path, desc: Descriptor) -> Manifest:
    try:
        return parse_manifest(_read_blob(layout, desc), desc.media_type)
    except OCIError as e:
        raise ImageError(f"manifest {desc.digest}: {e}") from None


def _pick_platform(index: Manifest, ref: str, wanted: tuple[str, str, str | None]
                   ) -> Descriptor:
    os_name, arch, variant = wanted
    for desc in index.manifests:
        plat = desc.platform or {}
        if plat.get("os") == os_name and plat.get("architecture") == arch and (
                variant is None or plat.get("variant") == variant):
            return desc
    name = "/".join(p for p in wanted if p)
    raise ImageError(f"image {ref!r} has no variant for {name}")
