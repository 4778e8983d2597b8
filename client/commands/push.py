"""`pyreg push NAME[:TAG] [-a] [-q]`: as docker (since 20.10), a name without a tag pushes `latest`,
`-a` every local tag of the repository."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyreg.client.commands import one_by_one, transfer_name, with_rows
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


async def push_images(ctx: Context, refs: list[ImageReference], progress: Reporter | None = None,
                      done: Callable[[PushResult], None] | None = None) -> list[PushResult]:
    """Push each of `refs` in turn; `done` is called after each push, before the next starts."""
    from pyreg.client.transfer.push import push

    session, store = ctx.session(), ctx.store()
    try:
        # docker names the repository once, however many of its tags are pushed.
        return await one_by_one(refs, lambda i, r: push(
            session, store, r, progress=progress,
            announce=i == 0 or r.repository != refs[i - 1].repository), done)
    finally:
        await session.aclose()


def run(ctx: Context, args: argparse.Namespace) -> int:
    ref = transfer_name(ctx, args)
    if args.all_tags:
        refs = sorted((i.name for i in ctx.store().images()
                       if i.name and i.name.tag and i.name.repository == ref.repository), key=str)
        if not refs:
            raise ImageNotFound(f"An image does not exist locally with the tag: {ref.familiar_repository}")
    else:
        refs = [ref]
    with_rows(ctx, args.quiet, lambda reporter, done: push_images(ctx, refs, reporter, done),
              lambda result: str(result.name) if args.quiet else
              f"{result.name.tag or 'latest'}: digest: {result.digest} size: {result.size}")
    return 0
