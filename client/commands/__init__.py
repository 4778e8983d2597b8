"""One module per `pyreg` command: `register(subparsers)` adds its parser, `run(ctx, args)` runs it,
and the work itself is a plain function tests can call."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from pyreg.client.errors import ClientError

if TYPE_CHECKING:
    from pyreg.client.environment import Context
    from pyreg.client.progress import Reporter
    from pyreg.oci.imageref import ImageReference

R = TypeVar("R")

# A string: argparse's class is generic to type checkers only.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def transfer_name(ctx: Context, args: argparse.Namespace) -> ImageReference:
    """NAME as `pull` and `push` take it: `latest` when it has no tag; with `-a` (every tag of
    the repository) a repository, which may not carry a tag or digest."""
    ref = ctx.reference(args.name, default_tag=None if args.all_tags else "latest")
    if args.all_tags and (ref.tag or ref.digest):
        raise ClientError("tag can't be used with --all-tags/-a")
    return ref


async def one_by_one(refs: Sequence[ImageReference],
                     transfer: Callable[[int, ImageReference], Awaitable[R]],
                     done: Callable[[R], None] | None) -> list[R]:
    """`transfer` each of `refs` in turn (with its position); `done` after each, before the next."""
    results = []
    for i, ref in enumerate(refs):
        results.append(await transfer(i, ref))
        if done is not None:
            done(results[-1])
    return results


def with_rows(ctx: Context, quiet: bool,
              work: Callable[[Reporter, Callable[[R], None]], Coroutine[Any, Any, list[R]]],
              line: Callable[[R], str | None]) -> list[R]:
    """Run a transfer of images one by one with progress rows (none when `quiet`); each image's
    `line` (its digest) goes below its rows once it is done, as docker prints it."""
    reporter = ctx.reporter(quiet)

    def done(result: R) -> None:
        reporter.close()  # this image's rows are final: its line goes below them
        text = line(result)
        if text is not None:
            ctx.out(text)

    try:
        return ctx.run(work(reporter, done))
    finally:
        reporter.close()
