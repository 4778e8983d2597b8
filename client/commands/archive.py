"""`pyreg save IMAGE… [-o FILE] [--format docker|oci-archive|oci]` and `pyreg load [-i FILE]`.

As docker's: without `-o` the archive goes to stdout (never to a terminal), without `-i` it comes
from stdin (spooled to a file in the store first: reading an archive needs to seek).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from pyreg.client.environment import Context
from pyreg.client.errors import ClientError
from pyreg.oci.imageref import ImageReference

# archive.FORMATS, named here so that registering the command does not import tarfile.
FORMATS = ("docker", "oci-archive", "oci")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("save", help="Save one or more images to a tar archive",
                       description="Save images to an archive that docker, podman and skopeo load.")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", help="Write to a file (a directory with --format oci), instead of STDOUT")
    p.add_argument("--format", choices=FORMATS, default="docker",
                   help="docker (default: docker's archive, an OCI layout inside), oci-archive or oci")
    p.set_defaults(func=run_save)
    q = sub.add_parser("load", help="Load an image from a tar archive or an OCI layout",
                       description="Load images from a docker archive, an OCI archive or an OCI layout directory.")
    q.add_argument("-i", "--input", help="Read from a tar archive file or an OCI layout directory, instead of STDIN")
    q.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    q.set_defaults(func=run_load)


def run_save(ctx: Context, args: argparse.Namespace) -> int:
    from pyreg.client import archive

    store = ctx.store()
    chosen = []
    for text in args.images:
        image = store.resolve(text)
        # As docker: saved under its name when named, without one when given by ID.
        name: ImageReference | None = None if store.named_by_id(text, image) else image.name
        chosen.append((image, name))
    if args.output:
        with store.transfer():
            archive.save(store, chosen, Path(args.output), args.format)
        return 0
    stream = getattr(ctx.env.stdout, "buffer", None)
    if ctx.env.stdout_isatty or stream is None:
        raise ClientError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    with store.transfer():
        archive.save(store, chosen, stream, args.format)
    stream.flush()
    return 0


def run_load(ctx: Context, args: argparse.Namespace) -> int:
    from pyreg.client import archive

    store = ctx.store()
    if args.input:
        path = Path(args.input)
        if not path.exists():
            raise ClientError(f"open {path}: no such file or directory")
        with store.transfer():
            loaded = archive.load(store, path)
    else:
        stream = getattr(ctx.env.stdin, "buffer", None)
        if ctx.env.stdin_isatty or stream is None:
            raise ClientError("requested load from stdin, but stdin is empty")
        spool = store.root / "ingest" / f"load-{os.getpid()}.tar"
        spool.parent.mkdir(parents=True, exist_ok=True)
        try:
            with spool.open("wb") as f:
                shutil.copyfileobj(stream, f, 1 << 20)
            if spool.stat().st_size == 0:
                raise ClientError("requested load from stdin, but stdin is empty")
            with store.transfer():
                loaded = archive.load(store, spool)
        finally:
            spool.unlink(missing_ok=True)
    if not args.quiet:
        for name in loaded.names:
            ctx.out(f"Loaded image: {name.familiar()}")
        for image_id in loaded.image_ids:
            ctx.out(f"Loaded image ID: {image_id}")
    return 0
