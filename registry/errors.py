"""Errors of the distribution API, each registered once with its code and HTTP status.

Rendered centrally as `{"errors": [{"code", "message", "detail"}]}`.

    RegistryError
     ├── BlobUnknown            BLOB_UNKNOWN            404
     ├── BlobUploadInvalid      BLOB_UPLOAD_INVALID     400
     ├── BlobUploadUnknown      BLOB_UPLOAD_UNKNOWN     404
     ├── DigestInvalid          DIGEST_INVALID          400
     ├── ManifestBlobUnknown    MANIFEST_BLOB_UNKNOWN   400
     ├── ManifestInvalid        MANIFEST_INVALID        400
     ├── ManifestUnknown        MANIFEST_UNKNOWN        404
     ├── NameInvalid            NAME_INVALID            400
     ├── NameUnknown            NAME_UNKNOWN            404
     ├── SizeInvalid            SIZE_INVALID            400
     ├── PaginationNumberInvalid PAGINATION_NUMBER_INVALID 400
 ├── RangeInvalid           BLOB_UPLOAD_INVALID     416
     ├── PayloadTooLarge        SIZE_INVALID            413
     ├── Unauthorized           UNAUTHORIZED            401
     ├── Denied                 DENIED                  403
     ├── Unsupported            UNSUPPORTED             405
     ├── TooManyRequests        TOOMANYREQUESTS         429
     └── Unavailable            UNAVAILABLE             503
"""

from __future__ import annotations

import json
from typing import Any, ClassVar


class RegistryError(Exception):
    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "unknown error"

    def __init__(
        self,
        message: str | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.detail = detail
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> bytes:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return json.dumps({"errors": [err]}).encode()


class BlobUnknown(RegistryError):
    code, status, default_message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"


class BlobUploadUnknown(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code, status, default_message = (
        "DIGEST_INVALID",
        400,
        "provided digest did not match uploaded content",
    )


class ManifestBlobUnknown(RegistryError):
    code, status, default_message = "MANIFEST_BLOB_UNKNOWN", 400, "manifest references unknown blob"


class ManifestInvalid(RegistryError):
    code, status, default_message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestUnknown(RegistryError):
    code, status, default_message = "MANIFEST_UNKNOWN", 404, "manifest unknown"


class NameInvalid(RegistryError):
    code, status, default_message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(RegistryError):
    code, status, default_message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(RegistryError):
    code, status, default_message = "SIZE_INVALID", 400, "provided length did not match content length"


class PaginationNumberInvalid(RegistryError):
    code, status, default_message = "PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"


class RangeInvalid(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_INVALID", 416, "requested range not satisfiable"


class PayloadTooLarge(RegistryError):
    code, status, default_message = "SIZE_INVALID", 413, "payload too large"


class Unauthorized(RegistryError):
    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"


class Denied(RegistryError):
    code, status, default_message = "DENIED", 403, "requested access to the resource is denied"


class Unsupported(RegistryError):
    code, status, default_message = "UNSUPPORTED", 405, "the operation is unsupported"


class TooManyRequests(RegistryError):
    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"


class Unavailable(RegistryError):
    code, status, default_message = "UNAVAILABLE", 503, "service unavailable"
