"""GET /v2/: the version check."""

from __future__ import annotations

from tests.api.helpers import Api


def test_version_check_answers_200_with_api_version_header(api: Api) -> None:
    r = api.client.get("/v2/")
    assert r.status_code == 200
    assert r.headers.get("docker-distribution-api-version") == "registry/2.0"


def test_version_check_without_trailing_slash_is_not_an_error_of_the_server(api: Api) -> None:
    r = api.client.get("/v2")
    # A redirect to /v2/ or the answer itself; never a server error.
    assert r.status_code in (200, 301, 307, 308, 404), r.status_code


def test_version_check_head(api: Api) -> None:
    r = api.client.head("/v2/")
    assert r.status_code == 200
    assert r.headers.get("docker-distribution-api-version") == "registry/2.0"
    assert r.content == b""
