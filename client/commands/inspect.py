"""`pyreg inspect NAME…` (JSON: an image in docker's shape, else a container as `container
inspect` shows it, as docker's `inspect` takes both), `pyreg history IMAGE`, and
`pyreg manifest inspect REF` (the registry's manifest, as JSON)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pyreg.client.commands.images import (
    human_age,
    human_size,
    image_size,
    parse_time,
    unpacked_size,
)
from pyreg.client.environment import Context
from pyreg.client.errors import ClientError, ImageNotFound, StoreError
from pyreg.client.store import ImageStore, StoredImage
from pyreg.oci import OCIError
from pyreg.oci.imageref import ImageReference, InvalidReference


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("inspect", help="Return low-level information on images and containers",
                       description="Return low-level information on images and containers, as JSON.")
    p.add_argument("images", nargs="+", metavar="NAME|ID")
    p.add_argument("--type", choices=("image", "container"), help="Only look for this type of object")
    p.set_defaults(func=run)
    h = sub.add_parser("history", help="Show the history of an image", description="Show the history of an image.")
    h.add_argument("image", metavar="IMAGE")
    h.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    h.add_argument("-q", "--quiet", action="store_true", help="Only show layer digests")
    h.set_defaults(func=run_history)


def register_manifest(manifest: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = manifest.add_parser("inspect", help="Display an image manifest from a registry",
                            description="Display an image manifest or manifest list from a registry.")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.set_defaults(func=run_manifest)


def inspect_image(store: ImageStore, image: StoredImage) -> dict[str, Any]:
    manifest = store.manifest(image.descriptor)
    config = store.config(manifest)
    same = [i for i in store.images() if i.descriptor.digest == image.descriptor.digest and i.name]
    return {
        "Id": str(store.image_id(image)),
        "RepoTags": [i.name.familiar() for i in same if i.name and i.name.tag],
        "RepoDigests": sorted({f"{i.name.familiar_repository}@{i.repo_digest}" for i in same if i.name}),
        "Created": config.get("created", ""),
        "Author": config.get("author", ""),
        "Config": config.get("config", {}),
        "Architecture": config.get("architecture", ""),
        "Variant": config.get("variant", ""),
        "Os": config.get("os", ""),
        "Size": image_size(store, image),
        "RootFS": config.get("rootfs", {}),
        "Descriptor": image.descriptor.to_json(),
        "Layers": [layer.to_json() for layer in manifest.layers],
    }


def _find(ctx: Context, store: ImageStore, text: str, kind: str | None) -> dict[str, Any]:
    """The image's document, else the container's (as `container inspect` shows it)."""
    from pyreg.runtime import ContainerError
    from pyreg.runtime.state import StateStore

    missing: ClientError | OCIError = StoreError(f"No such container: {text}")
    if kind != "container":
        try:
            return inspect_image(store, store.resolve(text))
        except (ImageNotFound, InvalidReference) as e:
            missing = e
    if kind != "image":
        try:
            return StateStore(ctx.root).inspect(text)
        except ContainerError:
            pass
    raise missing


def run(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store()
    docs = [_find(ctx, store, text, args.type) for text in args.images]
    ctx.out(json.dumps(docs, indent=4))
    return 0


def history(store: ImageStore, image: StoredImage) -> list[tuple[str, str, str, int, str]]:
    """(layer digest or `<missing>`, created, created_by, size, comment), newest first like docker."""
    manifest = store.manifest(image.descriptor)
    config = store.config(manifest)
    layers = list(manifest.layers)
    rows = []
    entries = config.get("history") or [{} for _ in layers]
    for entry in entries:
        empty = bool(entry.get("empty_layer"))
        layer = None if empty or not layers else layers.pop(0)
        rows.append((str(layer.digest) if layer else "<missing>", str(entry.get("created", "")),
                     str(entry.get("created_by", "")), unpacked_size(store, layer) if layer else 0,
                     str(entry.get("comment", ""))))
    return rows[::-1]


def run_history(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store()
    rows = history(store, store.resolve(args.image))
    if args.quiet:
        for digest, *_ in rows:
            ctx.out(digest)
        return 0
    table = [["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]]
    for digest, created, by, size, comment in rows:
        short = digest if args.no_trunc or digest == "<missing>" else digest.split(":")[-1][:12]
        by = by if args.no_trunc or len(by) <= 45 else by[:44] + "…"
        table.append([short, human_age(parse_time(created)), by, human_size(size), comment])
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for row in table:
        ctx.out("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def fetch_manifest(ctx: Context, ref: ImageReference) -> bytes:
    session = ctx.session()
    try:
        conn = await session.registry(ref.domain)
        return (await conn.api.get_manifest(ref.path, ref.reference)).data
    finally:
        await session.aclose()


def run_manifest(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.run(fetch_manifest(ctx, ctx.reference(args.name)))
    # docker prints it indented by three spaces; the bytes' digest is the registry's, not this.
    ctx.out(json.dumps(json.loads(data), indent=3))
    return 0
