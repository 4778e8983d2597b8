"""`pyreg images [REPOSITORY[:TAG]] [-q] [--digests]` and `pyreg tag SOURCE TARGET`."""

from __future__ import annotations

import argparse
import datetime
import os
from typing import NamedTuple

from pyreg.client.environment import Context
from pyreg.client.errors import ClientError
from pyreg.client.store import ImageStore, StoredImage
from pyreg.oci.digest import Digest
from pyreg.oci.imageref import ImageReference
from pyreg.oci.manifest import Descriptor


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("images", help="List images", description="List the images in the local store.")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.set_defaults(func=run)
    t = sub.add_parser("tag", help="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
                       description="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.")
    t.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    t.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    t.set_defaults(func=run_tag)


class ImageRow(NamedTuple):
    repository: str
    tag: str
    digest: Digest
    image_id: Digest
    created: datetime.datetime | None
    size: int


def human_size(size: float) -> str:
    """docker's units: decimal, three significant digits (`4.26MB`)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.3g}{unit}"
        size /= 1000
    raise AssertionError("unreachable")


def human_age(when: datetime.datetime | None, now: datetime.datetime | None = None) -> str:
    if when is None:
        return "N/A"
    seconds = ((now or datetime.datetime.now(datetime.UTC)) - when).total_seconds()
    for limit, unit, div in ((60, "second", 1), (3600, "minute", 60), (86400 * 2, "hour", 3600),
                             (86400 * 14, "day", 86400), (86400 * 60, "week", 604800),
                             (86400 * 365 * 2, "month", 2592000)):
        if seconds < limit:
            n = max(1, int(seconds // div))
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return f"{int(seconds // (86400 * 365))} years ago"


def parse_time(value: object) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def unpacked_size(store: ImageStore, layer: Descriptor) -> int:
    """A layer's size as a tar, without decompressing it: a gzip member ends with that size
    (modulo 4 GiB; Go, pigz and Python write one member per layer), a zstd frame usually
    starts with it. Anything else, or a layer not in the store, counts as its compressed size."""
    path = store.blob_path(layer.digest)
    try:
        with path.open("rb") as f:
            head = f.read(18)
            if head[:2] == b"\x1f\x8b" and layer.size >= 18:
                f.seek(-4, os.SEEK_END)
                size = int.from_bytes(f.read(4), "little")
                while size < layer.size // 2:  # gzip never doubles a size: it wrapped past 4 GiB
                    size += 1 << 32
                return size
            if head[:4] == b"\x28\xb5\x2f\xfd":
                return _zstd_content_size(head) or layer.size
    except OSError:
        pass
    return layer.size


def _zstd_content_size(head: bytes) -> int | None:
    """Frame_Content_Size from a zstd frame header (RFC 8878 3.1.1.1), when the frame has one."""
    descriptor = head[4]
    size_flag, single_segment = descriptor >> 6, (descriptor >> 5) & 1
    field = {0: 1 if single_segment else 0, 1: 2, 2: 4, 3: 8}[size_flag]
    if field == 0:
        return None
    start = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
    value = int.from_bytes(head[start:start + field], "little")
    return value + 256 if field == 2 else value


def image_size(store: ImageStore, image: StoredImage) -> int:
    """docker's SIZE: the layers as unpacked (config and manifest do not count)."""
    manifest = store.manifest(image.descriptor)
    return sum(unpacked_size(store, layer) for layer in manifest.layers)


def list_images(store: ImageStore, repository: ImageReference | None = None) -> list[ImageRow]:
    """The store's images, newest first; `repository` (with or without a tag) filters them."""
    rows = []
    for image in store.images():
        name = image.name
        if repository is not None and (name is None or name.repository != repository.repository
                                       or (repository.tag and name.tag != repository.tag)):
            continue
        manifest = store.manifest(image.descriptor)
        created = parse_time(store.config(manifest).get("created"))
        rows.append(ImageRow(name.familiar_repository if name else "<none>", (name.tag if name else None) or "<none>",
                             image.repo_digest, store.image_id(image), created, image_size(store, image)))
    return sorted(rows, key=lambda r: (r.created or datetime.datetime.min.replace(tzinfo=datetime.UTC)),
                  reverse=True)


def run(ctx: Context, args: argparse.Namespace) -> int:
    wanted = ctx.reference(args.repository, default_tag=None) if args.repository else None
    rows = list_images(ctx.store(), wanted)

    def ident(d: Digest) -> str:
        return str(d) if args.no_trunc else d.encoded[:12]
    if args.quiet:
        seen: list[str] = []
        for row in rows:
            if ident(row.image_id) not in seen:
                seen.append(ident(row.image_id))
        if seen:
            ctx.out("\n".join(seen))
        return 0
    header = ["REPOSITORY", "TAG", *(["DIGEST"] if args.digests else []), "IMAGE ID", "CREATED", "SIZE"]
    table = [header] + [[r.repository, r.tag, *([str(r.digest)] if args.digests else []), ident(r.image_id),
                         human_age(r.created), human_size(r.size)] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        ctx.out("   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    return 0


def run_tag(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store()
    source = store.resolve(args.source)
    target = ctx.reference(args.target)
    if target.digest is not None:
        raise ClientError(f"refusing to create a tag with a digest reference: {args.target}")
    store.add(target, source.descriptor, source.repo_digest)
    return 0
