"""Access rules of the built-in token server: who may pull, push and delete what.

An ordered list; for each repository the first rule that matches both the account and the
repository decides its actions (a rule with no actions denies). Patterns are globs (`*` matches
across `/`); `{account}` in a repository pattern stands for the caller's own name, so
`{account}/*` is everyone's personal namespace. The account `anonymous` is the caller without
credentials, and `*` every signed-in account. What anonymous callers may do, signed-in callers
may do too: refusing them would only teach clients to log out. `anonymouspull: true` lets
everyone pull every repository. `_catalog` is listed only for accounts of a `catalog: true` rule.

    RulesError (ValueError)     an invalid rule; the message names it
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyreg.oci.reference import is_valid_name
from pyreg.registry.auth.scopes import ACTIONS, ALL, CATALOG, REGISTRY, REPOSITORY, Access, Grant

ANONYMOUS = "anonymous"
_RULE_KEYS = ("account", "repository", "actions", "catalog")


class RulesError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    accounts: tuple[str, ...]
    repositories: tuple[str, ...] = ()
    actions: frozenset[str] = frozenset()
    catalog: bool = False

    def matches_account(self, account: str | None) -> bool:
        if account is None:
            return ANONYMOUS in self.accounts
        return any(p != ANONYMOUS and fnmatch.fnmatchcase(account, p) for p in self.accounts)

    def matches_repository(self, account: str | None, name: str) -> bool:
        for pattern in self.repositories:
            if "{account}" in pattern:
                # Only a name that is itself a valid path component can own a namespace: no
                # account called "x/*" or "a/b" widens a rule beyond its author's intent.
                if account is None or "/" in account or not is_valid_name(account):
                    continue
                pattern = pattern.replace("{account}", account)
            if fnmatch.fnmatchcase(name, pattern):
                return True
        return False


class AccessRules:
    def __init__(self, rules: Sequence[Rule] = (), anonymous_pull: bool = False) -> None:
        self.rules = tuple(rules)
        self.anonymous_pull = anonymous_pull

    @classmethod
    def from_config(cls, raw: Any, anonymous_pull: Any = False, key: str = "rules") -> AccessRules:
        if not isinstance(anonymous_pull, bool):
            raise RulesError(f"{key.rpartition('.')[0] or key}.anonymouspull: expected a boolean")
        if raw is None:
            return cls((), anonymous_pull)
        if not isinstance(raw, list):
            raise RulesError(f"{key}: expected a list of rules")
        return cls([_rule(item, f"{key}[{i}]") for i, item in enumerate(raw)], anonymous_pull)

    def allowed(self, account: str | None, type_: str, name: str) -> frozenset[str]:
        """The actions `account` (None: anonymous) may take on a resource."""
        found = self._first_match(account, type_, name)
        if account is not None:
            found |= self._first_match(None, type_, name)
        if self.anonymous_pull and type_ == REPOSITORY:
            found |= {"pull"}
        return found

    def _first_match(self, account: str | None, type_: str, name: str) -> frozenset[str]:
        for rule in self.rules:
            if not rule.matches_account(account):
                continue
            if type_ == REGISTRY and name == CATALOG and rule.catalog:
                return frozenset({ALL})
            if type_ == REPOSITORY and rule.matches_repository(account, name):
                return rule.actions
        return frozenset()

    def grant(self, account: str | None, requested: Iterable[Access]) -> Grant:
        """The intersection of what was asked and what the rules allow; never an error."""
        grant = Grant(account or "")
        for access in requested:
            allowed = self.allowed(account, access.type, access.name)
            if ALL in allowed:
                given = access.actions
            else:
                given = frozenset(access.actions & allowed)
                if ALL in access.actions:  # asked for everything: grant what there is
                    given = allowed
            if given:
                grant.add(Access(access.type, access.name, given))
        return grant


def _strings(value: Any, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise RulesError(f"{key}: expected a pattern or a list of patterns")
    return tuple(items)


def _rule(item: Any, key: str) -> Rule:
    if not isinstance(item, dict):
        raise RulesError(f"{key}: expected a mapping with account, repository and actions")
    unknown = [str(k) for k in item if k not in _RULE_KEYS]
    if unknown:  # a misspelt key must not silently change who may do what
        raise RulesError(f"{key}: unknown keys {', '.join(unknown)} (a rule has {', '.join(_RULE_KEYS)})")
    if "account" not in item:
        raise RulesError(f"{key}.account: required ('anonymous', a name, or a pattern such as '*')")
    accounts = _strings(item["account"], f"{key}.account")
    catalog = item.get("catalog", False)
    if not isinstance(catalog, bool):
        raise RulesError(f"{key}.catalog: expected a boolean")
    if catalog:
        if "repository" in item or "actions" in item:
            raise RulesError(f"{key}: a catalog rule has no repository or actions")
        return Rule(accounts, catalog=True)
    if "repository" not in item:
        raise RulesError(f"{key}.repository: required (or `catalog: true`)")
    repositories = _strings(item["repository"], f"{key}.repository")
    actions = item.get("actions", [])
    if not isinstance(actions, list) or not all(a in (*ACTIONS, ALL) for a in actions):
        raise RulesError(f"{key}.actions: expected a list of {', '.join((*ACTIONS, ALL))}")
    return Rule(accounts, repositories, frozenset({ALL} if ALL in actions else actions))
