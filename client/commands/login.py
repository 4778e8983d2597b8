"""`pyreg login [SERVER] [-u USER] [-p PASS | --password-stdin]` and `pyreg logout [SERVER]`.

The credentials are tried against the registry before they are saved (in docker's config.json,
through its credential helper if one is configured). When the registry's token service hands out
a refresh token, that identity token is saved instead of the password, as docker does.
"""

from __future__ import annotations

import argparse

from pyreg.client.credentials import Credentials
from pyreg.client.environment import Context
from pyreg.client.errors import ClientError, Unauthorized
from pyreg.oci.imageref import DOCKER_HUB


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("login", help="Log in to a registry", description="Log in to a registry.")
    p.add_argument("server", nargs="?", metavar="SERVER")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true", help="Take the password from stdin")
    p.set_defaults(func=run)
    q = sub.add_parser("logout", help="Log out from a registry", description="Log out from a registry.")
    q.add_argument("server", nargs="?", metavar="SERVER")
    q.set_defaults(func=run_logout)


def _server(ctx: Context, server: str | None) -> str:
    host = server or ctx.config.default_registry
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.split("/", 1)[0]
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host


async def login(ctx: Context, server: str, credentials: Credentials) -> Credentials:
    """Check `credentials` against the registry; the credentials to save (maybe an identity token)."""
    from pyreg.client.connect import connect
    from pyreg.client.retry import RetryPolicy

    endpoint = ctx.config.endpoint(server)
    conn = await connect(endpoint, credentials, transport=ctx.env.transport,
                         retry=ctx.env.retry or RetryPolicy(attempts=2), verify=ctx.env.verify, oauth=True)
    try:
        if conn.ping.status_code == 401:
            raise Unauthorized(f"login to {server}: unauthorized: incorrect username or password", 401)
        if conn.auth.refresh_token and conn.auth.refresh_token != credentials.identity_token:
            return Credentials(credentials.username, "", conn.auth.refresh_token)
        return credentials
    finally:
        await conn.aclose()


def run(ctx: Context, args: argparse.Namespace) -> int:
    server = _server(ctx, args.server)
    if args.password and args.password_stdin:
        raise ClientError("--password and --password-stdin are mutually exclusive")
    username, password = args.username, args.password
    if args.password_stdin:
        if not username:
            raise ClientError("Must provide --username with --password-stdin")
        password = ctx.env.stdin.read().rstrip("\r\n")
    if not username or password is None:
        if not ctx.env.stdin_isatty:
            raise ClientError("Cannot perform an interactive login from a non TTY device")
        if not username:
            ctx.env.stdout.write("Username: ")
            ctx.env.stdout.flush()
            username = ctx.env.stdin.readline().strip()
        if password is None:
            import getpass

            password = getpass.getpass("Password: ", stream=ctx.env.stdout)
    if not username:
        raise ClientError("Non-null Username Required")
    if args.password:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=ctx.env.stderr)
    saved = ctx.run(login(ctx, server, Credentials(username, password or "")))
    ctx.docker_config().store(server, saved)
    ctx.out("Login Succeeded")
    return 0


def run_logout(ctx: Context, args: argparse.Namespace) -> int:
    server = _server(ctx, args.server)
    if ctx.docker_config().erase(server):
        ctx.out(f"Removing login credentials for {server}")
    else:
        ctx.out(f"Not logged in to {server}")
    return 0
