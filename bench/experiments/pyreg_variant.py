"""Run pyreg's server with experimental monkeypatches (no file under registry/ is changed).

BODY_QUEUE=1: uvicorn hands each received body piece over as its own ASGI message (body_queue.py).
PUMP=list: uploads gather body pieces in a list; one executor job per 4 MiB batch hashes them
           and writes them with os.writev (no bytearray concatenation, one thread hop per batch).
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyreg.registry.services.uploads as up
import pyreg.registry.storage.filesystem as fs

if os.environ.get("MALLOPT") == "1":  # glibc: keep freed large buffers (profile.md, suggestion 1)
    import ctypes

    _libc = ctypes.CDLL("libc.so.6")
    _libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    _libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
if os.environ.get("BODY_QUEUE") == "1":
    import body_queue  # noqa: F401
if os.environ.get("COALESCE") == "1":
    import coalesce  # noqa: F401
if os.environ.get("READ_CHUNK"):
    fs.READ_CHUNK = int(os.environ["READ_CHUNK"])
if os.environ.get("NOSFR") == "1":
    fs._start_writeback = None


def writev_sync(self, chunks):
    views = [memoryview(c) for c in chunks]
    total = sum(len(v) for v in views)
    with fs._errors(self._path):
        while views:
            n = os.writev(self._fd, views[:1024])
            self._size += n
            while n:
                if n >= len(views[0]):
                    n -= len(views[0])
                    views.pop(0)
                else:
                    views[0] = views[0][n:]
                    n = 0
    if fs._start_writeback is not None and self._size - self._synced_to >= fs.WRITEBACK_STEP:
        fs._start_writeback(self._fd, self._synced_to, self._size - self._synced_to)
        self._synced_to = self._size
    return total


fs.FilesystemWriter.writev_sync = writev_sync


async def _pump_list(body, writer, hasher):
    loop = asyncio.get_running_loop()

    def work(chunks):
        if hasher is not None:
            for c in chunks:
                hasher.update(c)
        writer.writev_sync(chunks)

    pending = None
    chunks, size = [], 0
    try:
        async for chunk in body:
            chunks.append(chunk)
            size += len(chunk)
            if size >= up.BATCH:
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(None, work, chunks)
                chunks, size = [], 0
    finally:
        if pending is not None:
            await pending
        if chunks:
            await loop.run_in_executor(None, work, chunks)


async def _pump_deep(body, writer, hasher, depth=3):
    """Hash and write in two ordered single-thread stages, up to `depth` batches in flight."""
    loop = asyncio.get_running_loop()
    inflight = []

    def submit(batch):
        jobs = [loop.run_in_executor(_WRITE_POOL, writer.write_sync, batch)]
        if hasher is not None:
            jobs.append(loop.run_in_executor(_HASH_POOL, hasher.update, batch))
        inflight.append(asyncio.gather(*jobs))

    buf = bytearray()
    try:
        async for chunk in body:
            buf += chunk
            if len(buf) >= up.BATCH:
                if len(inflight) >= depth:
                    await inflight.pop(0)
                submit(buf)
                buf = bytearray()
    finally:
        if buf:
            submit(buf)
        for job in inflight:
            await job


from concurrent.futures import ThreadPoolExecutor  # noqa: E402

_HASH_POOL = ThreadPoolExecutor(1, "hash")  # one thread each: FIFO keeps the order
_WRITE_POOL = ThreadPoolExecutor(1, "write")
if os.environ.get("PUMP") == "deep":
    up._pump = _pump_deep
if os.environ.get("PUMP") == "list":
    up._pump = _pump_list

_SMALL = 4096


def _install_link_cache():
    """get_content answers small files from memory while (inode, mtime, size) are unchanged.

    Writes go through a temporary file and os.replace, so a rewritten link has a new inode:
    one stat() replaces open + read + close, and stays right across worker processes.
    """
    from collections import OrderedDict

    cache = OrderedDict()
    original = fs.FilesystemDriver.get_content

    async def get_content(self, path):
        full = self.full_path(path)
        try:
            st = os.stat(full)
        except (FileNotFoundError, NotADirectoryError):
            raise fs.PathNotFound(path) from None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        hit = cache.get(full)
        if hit is not None and hit[0] == key:
            return hit[1]
        data = await original(self, path)
        if len(data) <= _SMALL and len(data) == st.st_size:
            cache[full] = (key, data)
            if len(cache) > 10000:
                cache.popitem(last=False)
        return data

    fs.FilesystemDriver.get_content = get_content


if os.environ.get("LINKCACHE") == "1":
    _install_link_cache()

from pyreg.registry.cli import main  # noqa: E402  (after the patches)

sys.exit(main())
