"""Storage paths, key for key those of CNCF distribution, so data directories are interchangeable.

Every argument is a validated name, tag, upload id or `Digest`; nothing here touches the network.
"""

from __future__ import annotations

from pyreg.oci.digest import Digest

ROOT = "/docker/registry/v2"
BLOBS = f"{ROOT}/blobs"
REPOSITORIES = f"{ROOT}/repositories"


def blob_dir(d: Digest) -> str:
    return f"{BLOBS}/{d.algorithm}/{d.encoded[:2]}/{d.encoded}"


def blob_data(d: Digest) -> str:
    return f"{blob_dir(d)}/data"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, d: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_layers/{d.algorithm}/{d.encoded}/link"


def layers(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_layers"


def revision_link(name: str, d: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/revisions/{d.algorithm}/{d.encoded}/link"


def revision_dir(name: str, d: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/revisions/{d.algorithm}/{d.encoded}"


def tags(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags/{tag}/current/link"


def tag_index_link(name: str, tag: str, d: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags/{tag}/index/{d.algorithm}/{d.encoded}/link"


# Referrers are pyreg's own addition; distribution ignores `_`-prefixed folders it does not know.
def referrers(name: str, subject: Digest) -> str:
    return f"{REPOSITORIES}/{name}/_referrers/{subject.algorithm}/{subject.encoded}"


def referrer_link(name: str, subject: Digest, d: Digest) -> str:
    return f"{referrers(name, subject)}/{d.algorithm}/{d.encoded}/link"


def uploads(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/data"


def upload_startedat(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/startedat"
