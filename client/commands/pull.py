"""`pyreg pull NAME[:TAG|@DIGEST] [--platform os/arch[/variant]] [-a] [-q]`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyreg.client.commands import one_by_one, transfer_name, with_rows
from pyreg.client.environment import Context
from pyreg.client.progress import Reporter
from pyreg.oci.imageref import ImageReference
from pyreg.oci.platform import Platform

if TYPE_CHECKING:
    from pyreg.client.transfer.pull import PullResult


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("pull", help="Download an image from a registry",
                       description="Download an image from a registry into the local store.")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("-a", "--all-tags", action="store_true", help="Download all tagged images in the repository")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable (os/arch[/variant]); "
                   "only that platform is kept, as docker does")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.set_defaults(func=run)


async def pull_images(ctx: Context, ref: ImageReference, *, all_tags: bool = False,
                      platform: Platform | None = None, progress: Reporter | None = None,
                      done: Callable[[PullResult], None] | None = None) -> list[PullResult]:
    """Pull `ref`, or with `all_tags` every tag of its repository, into the context's store;
    `done` is called after each image, before the next starts."""
    from pyreg.client.transfer.pull import pull

    session, store = ctx.session(), ctx.store()
    try:
        refs = [ref]
        if all_tags:
            conn = await session.registry(ref.domain)
            refs = [ref.with_tag(t) for t in sorted(await conn.api.list_tags(ref.path))]
        return await one_by_one(
            refs, lambda _, r: pull(session, store, r, platform=platform, progress=progress), done)
    finally:
        await session.aclose()


def run(ctx: Context, args: argparse.Namespace) -> int:
    ref = transfer_name(ctx, args)
    platform = Platform.parse(args.platform) if args.platform else None
    results = with_rows(
        ctx, args.quiet,
        lambda reporter, done: pull_images(ctx, ref, all_tags=args.all_tags, platform=platform,
                                           progress=reporter, done=done),
        lambda result: None if args.quiet else f"Digest: {result.digest}")
    if not args.quiet:
        fresh = not all(r.up_to_date for r in results)
        shown = ref.familiar() if not args.all_tags else ref.familiar_repository
        ctx.out(f"Status: {'Downloaded newer image' if fresh else 'Image is up to date'} for {shown}")
    ctx.out(str(ref) if not args.all_tags else ref.repository)
    return 0
