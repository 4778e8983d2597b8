# Ceiling: uvicorn+httptools+uvloop delivering a request body to an ASGI app that discards it.
import asyncio
import hashlib
import os

MODE = os.environ.get("MODE", "discard")
if os.environ.get("MALLOPT") == "1":  # glibc: keep freed large buffers (profile.md, suggestion 1)
    import ctypes

    _libc = ctypes.CDLL("libc.so.6")
    _libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    _libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] == "POST":
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [(b"location", b"/up/1"), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    n = 0
    more = True
    h = hashlib.sha256() if MODE != "discard" else None
    loop = asyncio.get_running_loop()
    fd = (
        os.open(os.environ.get("OUT", "/tmp/sink.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        if MODE == "write"
        else None
    )
    buf = bytearray()
    pending = None
    while more:
        m = await receive()
        b = m.get("body", b"")
        more = m.get("more_body", False)
        n += len(b)
        if MODE == "discard":
            continue
        if MODE == "hashinline":
            h.update(b)
            continue
        buf += b
        if len(buf) >= (4 << 20) or (not more and buf):
            if pending:
                await pending
            data, buf = buf, bytearray()

            def work(data=data):
                h.update(data)
                if fd is not None:
                    os.write(fd, data)

            pending = loop.run_in_executor(None, work)
    if pending:
        await pending
    if fd is not None:
        await loop.run_in_executor(None, os.fsync, fd)
        os.close(fd)
    await send(
        {"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})
