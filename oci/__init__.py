"""Shared OCI types: digests, media types, repository names and tags, manifests.

Used by the registry, the client and the runtime alike.

    OCIError
     ├── DigestError      a digest string that does not parse or an unsupported algorithm
     ├── NameError_       a repository name, tag or reference that does not parse
     └── ManifestError    a manifest that is not valid JSON or not of its media type

The value types (`Digest`, `ImageReference`, `Descriptor`, `Manifest`, `Platform`) are NamedTuples
rather than dataclasses, for the client's start-up time: importing `dataclasses` costs 5 ms and
creating each dataclass 0.5 ms more. Being tuples, they also compare equal to plain tuples of the
same fields, iterate, are taken by `%` for a tuple of arguments, and `json.dumps` writes them as
lists: format them with f-strings or `str`, serialise them with `str` or `to_json`.
"""

from __future__ import annotations


class OCIError(ValueError):
    """Base of every error raised by pyreg.oci."""
