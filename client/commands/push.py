"""`pyreg push NAME[:TAG] [-q]`: a name without a tag pushes every local tag of the repository."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pyreg.client.environment import Context
from pyreg.client.errors import ImageNotFound
from pyreg.client.progress import Reporter
from pyreg.oci.imageref import ImageReference

if TYPE_CHECKING:
    from pyreg.client.transfer.push import PushResult


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("push", help="Upload an image to a registry",
                       description="Upload an image from the local store to a registry.")
    p.add_argument("name", metavar="NAME[:TAG]")
    p.add_argument("-a", "--all-tags", action="store_true", help="Push all tags of the repository")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.set_defaults(func=run)


async def push_images(ctx: Context, refs: list[ImageReference], progress: Reporter | None = None
                      ) -> list[PushResult]:
    from pyreg.client.transfer.push import push

    session, store = ctx.session(), ctx.store()
    try:
        return [await push(session, store, r, progress=progress) for r in refs]
    finally:
        await session.aclose()


def run(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.reference(args.name, default_tag=None)
    if ref.tag is None and ref.digest is None:
        refs = sorted((i.name for i in ctx.store().images()
                       if i.name and i.name.tag and i.name.repository == ref.repository), key=str)
        if not refs:
            raise ImageNotFound(f"An image does not exist locally with the tag: {ref.familiar_repository}")
    else:
        refs = [ref]
    reporter = ctx.reporter(args.quiet)
    try:
        results = ctx.run(push_images(ctx, refs, reporter))
    finally:
        reporter.close()
    for result in results:
        if not args.quiet:
            ctx.out(f"{result.name.tag or 'latest'}: digest: {result.digest} size: {result.size}")
    if args.quiet:
        ctx.out("\n".join(str(r.name) for r in results))
    return 0
