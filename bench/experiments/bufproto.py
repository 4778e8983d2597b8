"""Experiment: PUT body received by an asyncio.BufferedProtocol straight into 4 MiB buffers
(no user-space copy), sha256 + os.write in a thread, double-buffered, fsync at the end."""

import asyncio
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import uvloop

BUF = 4 << 20
POOL = ThreadPoolExecutor(2)
WRITE = os.environ.get("WRITE", "1") != "0"
FSYNC = os.environ.get("WRITE", "1") == "1"


class Conn(asyncio.BufferedProtocol):
    def connection_made(self, t):
        self.t = t
        self.head = bytearray()
        self.remaining = 0
        self.bufs = [bytearray(BUF), bytearray(BUF)]
        self.cur = 0
        self.fill = 0
        self.busy = None
        self.loop = asyncio.get_running_loop()

    def get_buffer(self, hint):
        if self.remaining:
            return memoryview(self.bufs[self.cur])[
                self.fill : self.fill + min(BUF - self.fill, self.remaining)
            ]
        return memoryview(self.bufs[self.cur])[self.fill :]

    def buffer_updated(self, n):
        if not self.remaining:  # reading the head
            self.head += self.bufs[self.cur][self.fill : self.fill + n]
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            lines = bytes(self.head[:i]).decode().split("\r\n")
            method = lines[0].split()[0]
            hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            rest = self.head[i + 4 :]
            self.head = bytearray()
            if method != "PUT":
                self.t.write(
                    b"HTTP/1.1 202 Accepted\r\nLocation: /up/1\r\nContent-Length: 0\r\n\r\n"
                )
                return
            self.remaining = int(hdrs["content-length"])
            self.h = hashlib.sha256()
            self.fd = (
                os.open(
                    os.environ.get("OUT", "/tmp/bufproto.bin"),
                    os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                )
                if WRITE
                else None
            )
            self.bufs[self.cur][: len(rest)] = rest
            self.fill = len(rest)
            self.remaining -= len(rest)
        else:
            self.fill += n
            self.remaining -= n
        if self.fill == BUF or self.remaining == 0:
            self.flush()

    def work(self, view):
        self.h.update(view)
        if self.fd is not None:
            while view:
                view = view[os.write(self.fd, view) :]

    def flush(self):
        view = memoryview(self.bufs[self.cur])[: self.fill]
        prev = self.busy
        fut = self.loop.run_in_executor(POOL, self.work, view)
        self.busy = fut
        self.cur ^= 1
        self.fill = 0
        if prev is not None and not prev.done():
            self.t.pause_reading()  # both buffers in use: wait for the older one
            prev.add_done_callback(lambda _: self.t.resume_reading())
        if self.remaining == 0:
            fut.add_done_callback(lambda _: asyncio.ensure_future(self.finish()))

    async def finish(self):
        if self.fd is not None:
            (await self.loop.run_in_executor(POOL, os.fsync, self.fd)) if FSYNC else None
            os.close(self.fd)
        self.busy = None
        self.cur = 0
        self.fill = 0
        self.t.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")


async def main():
    srv = await asyncio.get_running_loop().create_server(Conn, "127.0.0.1", int(sys.argv[1]))
    await srv.serve_forever()


uvloop.run(main())
