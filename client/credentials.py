"""Logins in docker's `config.json`, shared with docker and podman.

The file is `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`). A registry's
credentials come, in docker's order, from `credHelpers[host]`, else `credsStore`, else
`auths[host].auth` (base64 `user:password`, or `identitytoken`). Helpers are the
`docker-credential-<name>` programs: `get`/`erase` read the server URL on stdin, `store` reads
`{"ServerURL", "Username", "Secret"}`; a username of `<token>` means the secret is an identity
token. Docker Hub's key is `https://index.docker.io/v1/`. The file is rewritten atomically with
mode 600, keeping every key pyreg does not know.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from pyreg.client.errors import ConfigError, CredentialsError
from pyreg.oci.imageref import DOCKER_HUB, DOCKER_HUB_API

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
TOKEN_USER = "<token>"
_NOT_FOUND = "credentials not found in native keychain"


class Credentials(NamedTuple):
    """What a login holds: a username and password, or an identity token (OAuth2 refresh token)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def docker_config_dir(environ: Mapping[str, str]) -> Path:
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"])
    return Path(environ.get("HOME") or Path.home()) / ".docker"


def server_key(registry: str) -> str:
    """The key docker files a registry's login under."""
    if registry in (DOCKER_HUB, DOCKER_HUB_API, "index.docker.io", DOCKER_HUB_KEY):
        return DOCKER_HUB_KEY
    return registry


def _hostname(key: str) -> str:
    """docker's ConvertToHostname: `https://host:5000/v1/` is `host:5000`."""
    for prefix in ("http://", "https://"):
        key = key.removeprefix(prefix)
    return key.split("/", 1)[0]


class DockerConfig:
    """Reads and writes credentials in one `config.json`; `helper_path` is for tests."""

    def __init__(self, directory: Path, helper_path: str | None = None) -> None:
        self.path = directory / "config.json"
        self.helper_path = helper_path

    def load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ConfigError(f"{self.path}: {e}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{self.path}: expected a JSON object")
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        import tempfile  # imported when needed: start-up time counts

        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config.json.")
        try:
            # mkstemp creates the file 600: the secret is never readable by others, even briefly.
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _helper_for(self, doc: dict[str, Any], key: str) -> str | None:
        helpers = doc.get("credHelpers") or {}
        host = _hostname(key)
        for name in (key, host):
            if isinstance(helpers.get(name), str):
                return str(helpers[name])
        store = doc.get("credsStore")
        return store if isinstance(store, str) and store else None

    def get(self, registry: str) -> Credentials | None:
        key = server_key(registry)
        doc = self.load()
        helper = self._helper_for(doc, key)
        if helper:
            return self._helper_get(helper, key)
        auths = doc.get("auths") or {}
        entry = auths.get(key)
        if entry is None:  # keys may carry a scheme or path: match on the host like docker does
            entry = next((v for k, v in auths.items() if _hostname(k) == _hostname(key)), None)
        if not isinstance(entry, dict):
            return None
        identity = str(entry.get("identitytoken") or "")
        username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
        if entry.get("auth"):
            try:
                username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, TypeError):
                raise ConfigError(f"{self.path}: invalid auth for {key}") from None
        if not (username or identity):
            return None
        return Credentials(username, password, identity)

    def store(self, registry: str, credentials: Credentials) -> None:
        key = server_key(registry)
        doc = self.load()
        auths = doc.setdefault("auths", {})
        helper = self._helper_for(doc, key)
        if helper:
            secret = credentials.identity_token or credentials.password
            user = TOKEN_USER if credentials.identity_token else credentials.username
            self._run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": user, "Secret": secret}))
            auths[key] = {}  # docker records the login here too, without the secret
        else:
            entry: dict[str, str] = {
                "auth": base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
            }
            if credentials.identity_token:
                entry = {"auth": base64.b64encode(f"{credentials.username}:".encode()).decode(),
                         "identitytoken": credentials.identity_token}
            auths[key] = entry
        self.save(doc)

    def erase(self, registry: str) -> bool:
        """Forget the login; False when there was none."""
        key = server_key(registry)
        doc = self.load()
        helper = self._helper_for(doc, key)
        auths = doc.get("auths") or {}
        # Every key `get` would find this login under (`host`, `https://host`, `http://host/v2/`…),
        # as docker's logout tries the host with and without a scheme.
        keys = [k for k in auths if k == key or _hostname(k) == _hostname(key)]
        found = bool(keys)
        if helper:
            try:
                self._run_helper(helper, "erase", key)
                found = True
            except CredentialsError:
                if not found:
                    return False
        if keys:
            for k in keys:
                del auths[k]
            self.save(doc)
        return found

    # -- helpers ------------------------------------------------------------------------------

    def _helper_get(self, helper: str, key: str) -> Credentials | None:
        try:
            out = self._run_helper(helper, "get", key)
        except CredentialsError as e:
            if _NOT_FOUND in str(e).lower() or "not found" in str(e).lower():
                return None
            raise
        try:
            doc = json.loads(out)
        except ValueError:
            raise CredentialsError(f"docker-credential-{helper} get: invalid output") from None
        user, secret = str(doc.get("Username") or ""), str(doc.get("Secret") or "")
        if user == TOKEN_USER:
            return Credentials(identity_token=secret)
        return Credentials(user, secret) if user or secret else None

    def _run_helper(self, helper: str, action: str, data: str) -> str:
        import subprocess

        program = f"docker-credential-{helper}"
        env = dict(os.environ)
        if self.helper_path is not None:
            env["PATH"] = self.helper_path
        try:
            result = subprocess.run([program, action], input=data, capture_output=True, text=True,
                                    timeout=60, env=env, check=False)
        except FileNotFoundError:
            raise CredentialsError(f"{program} is not installed (named in {self.path})") from None
        except subprocess.TimeoutExpired:
            raise CredentialsError(f"{program} {action} timed out") from None
        if result.returncode != 0:
            message = (result.stdout.strip() or result.stderr.strip() or f"exit {result.returncode}")
            raise CredentialsError(f"{program} {action}: {message.splitlines()[0]}")
        return result.stdout
