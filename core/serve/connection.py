"""The HTTP/1.1 connection protocol: uvicorn's h11 protocol with our JSON error shape and a read deadline.

uvicorn (0.55) closes a kept-alive connection that stays idle (`timeout_keep_alive`) and caps open connections
(`limit_concurrency`), but it has no deadline for *receiving* a request: a client that opens a connection and
sends nothing, or sends its headers one byte a minute (slowloris) or its body likewise, holds the connection
forever. `MiniMindH11Protocol` gives every request `read_timeout` seconds to arrive whole (request line,
headers and body), counted from the connection opening or, on a kept-alive connection, from the next
request's first byte; a request still incomplete then has its connection closed.
"""
from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from core.serve.protocol import APIError


class MiniMindH11Protocol(H11Protocol):
    read_timeout = 10.0  # set per server by `h11_protocol`
    slow_requests_closed = 0  # connections closed by the read deadline (the class is per server, see below)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._between_requests = False
        self._arm_read_deadline()

    def data_received(self, data: bytes) -> None:
        if self._between_requests:  # the first byte of the next request on a kept-alive connection
            self._between_requests = False
            self._arm_read_deadline()
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer for the idle time that follows
        self._between_requests = True

    def connection_lost(self, exc) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def _arm_read_deadline(self) -> None:
        self._disarm_read_deadline()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._read_deadline_passed)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_deadline_passed(self) -> None:
        self._read_deadline = None
        # IDLE: the request line or headers are still missing; SEND_BODY: part of the body is.
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            type(self).slow_requests_closed += 1
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers a request it cannot parse (garbage request line, bad headers) in plain text; answer
        with our JSON error shape instead, as every other refusal is."""
        body = json.dumps(APIError(400, f"Bad request: {msg}").body()).encode("utf-8")
        headers = [(b"content-type", b"application/json; charset=utf-8"), (b"connection", b"close"),
                   (b"content-length", str(len(body)).encode())]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def h11_protocol(read_timeout: float) -> type[MiniMindH11Protocol]:
    """The protocol class for one server (uvicorn instantiates it per connection, so settings live on it)."""
    return type("MiniMindH11Protocol", (MiniMindH11Protocol,), {"read_timeout": read_timeout})
