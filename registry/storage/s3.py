"""S3 storage driver: distribution's `s3` driver, key for key, on any S3-compatible server.

A path's key is `rootdirectory` (without its slashes) followed by the path, as distribution's
driver names them, so that both can serve the same bucket. Directories are implicit: a directory
exists while a key lies under its prefix.

- `put_content` is one PutObject: S3 makes an object visible whole, or not at all.
- `move` copies inside S3 (CopyObject, or UploadPartCopy in parallel ranges above
  `multipartcopythresholdsize`) and then deletes the source: no byte passes through the registry.
  S3 has no rename, and a multipart upload's key is fixed when it is created, before the blob's
  digest is known, so an upload is committed to its blob by one server-side copy.
- `writer` is a multipart upload whose state lives in the bucket (see `s3_writer`), so that any
  process or replica continues any upload; until committed its bytes cannot be read.
- `redirect_url` is a presigned GET (or HEAD) URL valid 20 minutes, as distribution's.
- `move` moves files, not directories (as distribution's s3 driver; the registry moves only files).
- `delete` of a directory removes its keys in batches of 1000 and aborts the multipart uploads
  under it (an upload cancelled or purged).

Names in the bucket that are not paths of the driver's grammar (another tool's "dir/" markers,
keys with other characters) are left out of listings.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Mapping
from typing import Any

from pyreg.registry.storage.driver import (
    FileInfo,
    InvalidPath,
    PathNotFound,
    StorageError,
    check_path,
)
from pyreg.registry.storage.s3_bucket import (
    MIN_PART,
    THREADS,
    RangeNotSatisfiable,
    S3Bucket,
    S3Options,
)
from pyreg.registry.storage.s3_writer import CONTENT_TYPE, S3Writer, pending_state

READ_CHUNK = 1 << 20  # bytes per read when streaming an object out
DELETE_BATCH = 1000  # S3's limit for DeleteObjects
REDIRECT_EXPIRY = 20 * 60  # seconds, as distribution's


def _valid(path: str) -> bool:
    try:
        check_path(path)
    except InvalidPath:
        return False
    return True


def _mtime(obj: Mapping[str, Any]) -> float:
    return float(obj["LastModified"].timestamp())


class S3Driver:
    name = "s3"

    def __init__(self, options: S3Options, client: Any | None = None) -> None:
        self.options = options
        self.bucket = S3Bucket(options, client)

    @classmethod
    def from_config(cls, params: Mapping[str, Any]) -> S3Driver:
        """From the `storage.s3` section of a distribution configuration."""
        return cls(S3Options.from_params(params))

    @property
    def client(self) -> Any:
        """The boto3 client: tests hook its events to see which calls are made."""
        return self.bucket.client

    def close(self) -> None:
        self.bucket.close()

    # -- whole files ---------------------------------------------------------------------------

    async def get_content(self, path: str) -> bytes:
        key = self.bucket.key(check_path(path))

        def get() -> bytes:
            obj = self.client.get_object(Bucket=self.bucket.name, Key=key)
            with obj["Body"] as body:
                if pending_state(obj.get("Metadata")) is not None:
                    raise PathNotFound(path)  # an uncommitted writer's file
                data: bytes = body.read()
                return data

        return await self.bucket.run(path, get)

    async def put_content(self, path: str, data: bytes) -> None:
        await self.bucket.call(check_path(path), "put_object", Key=self.bucket.key(path),
                               Body=data, ContentType=CONTENT_TYPE)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        key = self.bucket.key(check_path(path))
        if length == 0:
            await self._stat_file(path)
            return
        params: dict[str, Any] = {"Key": key}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            params["Range"] = f"bytes={offset}-{end}"
        try:
            obj = await self.bucket.call(path, "get_object", **params)
        except RangeNotSatisfiable:
            await self._stat_file(path)  # at or past the end of an existing file: no bytes
            return
        body = obj["Body"]
        try:
            if pending_state(obj.get("Metadata")) is not None:
                raise PathNotFound(path)
            while chunk := await self.bucket.run(path, body.read, READ_CHUNK):
                yield chunk
        finally:
            body.close()  # returns the connection, or drops it when the stream was left early

    async def _stat_file(self, path: str) -> None:
        head = await self.bucket.head(path)
        if head is None or pending_state(head.get("Metadata")) is not None:
            raise PathNotFound(path)

    async def writer(self, path: str, append: bool = False) -> S3Writer:
        return await S3Writer.open(self.bucket, check_path(path), append)

    # -- the tree ------------------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        head = await self.bucket.head(check_path(path))
        if head is not None:
            size = int(head["ContentLength"])
            state = pending_state(head.get("Metadata"))
            if state is not None:
                size += state.offset  # an uncommitted writer's file: its parts, then its tail
            return FileInfo(path, size, _mtime(head), False)
        listed = await self.bucket.call(path, "list_objects_v2",
                                        Prefix=self.bucket.key(path) + "/", MaxKeys=1)
        contents = listed.get("Contents", [])
        if not contents:
            raise PathNotFound(path)
        return FileInfo(path, 0, _mtime(contents[0]), True)

    async def list(self, path: str) -> builtins.list[str]:
        prefix = self.bucket.key(check_path(path)) + "/"
        out: set[str] = set()
        for page in await self.bucket.pages(path, "list_objects_v2", Prefix=prefix,
                                            Delimiter="/"):
            names = [o["Key"] for o in page.get("Contents", [])]
            names += [p["Prefix"].rstrip("/") for p in page.get("CommonPrefixes", [])]
            out.update(p for p in map(self.bucket.path, names) if _valid(p))
        if not out:
            raise PathNotFound(path)
        return sorted(out)

    async def _files_under(self, path: str) -> builtins.list[dict[str, Any]]:
        prefix = self.bucket.key(path) + "/"
        pages = await self.bucket.pages(path, "list_objects_v2", Prefix=prefix)
        return [o for page in pages for o in page.get("Contents", [])]

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        files: dict[str, FileInfo] = {}
        for obj in await self._files_under(check_path(path)):
            p = self.bucket.path(obj["Key"])
            if _valid(p):
                files[p] = FileInfo(p, int(obj["Size"]), _mtime(obj), False)
        if not files:
            raise PathNotFound(path)
        for info in _tree_order(path, files):
            yield info

    async def move(self, source: str, dest: str) -> None:
        check_path(source)
        check_path(dest)
        head = await self.bucket.head(source)
        if head is None:
            raise PathNotFound(source)
        if pending_state(head.get("Metadata")) is not None:
            raise StorageError(f"cannot move {source}: its writer has not committed it")
        if source == dest:
            return
        size = int(head["ContentLength"])
        if size <= self.options.copy_threshold:
            await self.bucket.call(dest, "copy_object", Key=self.bucket.key(dest),
                                   CopySource={"Bucket": self.bucket.name,
                                               "Key": self.bucket.key(source)})
        else:
            await self._multipart_copy(source, dest, size)
        await self.bucket.call(source, "delete_object", Key=self.bucket.key(source))

    async def _multipart_copy(self, source: str, dest: str, size: int) -> None:
        key = self.bucket.key(dest)
        created = await self.bucket.call(dest, "create_multipart_upload", Key=key,
                                         ContentType=CONTENT_TYPE)
        upload_id = created["UploadId"]
        step = max(self.options.copy_chunksize, MIN_PART)
        ranges = [(start, min(start + step, size)) for start in range(0, size, step)]
        gate = asyncio.Semaphore(min(self.options.copy_concurrency, THREADS))
        src = {"Bucket": self.bucket.name, "Key": self.bucket.key(source)}

        async def copy(number: int, first: int, end: int) -> dict[str, Any]:
            async with gate:
                done = await self.bucket.call(
                    dest, "upload_part_copy", Key=key, UploadId=upload_id, PartNumber=number,
                    CopySource=src, CopySourceRange=f"bytes={first}-{end - 1}",
                )
            return {"PartNumber": number, "ETag": done["CopyPartResult"]["ETag"]}

        try:
            parts = await asyncio.gather(
                *(copy(n, first, end) for n, (first, end) in enumerate(ranges, 1))
            )
            await self.bucket.call(dest, "complete_multipart_upload", Key=key,
                                   UploadId=upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            await asyncio.shield(self.bucket.call(dest, "abort_multipart_upload", Key=key,
                                                  UploadId=upload_id))
            raise

    async def delete(self, path: str) -> None:
        key = self.bucket.key(check_path(path))
        keys = [o["Key"] for o in await self._files_under(path)]
        if keys:
            # Writers' multipart uploads go with their files (an upload cancelled or purged).
            await self.bucket.abort_uploads(path, key + "/")
        else:
            head = await self.bucket.head(path)
            if head is None:
                raise PathNotFound(path)
            state = pending_state(head.get("Metadata"))
            if state is not None and state.upload_id is not None:
                await self.bucket.call(path, "abort_multipart_upload", Key=key,
                                       UploadId=state.upload_id)
            keys = [key]
        await self._delete_keys(path, keys)
        # Servers built on a file tree (SeaweedFS) keep emptied directories and list them as
        # common prefixes, where S3's vanish with their last key. Deleting the key "dir/" removes
        # an empty one; it is a no-op on S3 proper, and on a directory that is not empty.
        if keys != [key]:
            folders = {key + "/"}
            for k in keys:
                parts = k[len(key) + 1 :].split("/")[:-1]
                folders.update(f"{key}/{'/'.join(parts[:i])}/" for i in range(1, len(parts) + 1))
            await self._delete_keys(path, sorted(folders, key=lambda f: -f.count("/")))
        await self._prune_empty_parents(path)

    async def _prune_empty_parents(self, path: str) -> None:
        """Remove the directories a delete left empty, up to the first one that is not."""
        parent = path.rpartition("/")[0]
        while parent:
            prefix = self.bucket.key(parent) + "/"
            listed = await self.bucket.call(parent, "list_objects_v2", Prefix=prefix, MaxKeys=1)
            if listed.get("Contents"):
                return
            await self._delete_keys(parent, [prefix])
            parent = parent.rpartition("/")[0]

    async def _delete_keys(self, path: str, keys: builtins.list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start : start + DELETE_BATCH]]
            done = await self.bucket.call(path, "delete_objects",
                                          Delete={"Objects": batch, "Quiet": True})
            if done.get("Errors"):
                error = done["Errors"][0]
                raise StorageError(f"{path}: S3 could not delete {error.get('Key')}: "
                                   f"{error.get('Code')} {error.get('Message', '')}")

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        operation = {"GET": "get_object", "HEAD": "head_object"}.get(method)
        key = self.bucket.key(check_path(path))
        if operation is None:
            return None
        # Signing is local computation (~0.25 ms): no request leaves the process, and a thread
        # hop would cost as much.
        url: str = self.client.generate_presigned_url(
            operation, Params={"Bucket": self.bucket.name, "Key": key},
            ExpiresIn=REDIRECT_EXPIRY,
        )
        return url


def _tree_order(root: str, files: dict[str, FileInfo]) -> builtins.list[FileInfo]:
    """The filesystem driver's walk order: a directory's subdirectories, then its files (each
    sorted), then the same for each subdirectory in turn. A directory's mtime is its newest file's.
    """
    children: dict[str, set[str]] = {root: set()}
    dir_mtime: dict[str, float] = {}
    for p, info in files.items():
        child = p
        while child != root:
            parent = child.rpartition("/")[0]
            children.setdefault(parent, set()).add(child)
            if parent != root:
                dir_mtime[parent] = max(dir_mtime.get(parent, 0.0), info.mtime)
            child = parent

    def visit(directory: str) -> builtins.list[FileInfo]:
        entries = sorted(children.get(directory, ()))
        dirs = [d for d in entries if d in children]
        out = [FileInfo(d, 0, dir_mtime[d], True) for d in dirs]
        out += [files[f] for f in entries if f not in children]
        for d in dirs:
            out += visit(d)
        return out

    return visit(root)


__all__ = ["S3Driver", "S3Options", "S3Writer"]
