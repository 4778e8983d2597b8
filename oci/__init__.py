"""Shared OCI types: digests, media types, repository names and tags, manifests.

Used by the registry, the client and the runtime alike.

    OCIError
     ├── DigestError      a digest string that does not parse or an unsupported algorithm
     ├── NameError_       a repository name, tag or reference that does not parse
     └── ManifestError    a manifest that is not valid JSON or not of its media type
"""

from __future__ import annotations


class OCIError(ValueError):
    """Base of every error raised by pyreg.oci."""
