"""Experiment: uvicorn writes the response head and a single-message body with one write()."""

from uvicorn.protocols.http import httptools_impl as h

_orig_send = h.RequestResponseCycle.send


class _Collect:
    def __init__(self, real, buf):
        self._real, self._buf, self.closed = real, buf, False

    def write(self, data):
        self._buf.append(data)

    def close(self):
        self.closed = True

    def __getattr__(self, name):
        return getattr(self._real, name)


async def send(self, message):
    t = message["type"]
    if t == "http.response.start":
        buf = []
        real, self.transport = self.transport, _Collect(self.transport, buf)
        try:
            await _orig_send(self, message)
        finally:
            self.transport = real
        self._head = buf
        return
    head = self.__dict__.pop("_head", None)
    if head is None:
        return await _orig_send(self, message)
    if message.get("more_body", False):
        self.transport.write(b"".join(head))
        return await _orig_send(self, message)
    col = _Collect(self.transport, head)
    real, self.transport = self.transport, col
    try:
        await _orig_send(self, message)
    finally:
        self.transport = real
    real.write(b"".join(head))
    if col.closed:
        real.close()


h.RequestResponseCycle.send = send
