"""`pyreg rmi IMAGE…` and `pyreg image prune`: remove names, then the blobs nothing refers to."""

from __future__ import annotations

import argparse

from pyreg.client.environment import Context
from pyreg.client.errors import ClientError, ImageInUse
from pyreg.client.store import ImageStore
from pyreg.oci.digest import Digest


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rmi", help="Remove one or more images", description="Remove one or more images.")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="Remove every name of an image given by ID")
    p.set_defaults(func=run)


def remove_image(store: ImageStore, text: str, force: bool = False) -> tuple[list[str], list[Digest]]:
    """Untag `text` (by name), or remove the image (by ID: every name, which needs `force` when
    there are several); then collect. Returns (untagged names, deleted digests)."""
    image = store.resolve(text)
    by_id = store.named_by_id(text, image)
    untagged: list[str] = []
    if not by_id and image.name is not None:
        store.remove(image.name)
        untagged.append(image.name.familiar())
    else:
        image_id = store.image_id(image)
        names = [i for i in store.images() if store.image_id(i) == image_id]
        if len(names) > 1 and not force:
            raise ImageInUse(f"conflict: unable to delete {image_id.encoded[:12]} (must be forced) - "
                             "image is referenced in multiple repositories")
        for other in names:
            store.remove_digest(other.descriptor.digest)
            if other.name is not None:
                untagged.append(other.name.familiar())
    return untagged, store.collect()


def run(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store()
    failed = False
    for text in args.images:
        try:
            untagged, deleted = remove_image(store, text, args.force)
        except ClientError as e:
            print(f"Error response: {e}", file=ctx.env.stderr)
            failed = True
            continue
        for name in untagged:
            ctx.out(f"Untagged: {name}")
        for digest in deleted:
            ctx.out(f"Deleted: {digest}")
    return 1 if failed else 0


def register_prune(image: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = image.add_parser("prune", help="Remove unused images", description=(
        "Remove dangling images (pulled by digest, without a tag) and every blob no image refers to."))
    p.add_argument("-a", "--all", action="store_true", help="Remove all images, not only dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.set_defaults(func=run_prune)


def prune(store: ImageStore, everything: bool = False) -> tuple[list[Digest], int]:
    """(deleted digests, bytes reclaimed)."""
    for image in store.images():
        if everything or image.name is None or image.name.tag is None:
            store.remove_entry(image)
    sizes = {}
    blobs = store.root / "blobs"
    for algorithm in blobs.iterdir():
        for path in algorithm.iterdir():
            sizes[f"{algorithm.name}:{path.name}"] = path.stat().st_size
    deleted = store.collect()
    return deleted, sum(sizes.get(str(d), 0) for d in deleted)


def run_prune(ctx: Context, args: argparse.Namespace) -> int:
    from pyreg.client.commands.images import human_size

    if not args.force:
        # docker asks, and reads the answer even when stdin is not a terminal (EOF means no).
        what = "all images" if args.all else "all dangling images"
        ctx.env.stdout.write(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ")
        ctx.env.stdout.flush()
        if ctx.env.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    deleted, reclaimed = prune(ctx.store(), args.all)
    if deleted:
        ctx.out("Deleted Images:")
        for digest in deleted:
            ctx.out(f"deleted: {digest}")
        ctx.out("")
    ctx.out(f"Total reclaimed space: {human_size(reclaimed)}")
    return 0
