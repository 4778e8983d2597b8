"""Access scopes: what a registry request needs, what a token grants, and how to ask for more.

A scope is distribution's `type:name:actions` triple (`repository:team/app:pull,push`,
`registry:catalog:*`). The registry computes the scopes each request needs from its route, the
token server parses the scopes a client asks for, and a token's `access` claim lists the scopes
granted. Names are checked against the repository grammar before they are echoed in any header,
so a request path cannot inject quotes or parameters into a `WWW-Authenticate` challenge.

    ScopeError (ValueError)     a scope string that does not follow the grammar
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyreg.oci.reference import is_valid_name

ACTIONS = ("pull", "push", "delete")
ALL = "*"
REPOSITORY, REGISTRY, CATALOG = "repository", "registry", "catalog"
_ORDER = {a: i for i, a in enumerate((*ACTIONS, ALL))}


class ScopeError(ValueError):
    pass


@dataclass(frozen=True)
class Access:
    """Actions on one resource; `*` stands for every action."""

    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions, key=_ORDER.__getitem__))}"


def valid_resource(type_: str, name: str) -> bool:
    if type_ == REPOSITORY:
        return is_valid_name(name)
    return type_ == REGISTRY and name == CATALOG


def parse_scope(text: str) -> list[Access]:
    """The scopes in one `scope` parameter (space-separated, as OAuth2 has it).

    Unknown actions are dropped rather than refused (a token server grants what it can); anything
    outside the grammar is refused, so that no caller-chosen byte reaches a token or a header.
    """
    out: list[Access] = []
    for item in text.split(" "):
        if not item:
            continue
        type_, sep1, rest = item.partition(":")
        name, sep2, actions = rest.rpartition(":")
        # distribution's resource class, as in `repository(plugin):name:pull`, is ignored.
        type_ = re.sub(r"\([a-z0-9]+\)$", "", type_)
        if not (sep1 and sep2) or not valid_resource(type_, name):
            raise ScopeError(f"invalid scope {item[:200]!r}")
        wanted = frozenset(a for a in actions.split(",") if a in _ORDER)
        if not re.fullmatch(r"[a-z*]+(,[a-z*]+)*", actions):
            raise ScopeError(f"invalid actions in scope {item[:200]!r}")
        if wanted:
            out.append(Access(type_, name, wanted))
    return out


@dataclass
class Grant:
    """What a verified token allows: actions per resource, and who holds it ("" = anonymous)."""

    subject: str = ""
    resources: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_claim(cls, subject: str, claim: Any) -> Grant:
        """The token's `access` claim; entries that are not well-formed grant nothing."""
        grant = cls(subject)
        for entry in claim if isinstance(claim, list) else []:
            if not isinstance(entry, Mapping):
                continue
            type_, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
            if not (isinstance(type_, str) and isinstance(name, str) and isinstance(actions, list)):
                continue
            grant.add(Access(type_, name, frozenset(a for a in actions if isinstance(a, str))))
        return grant

    def add(self, access: Access) -> None:
        key = (access.type, access.name)
        self.resources[key] = self.resources.get(key, frozenset()) | access.actions

    def allows(self, type_: str, name: str, action: str) -> bool:
        actions = self.resources.get((type_, name), frozenset())
        return action in actions or ALL in actions

    def covers(self, access: Access) -> bool:
        return all(self.allows(access.type, access.name, a) for a in access.actions)

    def claim(self) -> list[dict[str, Any]]:
        return [{"type": t, "name": n, "actions": sorted(a, key=_ORDER.__getitem__)}
                for (t, n), a in sorted(self.resources.items())]


@dataclass(frozen=True)
class Needs:
    """The scopes a request needs (`required`), and those it can use when granted (`optional`:
    the source of a cross-repository mount, which otherwise becomes an ordinary upload)."""

    required: tuple[Access, ...] = ()
    optional: tuple[Access, ...] = ()
    invalid_name: bool = False  # NAME_INVALID follows, for any caller with a valid token

    @property
    def challenge(self) -> tuple[Access, ...]:
        return self.required + self.optional


def _repo(name: str, *actions: str) -> Access:
    return Access(REPOSITORY, name, frozenset(actions))


# The app's routes, in the app's order, with the same greedy `{name:path}` matching that
# Starlette's router uses: the scope is computed for exactly the handler that will run.
_NAME = r"/v2/(?P<name>.*)"
_PULL, _PUSH, _DELETE = ("pull",), ("pull", "push"), ("delete",)
_ROUTE_TABLE: tuple[tuple[str, dict[str, tuple[str, ...]]], ...] = (
    (r"/v2/", {"GET": ()}),
    (r"/v2/_catalog", {"GET": ()}),
    (_NAME + r"/tags/list", {"GET": _PULL}),
    (_NAME + r"/manifests/[^/]+", {"GET": _PULL, "PUT": _PUSH, "DELETE": _DELETE}),
    (_NAME + r"/blobs/uploads/", {"POST": _PUSH}),
    (_NAME + r"/blobs/uploads/[^/]+", {"GET": _PUSH, "PATCH": _PUSH, "PUT": _PUSH, "DELETE": _PUSH}),
    (_NAME + r"/blobs/[^/]+", {"GET": _PULL, "DELETE": _DELETE}),
    (_NAME + r"/referrers/[^/]+", {"GET": _PULL}),
)
_ROUTES = tuple((re.compile(pattern), methods) for pattern, methods in _ROUTE_TABLE)
_CATALOG = Access(REGISTRY, CATALOG, frozenset(ALL))


def needs(method: str, path: str, query: Mapping[str, str]) -> Needs:
    """The scopes the request `method path?query` needs (`path` without `http.prefix`).

    Paths no route serves (404/405 follow) and `/v2/` need a valid token and nothing more. A name
    outside the grammar must never reach a challenge header; it gets NAME_INVALID, as without auth.
    """
    method = "GET" if method == "HEAD" else method
    for pattern, methods in _ROUTES:
        match = pattern.fullmatch(path)
        if match is None or method not in methods:
            continue
        if path == "/v2/_catalog":
            return Needs((_CATALOG,))
        name = match.groupdict().get("name")
        actions = methods[method]
        if name is None or not actions:
            return Needs()
        if not is_valid_name(name):
            return Needs(invalid_name=True)
        optional: tuple[Access, ...] = ()
        source = query.get("from", "")
        if method == "POST" and query.get("mount") and source != name and is_valid_name(source):
            optional = (_repo(source, "pull"),)
        return Needs((_repo(name, *actions),), optional)
    return Needs()


def challenge(realm: str, service: str, scopes: Iterable[Access], error: str | None = None) -> str:
    """A `WWW-Authenticate: Bearer` value; every part is either configured or grammar-checked."""
    merged = Grant()
    for access in scopes:
        merged.add(access)
    value = f'Bearer realm="{realm}",service="{service}"'
    scope = " ".join(str(Access(t, n, a)) for (t, n), a in merged.resources.items())
    if scope:
        value += f',scope="{scope}"'
    if error:
        value += f',error="{error}"'
    return value


def can_read(scope: Mapping[str, Any], name: str) -> bool:
    """Whether the caller may pull from repository `name` (for a cross-repository mount).

    Without token auth there is no per-repository access to check: everyone who got this far
    may read every repository.
    """
    grant = scope.get("state", {}).get("access")
    return not isinstance(grant, Grant) or grant.allows(REPOSITORY, name, "pull")
