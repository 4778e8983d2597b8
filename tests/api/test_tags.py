"""GET /v2/<name>/tags/list: sorted, paginated with n/last and Link."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.api.helpers import OCI_MANIFEST, Api, assert_error, unique_repo

TAGS = ["v10", "B", "latest", "_x", "a", "v2", "1.0", "a-b", "a.b", "a_b", "Z9"]


@pytest.fixture(scope="module")
def tagged(api: Api) -> str:
    repo = unique_repo("tags")
    body, _ = api.push_image(repo)
    for tag in TAGS:
        assert api.put_manifest(repo, tag, body, OCI_MANIFEST).status_code == 201
    return repo


def next_link(r: httpx.Response) -> str | None:
    link = r.headers.get("link")
    if link is None:
        return None
    m = re.fullmatch(r'\s*<([^>]+)>\s*;\s*rel="?next"?\s*', link)
    assert m, f"malformed Link header {link!r}"
    return m.group(1)


def test_tags_list_is_sorted_and_complete(api: Api, tagged: str) -> None:
    r = api.tags(tagged)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/json"
    assert r.json() == {"name": tagged, "tags": sorted(TAGS)}
    assert next_link(r) is None


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10])
def test_pagination_with_n_and_link(api: Api, tagged: str, n: int) -> None:
    expected = sorted(TAGS)
    seen: list[str] = []
    r = api.tags(tagged, n=n)
    pages = 0
    while True:
        assert r.status_code == 200, r.text
        page = r.json()["tags"]
        assert page == expected[len(seen) : len(seen) + n]
        seen += page
        pages += 1
        link = next_link(r)
        if len(seen) < len(expected):
            assert link is not None, f"no Link after {seen}"
            parts = urlsplit(link)
            assert parts.path == f"/v2/{tagged}/tags/list"
            q = parse_qs(parts.query)
            assert q["n"] == [str(n)]
            assert q["last"] == [seen[-1]]
            r = api.client.get(link)
        else:
            assert link is None, f"Link {link} though no tags remain"
            break
    assert seen == expected
    assert pages == -(-len(expected) // n)


def test_n_equal_to_the_number_of_tags_gives_no_link(api: Api, tagged: str) -> None:
    r = api.tags(tagged, n=len(TAGS))
    assert r.json()["tags"] == sorted(TAGS)
    assert next_link(r) is None


def test_n_larger_than_the_number_of_tags(api: Api, tagged: str) -> None:
    r = api.tags(tagged, n=1000)
    assert r.json()["tags"] == sorted(TAGS)
    assert next_link(r) is None


def test_last_alone_starts_after_it(api: Api, tagged: str) -> None:
    expected = sorted(TAGS)
    r = api.tags(tagged, last="a")
    assert r.status_code == 200
    assert r.json()["tags"] == [t for t in expected if t > "a"]


def test_last_not_itself_a_tag(api: Api, tagged: str) -> None:
    r = api.tags(tagged, last="a0", n=3)
    assert r.json()["tags"] == [t for t in sorted(TAGS) if t > "a0"][:3]


def test_last_after_every_tag_gives_an_empty_list(api: Api, tagged: str) -> None:
    r = api.tags(tagged, last="zzz")
    assert r.status_code == 200
    assert r.json()["tags"] == []
    assert next_link(r) is None


def test_n_zero_gives_an_empty_list(api: Api, tagged: str) -> None:
    r = api.tags(tagged, n=0)
    assert r.status_code == 200
    assert r.json()["tags"] == []


@pytest.mark.parametrize("n", ["-1", "abc", "1.5"])
def test_invalid_n_is_rejected(api: Api, tagged: str, n: str) -> None:
    r = api.client.get(f"/v2/{tagged}/tags/list", params={"n": n})
    assert r.status_code == 400, (r.status_code, r.text)
    assert_error(r, 400)


def test_unknown_repository_is_404_name_unknown(api: Api) -> None:
    assert_error(api.tags(unique_repo("nothere")), 404, "NAME_UNKNOWN")


def test_repository_with_blobs_but_no_tags(api: Api) -> None:
    repo = unique_repo("untagged")
    _body, _d = api.push_image(repo)  # pushed by digest only
    r = api.tags(repo)
    # Distribution answers 200 with an empty list or 404 once nothing is tagged; both say "no tags".
    if r.status_code == 200:
        assert r.json()["tags"] in ([], None)
    else:
        assert_error(r, 404, "NAME_UNKNOWN")
