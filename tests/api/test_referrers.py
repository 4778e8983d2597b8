"""OCI 1.1 referrers: OCI-Subject on push, GET /v2/<name>/referrers/<digest>, filtering."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.helpers import (
    EMPTY_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    Api,
    assert_error,
    config_bytes,
    descriptor,
    digest_of,
    dumps,
    empty_descriptor,
    oci_manifest,
    random_bytes,
    unique_repo,
)

SBOM = "application/vnd.example.sbom.v1+json"
SIG = "application/vnd.example.signature.v1"
CONFIG_TYPED = "application/vnd.example.config-typed.v1+json"


def _subject(api: Api, repo: str) -> tuple[bytes, dict[str, Any]]:
    body, d = api.push_image(repo, "subject")
    return body, {"mediaType": OCI_MANIFEST, "digest": d, "size": len(body)}


def _referrer(
    api: Api,
    repo: str,
    subject: dict[str, Any],
    artifact_type: str | None,
    note: str,
    config_type: str | None = None,
) -> tuple[bytes, str]:
    """An artifact manifest pointing at `subject`; returns (body, digest)."""
    data = random_bytes(40)
    api.push_blobs(repo, EMPTY_JSON, data)
    m: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type is not None:
        m["artifactType"] = artifact_type
    if config_type is not None:
        cfg = config_bytes()
        api.push_blob(repo, cfg)
        m["config"] = descriptor(cfg, config_type)
    else:
        m["config"] = empty_descriptor()
    m["layers"] = [descriptor(data, "application/octet-stream")]
    m["subject"] = subject
    m["annotations"] = {"org.example.note": note}
    body = dumps(m)
    d = digest_of(body)
    r = api.put_manifest(repo, d, body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    assert r.headers.get("oci-subject") == subject["digest"]
    return body, d


def _referrers(
    api: Api, repo: str, digest: str, **params: str
) -> tuple[dict[str, Any], dict[str, str]]:
    r = api.client.get(f"/v2/{repo}/referrers/{digest}", params=params or None)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == OCI_INDEX
    body = r.json()
    assert body["schemaVersion"] == 2
    assert body.get("mediaType") == OCI_INDEX
    assert isinstance(body["manifests"], list)
    return body, dict(r.headers)


def test_push_with_subject_answers_oci_subject_and_is_listed(api: Api, repo: str) -> None:
    _, subject = _subject(api, repo)
    sbom, sbom_d = _referrer(api, repo, subject, SBOM, "sbom")
    sig, sig_d = _referrer(api, repo, subject, SIG, "sig")
    index, _ = _referrers(api, repo, subject["digest"])
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert set(by_digest) == {sbom_d, sig_d}
    assert by_digest[sbom_d] == {
        "mediaType": OCI_MANIFEST,
        "digest": sbom_d,
        "size": len(sbom),
        "artifactType": SBOM,
        "annotations": {"org.example.note": "sbom"},
    }
    assert by_digest[sig_d]["artifactType"] == SIG
    assert by_digest[sig_d]["size"] == len(sig)
    assert by_digest[sig_d]["annotations"] == {"org.example.note": "sig"}


def test_artifact_type_falls_back_to_config_media_type(api: Api, repo: str) -> None:
    _, subject = _subject(api, repo)
    _, d = _referrer(api, repo, subject, None, "typed-by-config", config_type=CONFIG_TYPED)
    index, _ = _referrers(api, repo, subject["digest"])
    [entry] = index["manifests"]
    assert entry["digest"] == d
    assert entry["artifactType"] == CONFIG_TYPED


def test_index_with_subject_is_a_referrer(api: Api, repo: str) -> None:
    _, subject = _subject(api, repo)
    child, child_d = api.push_image(repo)
    idx = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.example.bundle",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child_d, "size": len(child)}],
        "subject": subject,
        "annotations": {"org.example.note": "index"},
    }
    body = dumps(idx)
    d = digest_of(body)
    r = api.put_manifest(repo, d, body, OCI_INDEX)
    assert r.status_code == 201, r.text
    assert r.headers.get("oci-subject") == subject["digest"]
    index, _ = _referrers(api, repo, subject["digest"])
    [entry] = index["manifests"]
    assert entry == {
        "mediaType": OCI_INDEX,
        "digest": d,
        "size": len(body),
        "artifactType": "application/vnd.example.bundle",
        "annotations": {"org.example.note": "index"},
    }


def test_push_without_subject_has_no_oci_subject_header(api: Api, repo: str) -> None:
    body, _d = api.push_image(repo)
    r = api.put_manifest(repo, "again", body, OCI_MANIFEST)
    assert r.status_code == 201
    assert "oci-subject" not in r.headers


def test_artifact_type_filter(api: Api, repo: str) -> None:
    _, subject = _subject(api, repo)
    _, a = _referrer(api, repo, subject, SBOM, "one")
    _, b = _referrer(api, repo, subject, SBOM, "two")
    _, c = _referrer(api, repo, subject, SIG, "three")
    index, headers = _referrers(api, repo, subject["digest"], artifactType=SBOM)
    assert headers.get("oci-filters-applied") == "artifactType"
    assert {m["digest"] for m in index["manifests"]} == {a, b}
    index, headers = _referrers(api, repo, subject["digest"], artifactType=SIG)
    assert [m["digest"] for m in index["manifests"]] == [c]
    index, headers = _referrers(api, repo, subject["digest"], artifactType="application/none")
    assert index["manifests"] == []
    assert headers.get("oci-filters-applied") == "artifactType"
    _, headers = _referrers(api, repo, subject["digest"])
    assert "oci-filters-applied" not in headers


def test_subject_without_referrers_gives_an_empty_index(api: Api, repo: str) -> None:
    _, subject = _subject(api, repo)
    index, _ = _referrers(api, repo, subject["digest"])
    assert index["manifests"] == []


def test_unknown_subject_in_known_repository_gives_an_empty_index(api: Api, repo: str) -> None:
    api.push_image(repo, "x")
    index, _ = _referrers(api, repo, digest_of(random_bytes(20)))
    assert index["manifests"] == []


def test_subject_need_not_exist(api: Api, repo: str) -> None:
    config = config_bytes()
    layer = random_bytes(25)
    api.push_blobs(repo, config, layer)
    subject_body = dumps(oci_manifest(config, [layer]))
    sd = digest_of(subject_body)
    absent: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": sd, "size": len(subject_body)}
    _, d = _referrer(api, repo, absent, SBOM, "orphan")
    index, _ = _referrers(api, repo, sd)
    assert [m["digest"] for m in index["manifests"]] == [d]
    # Pushing the subject afterwards keeps the referrer listed.
    assert api.put_manifest(repo, "later", subject_body, OCI_MANIFEST).status_code == 201
    index, _ = _referrers(api, repo, sd)
    assert [m["digest"] for m in index["manifests"]] == [d]


def test_deleting_a_referrer_removes_it_from_the_list(api: Api, repo: str) -> None:
    _, subject = _subject(api, repo)
    _, keep = _referrer(api, repo, subject, SBOM, "keep")
    _, gone = _referrer(api, repo, subject, SBOM, "gone")
    assert api.client.delete(f"/v2/{repo}/manifests/{gone}").status_code == 202
    index, _ = _referrers(api, repo, subject["digest"])
    assert [m["digest"] for m in index["manifests"]] == [keep]


def test_referrers_are_scoped_to_the_repository(api: Api, repo: str) -> None:
    _, subject = _subject(api, repo)
    _referrer(api, repo, subject, SBOM, "here")
    other = unique_repo("ref-other")
    api.push_image(other, "x")
    index, _ = _referrers(api, other, subject["digest"])
    assert index["manifests"] == []


def test_referrers_of_a_tagged_referrer_push(api: Api, repo: str) -> None:
    """A referrer pushed by tag is listed too, once."""
    _, subject = _subject(api, repo)
    api.push_blob(repo, EMPTY_JSON)
    m = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIG,
        "config": empty_descriptor(),
        "layers": [empty_descriptor()],
        "subject": subject,
    }
    body = dumps(m)
    r = api.put_manifest(repo, "sig-tag", body, OCI_MANIFEST)
    assert r.status_code == 201
    assert r.headers.get("oci-subject") == subject["digest"]
    index, _ = _referrers(api, repo, subject["digest"])
    assert [e["digest"] for e in index["manifests"]] == [digest_of(body)]
    assert "annotations" not in index["manifests"][0] or index["manifests"][0]["annotations"] in (
        {},
        None,
    )


@pytest.mark.parametrize("bad", ["sha256:" + "z" * 64, "sha256:abc", "latest"])
def test_referrers_with_invalid_digest_is_400(api: Api, repo: str, bad: str) -> None:
    api.push_image(repo, "x")
    r = api.client.get(f"/v2/{repo}/referrers/{bad}")
    assert_error(r, {400, 404}, {"DIGEST_INVALID", "MANIFEST_UNKNOWN", "NAME_UNKNOWN"})
    if r.status_code == 404:
        # Only a router that cannot match a non-digest may answer 404; a digest-shaped value is 400.
        assert not bad.startswith("sha256:"), r.text


def test_referrers_response_is_valid_json_index(api: Api, repo: str) -> None:
    _, subject = _subject(api, repo)
    _referrer(api, repo, subject, SBOM, "j")
    r = api.client.get(f"/v2/{repo}/referrers/{subject['digest']}")
    parsed = json.loads(r.content)
    for entry in parsed["manifests"]:
        assert {"mediaType", "digest", "size"} <= set(entry)
