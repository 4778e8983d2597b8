from __future__ import annotations

import pytest

from pyreg.registry.auth.scopes import (
    Access,
    Grant,
    ScopeError,
    can_read,
    challenge,
    needs,
    parse_scope,
)


def scopes(method: str, path: str, **query: str) -> list[str]:
    n = needs(method, path, query)
    return [str(a) for a in n.required] + [f"optional {a}" for a in n.optional]


def test_each_endpoint_needs_its_scope() -> None:
    assert scopes("GET", "/v2/") == []
    assert scopes("GET", "/v2/_catalog") == ["registry:catalog:*"]
    assert scopes("GET", "/v2/a/b/tags/list") == ["repository:a/b:pull"]
    assert scopes("GET", "/v2/a/manifests/latest") == ["repository:a:pull"]
    assert scopes("HEAD", "/v2/a/manifests/latest") == ["repository:a:pull"]
    assert scopes("PUT", "/v2/a/manifests/latest") == ["repository:a:pull,push"]
    assert scopes("DELETE", "/v2/a/manifests/sha256:00") == ["repository:a:delete"]
    assert scopes("POST", "/v2/a/blobs/uploads/") == ["repository:a:pull,push"]
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        assert scopes(method, "/v2/a/blobs/uploads/some-id") == ["repository:a:pull,push"]
    assert scopes("GET", "/v2/a/blobs/sha256:00") == ["repository:a:pull"]
    assert scopes("DELETE", "/v2/a/blobs/sha256:00") == ["repository:a:delete"]
    assert scopes("GET", "/v2/a/referrers/sha256:00") == ["repository:a:pull"]


def test_a_mount_asks_for_the_source_too_but_only_optionally() -> None:
    assert scopes("POST", "/v2/a/blobs/uploads/", mount="sha256:00", **{"from": "b/c"}) == [
        "repository:a:pull,push", "optional repository:b/c:pull"]
    # An invalid source name never reaches a challenge.
    assert scopes("POST", "/v2/a/blobs/uploads/", mount="sha256:00", **{"from": 'x",error="'}) == [
        "repository:a:pull,push"]


def test_names_match_as_the_router_matches_them() -> None:
    # Starlette's {name:path} is greedy: the repository is "a/manifests/b".
    assert scopes("GET", "/v2/a/manifests/b/manifests/latest") == ["repository:a/manifests/b:pull"]
    assert scopes("GET", "/v2/a/blobs/uploads/x/blobs/sha256:00") == ["repository:a/blobs/uploads/x:pull"]


def test_unknown_routes_and_methods_need_only_a_valid_token() -> None:
    assert needs("GET", "/v2/a/unknown", {}).required == ()
    assert needs("POST", "/v2/a/manifests/latest", {}).required == ()
    assert needs("GET", "/elsewhere", {}).required == ()


def test_invalid_names_are_flagged_not_echoed() -> None:
    n = needs("GET", '/v2/A"B/manifests/latest', {})
    assert n.invalid_name and n.required == ()


def test_parse_scope() -> None:
    assert parse_scope("repository:a/b:pull,push") == [Access("repository", "a/b", frozenset({"pull", "push"}))]
    assert parse_scope("repository:a:pull repository:b:push") == [
        Access("repository", "a", frozenset({"pull"})), Access("repository", "b", frozenset({"push"}))]
    assert parse_scope("registry:catalog:*") == [Access("registry", "catalog", frozenset({"*"}))]
    assert parse_scope("repository(plugin):a:pull")[0].type == "repository"
    assert parse_scope("repository:a:fly") == []  # unknown actions: nothing to grant
    assert parse_scope("") == []


@pytest.mark.parametrize("text", [
    'repository:a":pull', "repository:A:pull", "repository:a/../b:pull", "repository:a",
    "registry:other:*", "user:alice:pull", 'repository:a:pull,"push', "repository:a:pull\r\nX: y",
    "repository:a:", "repository::pull",
])
def test_parse_scope_refuses_what_is_outside_the_grammar(text: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(text)


def test_challenge_merges_scopes_of_one_resource() -> None:
    value = challenge("https://auth/token", "svc", [
        Access("repository", "a", frozenset({"push"})), Access("repository", "a", frozenset({"pull"})),
        Access("repository", "b", frozenset({"pull"}))], "insufficient_scope")
    assert value == ('Bearer realm="https://auth/token",service="svc",'
                     'scope="repository:a:pull,push repository:b:pull",error="insufficient_scope"')
    assert challenge("r", "s", []) == 'Bearer realm="r",service="s"'


def test_grants() -> None:
    grant = Grant.from_claim("alice", [
        {"type": "repository", "name": "a", "actions": ["pull"]},
        {"type": "repository", "name": "b", "actions": ["*"]},
        {"type": "repository", "name": "c", "actions": "pull"},  # malformed: grants nothing
        "junk",
    ])
    assert grant.allows("repository", "a", "pull") and not grant.allows("repository", "a", "push")
    assert grant.allows("repository", "b", "delete")
    assert not grant.allows("repository", "c", "pull")
    assert can_read({"state": {"access": grant}}, "a")
    assert not can_read({"state": {"access": grant}}, "c")
    assert can_read({}, "anything")  # no token auth: nothing to check
