from __future__ import annotations

from typing import Any

import pytest

from pyreg.registry.auth.rules import AccessRules, RulesError
from pyreg.registry.auth.scopes import parse_scope
from tests.auth.conftest import DEFAULT_RULES


def allowed(rules: AccessRules, account: str | None, name: str) -> set[str]:
    return set(rules.allowed(account, "repository", name))


def test_first_matching_rule_decides() -> None:
    rules = AccessRules.from_config([
        {"account": "alice", "repository": "secret/*", "actions": []},  # an explicit denial
        {"account": "*", "repository": "*", "actions": ["pull"]},
    ])
    assert allowed(rules, "alice", "secret/x") == set()
    assert allowed(rules, "alice", "other") == {"pull"}


def test_personal_namespace_placeholder() -> None:
    rules = AccessRules.from_config(DEFAULT_RULES)
    assert allowed(rules, "alice", "alice/app") == {"pull", "push", "delete"}
    assert allowed(rules, "alice", "alice/team/app") == {"pull", "push", "delete"}
    assert allowed(rules, "alice", "bob/app") == set()
    assert allowed(rules, "alice", "alice") == set()
    assert allowed(rules, None, "alice/app") == set()


def test_account_names_cannot_widen_the_placeholder() -> None:
    rules = AccessRules.from_config([{"account": "*", "repository": "{account}/*", "actions": ["*"]}])
    assert allowed(rules, "*", "bob/app") == set()
    assert allowed(rules, "bob/app", "bob/app/x") == set()
    assert allowed(rules, "[b]ob", "bob/x") == set()


def test_anonymous_rules_apply_to_everyone() -> None:
    rules = AccessRules.from_config(DEFAULT_RULES)
    assert allowed(rules, None, "public/x") == {"pull"}
    assert allowed(rules, "bob", "public/x") == {"pull"}
    assert allowed(rules, "pusher", "public/x") == {"pull"}
    assert allowed(rules, "anonymous", "public/x") == {"pull"}  # the name "anonymous" is no wildcard


def test_anonymous_pull_switch() -> None:
    rules = AccessRules.from_config([], anonymous_pull=True)
    assert allowed(rules, None, "any/thing") == {"pull"}
    assert allowed(rules, "alice", "any/thing") == {"pull"}
    assert not AccessRules.from_config([]).allowed(None, "repository", "x")


def test_catalog_only_where_a_rule_allows() -> None:
    rules = AccessRules.from_config(DEFAULT_RULES)
    assert rules.allowed("admin", "registry", "catalog") == {"*"}
    assert rules.allowed("alice", "registry", "catalog") == frozenset()
    assert rules.allowed(None, "registry", "catalog") == frozenset()


def test_grant_is_the_intersection_of_asked_and_allowed() -> None:
    rules = AccessRules.from_config(DEFAULT_RULES)
    asked = parse_scope("repository:team/a:pull,push,delete repository:bob/x:pull repository:public/p:push,pull")
    grant = rules.grant("pusher", asked)
    assert grant.claim() == [
        {"type": "repository", "name": "public/p", "actions": ["pull"]},
        {"type": "repository", "name": "team/a", "actions": ["pull", "push"]},
    ]
    assert rules.grant("admin", parse_scope("repository:x:*")).claim() == [
        {"type": "repository", "name": "x", "actions": ["*"]}]
    assert rules.grant("reader", parse_scope("repository:x:*")).claim() == [
        {"type": "repository", "name": "x", "actions": ["pull"]}]


@pytest.mark.parametrize(("rule", "message"), [
    ({"repository": "*", "actions": ["pull"]}, r"rules\[0\]\.account"),
    ({"account": "a", "repository": "*", "actions": ["read"]}, r"rules\[0\]\.actions"),
    ({"account": "a", "repositories": "*"}, "unknown keys repositories"),
    ({"account": "a"}, r"rules\[0\]\.repository"),
    ({"account": "a", "catalog": True, "repository": "*"}, "catalog rule"),
    ({"account": [], "repository": "*"}, r"rules\[0\]\.account"),
    ("admin", r"rules\[0\]"),
])
def test_invalid_rules_name_the_rule(rule: Any, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        AccessRules.from_config([rule])
    with pytest.raises(RulesError, match="anonymouspull"):
        AccessRules.from_config([], anonymous_pull="yes", key="auth.token.server.rules")
