"""uvicorn's httptools protocol, delivering each received body piece as its own ASGI message
(no bytearray accumulation, no bytes() copy), and pausing the socket only above 4 MiB queued."""

from collections import deque

from uvicorn.protocols.http import httptools_impl as h

HIGH_WATER = 4 << 20


def on_body(self, body):
    if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
        return
    cycle = self.cycle
    q = cycle.__dict__.get("_q")
    if q is None:
        q = cycle._q = deque()
        cycle._queued = 0
    q.append(body)
    cycle._queued += len(body)
    if cycle._queued > HIGH_WATER:
        self.flow.pause_reading()
    cycle.message_event.set()


async def receive(self):
    if self.waiting_for_100_continue and not self.transport.is_closing():
        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.waiting_for_100_continue = False
    q = self.__dict__.get("_q")
    if not q and not self.disconnected and not self.response_complete:
        self.flow.resume_reading()
        await self.message_event.wait()
        self.message_event.clear()
        q = self.__dict__.get("_q")
    if self.disconnected or self.response_complete:
        return {"type": "http.disconnect"}
    if q:
        body = q.popleft()
        self._queued -= len(body)
        if self._queued <= HIGH_WATER:
            self.flow.resume_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body or bool(q)}
    return {"type": "http.request", "body": b"", "more_body": self.more_body}


h.HttpToolsProtocol.on_body = on_body
h.RequestResponseCycle.receive = receive
