"""The `pyreg-registry` command: `serve` the registry on uvicorn, or print the effective `config`.

Worker processes get the configuration the parent resolved (file, REGISTRY_* variables and flags)
as JSON in an environment variable, so every worker serves exactly the same config, including a
generated `http.secret` that they must share; `app_factory` turns it back into the app.
"""

from __future__ import annotations

import argparse
import ctypes
import enum
import importlib.util
import json
import logging
import math
import os
import secrets
import ssl
import sys
import time
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import yaml

from pyreg.registry.config import (
    LOG_LEVELS,
    Config,
    ConfigError,
    config_from_json,
    config_to_json,
    load_config,
    split_addr,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp

CONFIG_ENV = "PYREG_REGISTRY_CONFIG_JSON"
MASK = "********"
_PY_LEVELS = {"error": "ERROR", "warn": "WARNING", "info": "INFO", "debug": "DEBUG"}


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    CONFIG_ERROR = 2  # also what argparse uses for a bad command line


def tune_malloc() -> None:
    """Keep glibc from mmap-ing and unmapping every large buffer.

    Request bodies arrive as 256 KiB+ pieces (uvloop reads, uvicorn's body buffer, the upload
    batches); above glibc's default mmap threshold each one is a fresh mapping, page-faulted in
    and unmapped again, which costs about as much kernel time as receiving the bytes. Serving
    them from the heap halves the CPU an upload takes; RSS stays the same (bench/profile.md).
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD


def app_factory() -> ASGIApp:
    """The ASGI app of one worker: `uvicorn --factory pyreg.registry.cli:app_factory` works too."""
    from pyreg.registry.app import create_app

    tune_malloc()
    text = os.environ.get(CONFIG_ENV)
    config = config_from_json(text) if text else load_config(None, os.environ)
    app: ASGIApp = create_app(config)
    return app


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["token-server"]:
        from pyreg.registry.auth import tokenserver

        return tokenserver.main(args_list[1:], prog="pyreg-registry token-server")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors: keep main() -> int
        return int(e.code or 0) if not isinstance(e.code, str) else ExitCode.FAILURE
    try:
        config = load_config(args.config, env)
        if args.command == "config":
            print(yaml.safe_dump(distribution_dict(config), sort_keys=False), end="")
            return ExitCode.OK
        apply_flags(config, addr=args.addr, root=args.root, log_level=args.log_level)
        check_serve(config, args.workers)
    except ConfigError as e:
        print(f"pyreg-registry: {e}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    return serve(config, args.workers)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyreg-registry",
        description="An OCI Distribution registry that reads distribution's config.yml.")
    parser.add_argument("--version", action="version", version=f"pyreg-registry {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = "distribution-style config.yml (default: $REGISTRY_CONFIGURATION_PATH, else built in)"
    serve = sub.add_parser("serve", help="run the registry")
    serve.add_argument("config", nargs="?", help=config_help)
    serve.add_argument("--addr", help="listen on HOST:PORT (overrides http.addr)")
    serve.add_argument("--root", help="filesystem storage in DIR (overrides storage)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, help="overrides log.level")
    show = sub.add_parser("config", help="print the effective configuration (secrets masked)")
    show.add_argument("config", nargs="?", help=config_help)
    # Parsed by the token server itself; listed here for --help.
    sub.add_parser("token-server", help="run the built-in token server on its own", add_help=False)
    return parser


def _version() -> str:
    try:
        return version("pyreg")
    except PackageNotFoundError:
        return "unknown"


def apply_flags(config: Config, *, addr: str | None = None, root: str | None = None,
                log_level: str | None = None) -> None:
    """Command-line flags win over the file and the environment."""
    if addr is not None:
        try:
            split_addr(addr)
        except ValueError as e:
            raise ConfigError(f"--addr: {e}") from None
        config.http.addr, config.http.net = addr, "tcp"
    if root is not None:
        config.storage.driver, config.storage.filesystem_root = "filesystem", root
    if log_level is not None:
        config.log_level = log_level


def check_serve(config: Config, workers: int) -> None:
    """What only matters when serving: files that must exist, settings workers cannot share."""
    if workers < 1:
        raise ConfigError(f"--workers: expected at least 1, got {workers}")
    if workers > 1 and config.storage.driver == "inmemory":
        raise ConfigError("storage.inmemory: each worker would have its own store; use --workers 1")
    tls = config.http.tls
    for key, path in (("certificate", tls.certificate), ("key", tls.key)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"http.tls.{key}: no such file {path!r}")
    if len(tls.clientcas) > 1:
        raise ConfigError("http.tls.clientcas: pyreg takes one CA file (concatenate them)")
    for path in tls.clientcas:
        if not os.path.isfile(path):
            raise ConfigError(f"http.tls.clientcas: no such file {path!r}")
    # Build the app once here, so that what only the app can check (storage driver, auth files,
    # features) fails now with one clear line rather than in every worker with a traceback.
    from pyreg.registry.app import create_app

    try:
        create_app(config)
    except (ValueError, OSError) as e:
        raise ConfigError(str(e)) from None


def serve(config: Config, workers: int = 1) -> int:
    import uvicorn

    if config.http.secret is None:
        # Upload state is signed with the secret: every worker must hold the same one.
        config.http.secret = secrets.token_hex(32)
    os.environ[CONFIG_ENV] = config_to_json(config)
    http, tls = config.http, config.http.tls
    where: dict[str, Any] = (
        {"uds": http.addr} if http.net == "unix" else {"host": http.bind_host, "port": http.bind_port}
    )
    print(f"pyreg-registry {_version()}: {describe(config, workers)}", file=sys.stderr, flush=True)
    uvicorn.run(
        "pyreg.registry.cli:app_factory",
        factory=True,
        **where,
        workers=workers,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "auto",
        http="httptools" if importlib.util.find_spec("httptools") else "auto",
        log_config=logging_config(config),
        # The access log costs throughput; distribution-style debugging is where it pays.
        access_log=config.log_level == "debug" and not config.log.accesslog_disabled,
        server_header=False,
        headers=[(name, value) for name, values in http.headers.items() for value in values],
        timeout_graceful_shutdown=math.ceil(http.draintimeout) or None,
        ssl_certfile=tls.certificate,
        ssl_keyfile=tls.key,
        ssl_ca_certs=tls.clientcas[0] if tls.clientcas else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if tls.clientcas else ssl.CERT_NONE,
    )
    return ExitCode.OK


def describe(config: Config, workers: int = 1) -> str:
    """The startup line: where it listens and where the data lives."""
    http, storage = config.http, config.storage
    if http.net == "unix":
        url = f"unix:{http.addr}"
    else:
        host = f"[{http.bind_host}]" if ":" in http.bind_host else http.bind_host
        url = f"{'https' if http.tls.certificate else 'http'}://{host}:{http.bind_port}{http.prefix}"
    if storage.driver == "filesystem":
        data = f"data in {os.path.abspath(storage.filesystem_root)}"
    elif storage.driver == "s3":
        data = f"data in s3 bucket {storage.s3.get('bucket')}"
    else:
        data = "data in memory (lost on exit)"
    plural = "s" if workers != 1 else ""
    return f"listening on {url} with {workers} worker{plural}, {data}"


class JSONFormatter(logging.Formatter):
    """One JSON object per line (log.formatter json/logstash), with log.fields in every record."""

    def __init__(self, fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.fields = fields or {}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.fields,
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(config: Config) -> dict[str, Any]:
    """A dictConfig for the registry's and uvicorn's loggers; uvicorn applies it in each worker."""
    level = _PY_LEVELS[config.log_level]
    if config.log.formatter == "text":
        fields = "".join(f" {k}={v}" for k, v in config.log.fields.items())
        formatter: dict[str, Any] = {"format": f"%(asctime)s %(levelname)s %(name)s{fields}: %(message)s"}
    else:
        formatter = {"()": f"{__name__}.JSONFormatter", "fields": dict(config.log.fields)}
    # uvicorn's own start-up chatter is replaced by our one line, unless debugging.
    chatter = level if level in ("DEBUG", "ERROR") else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": chatter},
            "uvicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
    }


def format_duration(seconds: float) -> str:
    """A Go duration string for `seconds`: 604800 -> '168h', 5400 -> '1h30m', 0.5 -> '500ms'."""
    if seconds == 0:
        return "0s"
    ms = round(seconds * 1000)
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(parts)


def distribution_dict(config: Config, mask: bool = True) -> dict[str, Any]:
    """`config` in distribution's config.yml shape: reading it back gives the same Config."""

    def secret(value: Any) -> Any:
        return MASK if mask and value else value

    http, storage, purge = config.http, config.storage, config.storage.uploadpurging
    driver: dict[str, Any] = {
        "filesystem": {"rootdirectory": storage.filesystem_root},
        "s3": {k: secret(v) if k in ("accesskey", "secretkey", "sessiontoken") else v
               for k, v in storage.s3.items()},
        "inmemory": {},
    }[storage.driver]
    http_out: dict[str, Any] = {"addr": http.addr}
    optional = {"net": http.net if http.net != "tcp" else None, "host": http.host,
                "prefix": http.prefix, "secret": secret(http.secret),
                "relativeurls": http.relativeurls or None,
                "draintimeout": format_duration(http.draintimeout) if http.draintimeout else None,
                "headers": http.headers}
    http_out.update({k: v for k, v in optional.items() if v})
    if http.tls.certificate or http.tls.clientcas:
        tls = {"certificate": http.tls.certificate, "key": http.tls.key, "clientcas": http.tls.clientcas}
        http_out["tls"] = {k: v for k, v in tls.items() if v}
    log: dict[str, Any] = {"level": config.log_level, "formatter": config.log.formatter}
    if config.log.fields:
        log["fields"] = config.log.fields
    if config.log.accesslog_disabled:
        log["accesslog"] = {"disabled": True}
    out: dict[str, Any] = {
        "version": config.version,
        "log": log,
        "http": http_out,
        "storage": {
            storage.driver: driver,
            "delete": {"enabled": storage.delete_enabled},
            "redirect": {"disable": storage.redirect_disable},
            "maintenance": {
                "uploadpurging": {"enabled": purge.enabled, "age": format_duration(purge.age),
                                  "interval": format_duration(purge.interval), "dryrun": purge.dryrun},
                "readonly": {"enabled": storage.readonly},
            },
        },
    }
    if storage.cache:
        out["storage"]["cache"] = storage.cache
    if config.auth:
        out["auth"] = config.auth
    if config.proxy:
        out["proxy"] = {k: secret(v) if k == "password" else v for k, v in config.proxy.items()}
    out["catalog"] = {"maxentries": config.catalog_maxentries}
    return out


if __name__ == "__main__":
    sys.exit(main())
