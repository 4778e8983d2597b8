"""GET /v2/_catalog: sorted, paginated with n/last and Link. Each test has a registry of its own."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.api.helpers import Api
from tests.api.test_tags import next_link

REPOS = ["zeta", "alpha/beta", "alpha", "alpha-x", "alpha/beta/gamma", "m0", "b.c", "a_b"]


def _populate(api: Api) -> list[str]:
    for repo in REPOS:
        api.push_image(repo, "latest", layers=1)
    return sorted(REPOS)


def test_catalog_is_sorted_and_paginated(fresh_api: Api) -> None:
    api = fresh_api
    assert api.client.get("/v2/_catalog").json()["repositories"] == []
    expected = _populate(api)
    r = api.client.get("/v2/_catalog")
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/json"
    assert r.json() == {"repositories": expected}
    assert next_link(r) is None

    for n in (1, 3, len(expected) - 1):
        seen: list[str] = []
        r = api.client.get("/v2/_catalog", params={"n": n})
        while True:
            assert r.status_code == 200
            page = r.json()["repositories"]
            assert page == expected[len(seen) : len(seen) + n]
            seen += page
            link = next_link(r)
            if len(seen) < len(expected):
                assert link is not None
                parts = urlsplit(link)
                assert parts.path == "/v2/_catalog"
                q = parse_qs(parts.query)
                assert q["n"] == [str(n)] and q["last"] == [seen[-1]]
                r = api.client.get(link)
            else:
                assert link is None, f"n={n}: Link {link} though nothing remains"
                break
        assert seen == expected

    r = api.client.get("/v2/_catalog", params={"n": len(expected)})
    assert r.json()["repositories"] == expected
    assert next_link(r) is None
    r = api.client.get("/v2/_catalog", params={"last": "alpha/beta"})
    assert r.json()["repositories"] == [x for x in expected if x > "alpha/beta"]
