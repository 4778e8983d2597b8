"""`pyreg save IMAGE… -o FILE [--format docker|oci-archive|oci]` and `pyreg load -i FILE`."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyreg.client import archive
from pyreg.client.environment import Context
from pyreg.client.errors import ClientError
from pyreg.oci.imageref import ImageReference


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("save", help="Save one or more images to a tar archive",
                       description="Save images to an archive that docker, podman and skopeo load.")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", required=True, help="Write to a file (or a directory with --format oci)")
    p.add_argument("--format", choices=archive.FORMATS, default="docker",
                   help="docker (default: docker's archive, an OCI layout inside), oci-archive or oci")
    p.set_defaults(func=run_save)
    q = sub.add_parser("load", help="Load an image from a tar archive or an OCI layout",
                       description="Load images from a docker archive, an OCI archive or an OCI layout directory.")
    q.add_argument("-i", "--input", required=True, help="Read from a tar archive file or an OCI layout directory")
    q.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    q.set_defaults(func=run_load)


def run_save(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store()
    chosen = []
    for text in args.images:
        image = store.resolve(text)
        # Saved under the name asked for, when it names one; an ID saves the stored name.
        name: ImageReference | None = image.name
        chosen.append((image, name))
    with store.transfer():
        archive.save(store, chosen, Path(args.output), args.format)
    return 0


def run_load(ctx: Context, args: argparse.Namespace) -> int:
    path = Path(args.input)
    if not path.exists():
        raise ClientError(f"open {path}: no such file or directory")
    store = ctx.store()
    with store.transfer():
        loaded = archive.load(store, path)
    if not args.quiet:
        for name in loaded.names:
            ctx.out(f"Loaded image: {name.familiar()}")
        for image_id in loaded.image_ids:
            ctx.out(f"Loaded image ID: {image_id}")
    return 0
