"""Every error the client raises on purpose; the command line prints each as one line.

    ClientError
     ├── ConfigError             a config file (pyreg's config.toml, docker's config.json) is invalid
     ├── CredentialsError        a credential helper failed, or credentials would leak
     ├── TransportError          the registry could not be talked to
     │    ├── Unreachable        connection refused, name not resolved, timeout
     │    └── TLSFailure         certificate or handshake failure
     ├── ResponseError           the registry answered with an error status
     │    ├── Unauthorized       401: no or wrong credentials
     │    ├── Denied             403
     │    ├── NotFound           404: unknown repository, manifest, blob or upload
     │    └── TooManyRequests    429, after retries
     ├── IntegrityError          content that does not match its digest or size
     ├── PlatformNotFound        an index without the requested platform
     └── StoreError              the local image store
          ├── ImageNotFound      no such image in the store
          └── ImageInUse         rmi of an image that other tags still need (without --force)

References that do not parse raise `pyreg.oci.imageref.InvalidReference` (an `OCIError`).
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error raised by pyreg.client."""


class ConfigError(ClientError):
    pass


class CredentialsError(ClientError):
    pass


class TransportError(ClientError):
    pass


class Unreachable(TransportError):
    pass


class TLSFailure(TransportError):
    pass


class ResponseError(ClientError):
    """An error status; `code` is the first distribution error code in the body, if any;
    `retry_after` the seconds a `Retry-After` header asked to wait (429, 503), if any."""

    def __init__(self, message: str, status: int = 0, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class Unauthorized(ResponseError):
    pass


class Denied(ResponseError):
    pass


class NotFound(ResponseError):
    pass


class TooManyRequests(ResponseError):
    pass


class IntegrityError(ClientError):
    pass


class ResponseTooLarge(ClientError):
    pass


class PlatformNotFound(ClientError):
    pass


class StoreError(ClientError):
    pass


class ImageNotFound(StoreError):
    pass


class ImageInUse(StoreError):
    pass
