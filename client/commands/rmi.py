"""`pyreg rmi IMAGE…` and `pyreg image prune`: remove names, then the blobs nothing refers to.

An image a container uses (running or stopped) stays, as with docker: `rmi` of its last name
refuses (`-f` untags it, and the image stays without a name until the container is gone), and
`image prune` / `system prune` pass it by. The containers are read from the runtime's state files
(`<root>/runtime/containers/*/state.json`); reading them starts no runtime process.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pyreg.client.environment import Context
from pyreg.client.errors import ClientError, ImageInUse
from pyreg.client.store import ImageStore, StoredImage
from pyreg.oci import OCIError
from pyreg.oci.digest import Digest

if TYPE_CHECKING:
    from pyreg.runtime.state import ContainerState


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rmi", help="Remove one or more images", description="Remove one or more images.")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="Remove every name of an image given by ID")
    p.set_defaults(func=run)


def containers_by_image(store: ImageStore) -> dict[Digest, list[ContainerState]]:
    """The containers (running or stopped) of each stored manifest, by the manifest's digest."""
    from pyreg.runtime.state import StateStore

    out: dict[Digest, list[ContainerState]] = {}
    for state in StateStore(store.root).all():
        ref = state.image_ref or state.image
        try:
            digest = Digest.parse(ref) if ref.startswith("sha256:") else store.resolve(ref).descriptor.digest
        except (ClientError, OCIError):
            continue  # an image of another layout (`python -m pyreg.runtime --layout`), or gone
        out.setdefault(digest, []).append(state)
    return out


def _short(digest: Digest | str) -> str:
    return str(digest).removeprefix("sha256:")[:12]


def remove_image(store: ImageStore, text: str, force: bool = False,
                 used: dict[Digest, list[ContainerState]] | None = None) -> tuple[list[str], list[Digest]]:
    """Untag `text` (by name), or remove the image (by ID: every name, which needs `force` when
    there are several); then collect. An image a container uses keeps its blobs (without a name,
    when `force` took the last). Returns (untagged names, deleted digests)."""
    image = store.resolve(text)
    users = (containers_by_image(store) if used is None else used).get(image.descriptor.digest, [])
    by_id = store.named_by_id(text, image)
    image_id = store.image_id(image)
    untagged: list[str] = []
    if not by_id and image.name is not None:
        last = not any(i.name is not None and i != image and i.descriptor.digest == image.descriptor.digest
                       for i in store.images())
        if users and last and not force:
            raise ImageInUse(f'conflict: unable to remove repository reference "{text}" (must force) - '
                             f"container {_short(users[0].id)} is using its referenced image {_short(image_id)}")
        store.remove(image.name)
        untagged.append(image.name.familiar())
        victims = [image] if users else []
    else:
        victims = [i for i in store.images() if store.image_id(i) == image_id]
        if len(victims) > 1 and not force:
            raise ImageInUse(f"conflict: unable to delete {_short(image_id)} (must be forced) - "
                             "image is referenced in multiple repositories")
        running = [s for s in users if s.status == "running"]
        if running or (users and not force):
            how, which = ("cannot be forced", "running") if running else ("must be forced", "stopped")
            raise ImageInUse(f"conflict: unable to delete {_short(image_id)} ({how}) - image is being "
                             f"used by {which} container {_short((running or users)[0].id)}")
        for other in victims:
            store.remove_digest(other.descriptor.digest)
            if other.name is not None:
                untagged.append(other.name.familiar())
    for other in victims if users else []:
        store.keep(other.descriptor)  # docker's dangling image: the container still needs it
    return untagged, store.collect()


def run(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store()
    used = containers_by_image(store)
    failed = False
    for text in args.images:
        try:
            untagged, deleted = remove_image(store, text, args.force, used)
        except ClientError as e:
            print(f"Error response from daemon: {e}", file=ctx.env.stderr)
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
    """Remove dangling images (`everything`: every image) that no container uses, and collect;
    (deleted digests, bytes reclaimed)."""
    used = containers_by_image(store)
    for image in store.images():
        if (everything or _dangling(image)) and image.descriptor.digest not in used:
            store.remove_entry(image)
    sizes = {}
    blobs = store.root / "blobs"
    for algorithm in blobs.iterdir():
        for path in algorithm.iterdir():
            sizes[f"{algorithm.name}:{path.name}"] = path.stat().st_size
    deleted = store.collect()
    return deleted, sum(sizes.get(str(d), 0) for d in deleted)


def _dangling(image: StoredImage) -> bool:
    return image.name is None or image.name.tag is None


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
