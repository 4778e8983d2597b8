"""Image references as docker parses and normalises them (distribution's `reference` package).

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [ domain "/" ] path-component ( "/" path-component )*
    domain    := host [ ":" port ]          host: a DNS name, IPv4 or [IPv6]

The first component is a domain when it contains "." or ":", is "localhost", or has uppercase
letters; otherwise the name lives on Docker Hub (`docker.io`), whose one-component names live
under `library/`. `index.docker.io` is an alias of `docker.io`, and Docker Hub's API is served by
`registry-1.docker.io`. Messages match docker's ("invalid reference format: …").
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pyreg.oci.digest import Digest, DigestError
from pyreg.oci.reference import ReferenceError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
NAME_TOTAL_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[_.]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# Patterns, compiled (and cached by `re`) on first use: `pyreg --version` need not pay for them.
# Matched case-insensitively first so that uppercase can be reported as its own error.
_REFERENCE = (
    rf"(?P<name>(?:{_DOMAIN}/)?[a-zA-Z0-9]+(?:{_SEPARATOR}[a-zA-Z0-9]+)*"
    rf"(?:/[a-zA-Z0-9]+(?:{_SEPARATOR}[a-zA-Z0-9]+)*)*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_IDENTIFIER = r"[a-f0-9]{64}"


class InvalidReference(ReferenceError):
    """An image reference that docker would refuse; the message says why, in docker's words."""


class ImageReference(NamedTuple):
    """A fully normalised reference: `domain/path[:tag][@digest]`; immutable and hashable."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def repository(self) -> str:
        """`domain/path`, what `docker images` calls REPOSITORY in full."""
        return f"{self.domain}/{self.path}"

    @property
    def api_host(self) -> str:
        """The host that serves the registry API for this domain."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def reference(self) -> str:
        """What goes in `/v2/<name>/manifests/<reference>`: the digest wins over the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> ImageReference:
        if not re.fullmatch(_TAG, tag):
            raise InvalidReference("invalid tag format")
        return self._replace(tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> ImageReference:
        return self._replace(tag=None, digest=digest)

    def familiar(self) -> str:
        """The short form docker prints: `busybox:latest`, `user/img`, `host:5000/x`."""
        path = self.path
        if self.domain == DOCKER_HUB:
            name = path.removeprefix("library/") if path.count("/") == 1 else path
        else:
            name = self.repository
        return name + self._suffix()

    @property
    def familiar_repository(self) -> str:
        return ImageReference(self.domain, self.path).familiar()

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        return out + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.repository + self._suffix()


def split_domain(name: str, default_domain: str = DOCKER_HUB) -> tuple[str, str]:
    """Docker's splitDockerDomain, with the default registry made configurable.

    `library/` is Docker Hub's convention only: another default registry keeps the name as given.
    """
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"
                   and first.lower() == first):
        domain, remainder = default_domain, name
    else:
        domain, remainder = first, rest
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = f"library/{remainder}"
    return domain, remainder


def parse_reference(
    text: str, default_domain: str = DOCKER_HUB, default_tag: str | None = DEFAULT_TAG
) -> ImageReference:
    """Parse and normalise like `docker pull`: `busybox` is `docker.io/library/busybox:latest`.

    A reference with a digest and no tag gets no default tag; `default_tag=None` leaves a bare name
    without a tag (as `docker pull -a` and `docker push REPO` need).
    """
    if not text:
        raise InvalidReference("invalid reference format: repository name must have at least one component")
    if re.fullmatch(_IDENTIFIER, text):
        raise InvalidReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    m = re.fullmatch(_REFERENCE, text)
    if m is None:
        raise InvalidReference(f"invalid reference format: {text!r}")
    domain, path = split_domain(m["name"], default_domain)
    if not re.fullmatch(_DOMAIN, domain):
        raise InvalidReference(f"invalid reference format: {text!r}")
    if path.lower() != path:
        raise InvalidReference("invalid reference format: repository name must be lowercase")
    if not re.fullmatch(_PATH, path):
        raise InvalidReference(f"invalid reference format: {text!r}")
    if len(domain) + 1 + len(path) > NAME_TOTAL_MAX:
        raise InvalidReference(
            f"invalid reference format: repository name must not be more than {NAME_TOTAL_MAX} characters"
        )
    digest = None
    if m["digest"]:
        try:
            digest = Digest.parse(m["digest"])
        except DigestError as e:
            raise InvalidReference(f"invalid reference format: {e}") from None
    tag = m["tag"]
    if tag is None and digest is None:
        tag = default_tag
    return ImageReference(domain, path, tag, digest)
