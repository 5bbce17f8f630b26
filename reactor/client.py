"""The client side of the request/reply service: `request` and `do_request`.

The yoton wire format, seen from the client: connect; send the UTF-8 request
and ``\\r\\n``; ``shutdown(SHUT_WR)``; read until ``\\r\\n`` or EOF; close.

`request` is the non-blocking form.  It returns a reactor `Future` at once and
does everything else from reactor callbacks; the outgoing connection is a row
in `Reactor.connections` (state ``CONNECTING → WRITING → READING``) until it
closes, and a timeout closes the row and fails the future with `TimeoutError`.
It is installed as `Reactor.request` by the package.

`do_request` is yoton's blocking call.  It needs no reactor at all: it is a
plain blocking socket with one overall deadline, so it works from any thread,
with or without a reactor running elsewhere, and never starts a thread.  It
returns None when the timeout passes, as yoton does.

A refused connection raises (or fails the future with) `RequestRefused`, which
is both a `ConnectionRefusedError` and a `RuntimeError`: yoton raised
RuntimeError, and new code can catch the precise OS error.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from typing import Any

from .addresses import Address, parse_address
from .connections import Connection, State
from .core import Reactor
from .framing import LineParser, MessageTooLarge
from .futures import Future

__all__ = ["request", "do_request", "RequestRefused", "DEFAULT_MAX_REPLY_SIZE"]

logger = logging.getLogger("reactor.client")

#: The largest reply a client accepts by default (bytes, without ``\r\n``).
DEFAULT_MAX_REPLY_SIZE = 64 * 1024 * 1024

_CRLF = b"\r\n"
_RECV_SIZE = 256 * 1024


class RequestRefused(ConnectionRefusedError, RuntimeError):
    """Nothing listens at the address (a `ConnectionRefusedError` and, as in yoton, a `RuntimeError`)."""


def _refused(address: Address, exc: OSError | None = None) -> RequestRefused:
    err = RequestRefused(errno.ECONNREFUSED, f"connection refused by {address.text}")
    if exc is not None:
        err.__cause__ = exc
    return err


def _encode(text: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"a request must be a str, got {type(text).__name__}")
    return text.encode("utf-8") + _CRLF


class _Request:
    """One outgoing request: a row in the connection table plus its future."""

    __slots__ = ("reactor", "address", "future", "row", "parser", "timer")

    def __init__(
        self, reactor: Reactor, address: Address, payload: bytes, timeout: float | None, max_reply_size: int
    ) -> None:
        self.reactor = reactor
        self.address = address
        self.future: Future[str] = reactor.create_future()
        self.parser = LineParser(max_reply_size)
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        fd = sock.fileno()
        self.row = row = Connection(sock, fd, self, State.CONNECTING, address.text, reactor.time())
        row.outbuf = payload
        self.timer = None
        if timeout is not None:
            row.deadline = row.started + timeout
            self.timer = reactor.call_later(timeout, self._on_timeout, timeout)
        reactor.connections[fd] = row
        self.future.add_done_callback(self._on_future_done)
        self._connect()

    def _connect(self) -> None:
        row = self.row
        try:
            row.sock.connect(self.address.sockaddr)
        except BlockingIOError:
            if self.address.family == socket.AF_UNIX:
                # AF_UNIX: EAGAIN means the listener's backlog is full, not
                # "in progress"; try again shortly rather than spinning.
                self.reactor.call_later(0.005, self._retry_connect)
            else:
                self.reactor.add_writer(row.fd, self._on_connected)
            return
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            self._fail(_refused(self.address, exc))
            return
        except OSError as exc:
            self._fail(exc)
            return
        self._send()

    def _retry_connect(self) -> None:
        if self.row.state == State.CONNECTING:
            self._connect()

    def _on_connected(self) -> None:
        row = self.row
        err = row.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.reactor.remove_writer(row.fd)
            if err == errno.ECONNREFUSED:
                self._fail(_refused(self.address))
            else:
                self._fail(OSError(err, f"{errno.errorcode.get(err, err)}: connecting to {self.address.text}"))
            return
        self._send()

    def _send(self) -> None:
        row = self.row
        row.state = State.WRITING
        try:
            n = row.sock.send(memoryview(row.outbuf)[row.sent :])
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._fail(exc)
            return
        row.sent += n
        row.bytes_out += n
        if row.sent < len(row.outbuf):
            self.reactor.add_writer(row.fd, self._send)
            return
        self.reactor.remove_writer(row.fd)
        row.outbuf = b""
        row.sent = 0
        try:
            row.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the peer may already have closed; the read side tells
        row.state = State.READING
        self.reactor.add_reader(row.fd, self._read)

    def _read(self) -> None:
        row = self.row
        try:
            data = row.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        row.bytes_in += len(data)
        try:
            if data:
                messages = self.parser.feed(data)
                if not messages:
                    return
                reply = messages[0]
            else:
                reply = self.parser.feed_eof() or b""
        except MessageTooLarge as exc:
            self._fail(exc)
            return
        try:
            text = reply.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._fail(exc)
            return
        self._close()
        if not self.future.done():
            self.future.set_result(text)

    def _on_timeout(self, timeout: float) -> None:
        self.timer = None
        if self.row.state != State.CLOSED:
            self._fail(TimeoutError(f"no reply from {self.address.text} within {timeout} s"))

    def _on_future_done(self, future: Future[str]) -> None:
        # The caller may cancel the future: the connection goes with it.
        if self.row.state != State.CLOSED:
            self._close()

    def _fail(self, exc: BaseException) -> None:
        self._close()
        if not self.future.done():
            self.future.set_exception(exc)

    def _close(self) -> None:
        row = self.row
        if row.state == State.CLOSED:
            return
        row.state = State.CLOSED
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        reactor = self.reactor
        if not reactor.is_closed():
            reactor.remove_reader(row.fd)
            reactor.remove_writer(row.fd)
        reactor.connections.pop(row.fd, None)
        row.sock.close()


def request(
    reactor: Reactor,
    address: str,
    request: str,
    timeout: float | None = None,
    *,
    max_reply_size: int = DEFAULT_MAX_REPLY_SIZE,
) -> Future[str]:
    """Send ``request`` to the server at ``address``; return a `Future` of the reply.

    Non-blocking: connect, send, half-close and read all happen in reactor
    callbacks.  The future fails with `TimeoutError` after ``timeout``
    seconds (None: no timeout), with `RequestRefused` when nothing listens,
    and with the `OSError` of any other network failure.  Cancelling the
    future closes the connection.  ``address`` is parsed at once: a bad one
    raises `ValueError` here.
    """
    parsed = parse_address(address)
    payload = _encode(request)
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive or None, got {timeout!r}")
    return _Request(reactor, parsed, payload, timeout, max_reply_size).future


def do_request(
    address: str, request: str, timeout: float = -1, *, max_reply_size: int = DEFAULT_MAX_REPLY_SIZE
) -> str | None:
    """Send ``request`` to ``address`` and wait for the reply (yoton's blocking call).

    Returns the reply string, or None if ``timeout`` (seconds; <= 0 waits for
    ever) passes first.  Raises `RequestRefused` when nothing listens at the
    address.  Needs no reactor and starts no thread.
    """
    parsed = parse_address(address)
    payload = _encode(request)
    deadline = time.monotonic() + timeout if timeout > 0 else None

    def remaining() -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    sock = socket.socket(parsed.family, socket.SOCK_STREAM)
    try:
        try:
            sock.settimeout(remaining())
            sock.connect(parsed.sockaddr)
            view = memoryview(payload)
            while view:
                sock.settimeout(remaining())
                view = view[sock.send(view) :]
            sock.shutdown(socket.SHUT_WR)
            parser = LineParser(max_reply_size)
            while True:
                sock.settimeout(remaining())
                data = sock.recv(_RECV_SIZE)
                if not data:
                    reply = parser.feed_eof() or b""
                    break
                messages = parser.feed(data)
                if messages:
                    reply = messages[0]
                    break
        except TimeoutError:
            return None
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise _refused(parsed, exc) from exc
        return reply.decode("utf-8")
    finally:
        sock.close()


def _request_method(
    self: Reactor, address: str, request_text: str, timeout: float | None = None, **kwargs: Any
) -> Future[str]:
    """Send a request/reply request without blocking; return a `Future` of the reply.

    See `reactor.client.request`: ``reactor.request(address, request, timeout=None)``.
    """
    return request(self, address, request_text, timeout, **kwargs)
