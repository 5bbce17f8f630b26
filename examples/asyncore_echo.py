"""Classic asyncore code on the reactor, beside a RequestServer and a timer, in one thread.

Four things share one `Reactor` (the one serving ``asyncore.socket_map``,
which is the default reactor) and one thread:

- an **echo server** written the way the asyncore documentation writes it: a
  listening `asyncore.dispatcher` whose ``handle_accepted`` makes a
  `asyncore.dispatcher_with_send` per connection, sending back what it reads;
- a **line server** on `asynchat.async_chat`: every ``\\n``-terminated line
  is answered ``you said: <line>``; the line ``quit`` is answered ``bye`` and
  the channel closes once that is sent (``close_when_done``);
- a `reactor.RequestServer` (one request per connection, answered
  ``Requested: <request>``);
- a ``call_every`` timer.

``asyncore.loop()`` runs them all: each of its turns is a turn of that
reactor.  The asyncore code is unchanged classic code except for its import
line, ``from reactor.compat import asyncore, asynchat``.

Run:
    python examples/asyncore_echo.py [ECHO_PORT [LINE_PORT [REQUEST_PORT]]]
        (defaults 8007, 8008, 8009; try ``nc 127.0.0.1 8008``; Ctrl-C stops)
    python examples/asyncore_echo.py --demo
        (every server on a free port, a client session against each, run by
        the same loop; prints what it checked and exits on its own)
"""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from reactor import Reactor, RequestServer
from reactor.compat import asynchat, asyncore

HOST = "127.0.0.1"


# ---------------------------------------------------------------- the servers


class EchoHandler(asyncore.dispatcher_with_send):
    """One echo connection: whatever arrives is sent back."""

    def handle_read(self) -> None:
        data = self.recv(8192)
        if data:
            self.send(data)


class Listener(asyncore.dispatcher):
    """Listens, and makes a ``channel(sock)`` per accepted connection."""

    def __init__(self, host: str, port: int, channel: Callable[[socket.socket], object]) -> None:
        asyncore.dispatcher.__init__(self)
        self.channel = channel
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(16)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        self.channel(sock)


class LineChannel(asynchat.async_chat):
    """One line-server connection: ``you said: <line>`` per line, ``bye`` and close on ``quit``."""

    def __init__(self, sock: socket.socket) -> None:
        asynchat.async_chat.__init__(self, sock)
        self.set_terminator(b"\n")

    def collect_incoming_data(self, data: bytes) -> None:
        self._collect_incoming_data(data)

    def found_terminator(self) -> None:
        line = self._get_data().rstrip(b"\r")
        if line == b"quit":
            self.push(b"bye\r\n")
            self.close_when_done()
        else:
            self.push(b"you said: " + line + b"\r\n")


def start(reactor: Reactor, echo_port: int, line_port: int, request_port: int) -> tuple[Any, Any, RequestServer]:
    """The three servers, on ``reactor`` (the asyncore ones through ``socket_map``)."""
    echo = Listener(HOST, echo_port, EchoHandler)
    lines = Listener(HOST, line_port, LineChannel)
    requests = RequestServer(f"{HOST}:{request_port}", reactor=reactor)
    return echo, lines, requests


# ---------------------------------------------------------------- the demo


class EchoClient(asyncore.dispatcher_with_send):
    """Sends ``message`` once connected and collects the echo until it is whole."""

    def __init__(self, address: tuple[str, int], message: bytes) -> None:
        asyncore.dispatcher_with_send.__init__(self)
        self.message = message
        self.received = b""
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)

    def handle_connect(self) -> None:
        self.send(self.message)

    def handle_read(self) -> None:
        self.received += self.recv(8192)
        if len(self.received) >= len(self.message):
            self.close()


class LineClient(asynchat.async_chat):
    """Pushes its lines at once (sent when the connect completes) and keeps every reply line."""

    def __init__(self, address: tuple[str, int], lines: list[bytes]) -> None:
        asynchat.async_chat.__init__(self)
        self.replies: list[bytes] = []
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)
        self.set_terminator(b"\r\n")
        for line in lines:
            self.push(line + b"\n")

    def handle_connect(self) -> None:
        pass

    def collect_incoming_data(self, data: bytes) -> None:
        self._collect_incoming_data(data)

    def found_terminator(self) -> None:
        self.replies.append(self._get_data())


def demo(timeout: float = 10.0) -> int:
    """Serve on free ports, run one client session per server and a fast timer in the same loop; 0 if all is right."""
    reactor = asyncore.get_reactor()  # the reactor that serves asyncore.socket_map
    echo, lines, requests = start(reactor, 0, 0, 0)
    echo_client = EchoClient(echo.socket.getsockname(), b"hello, asyncore")
    line_client = LineClient(lines.socket.getsockname(), [b"hello", b"async_chat", b"quit"])
    reply = reactor.request(requests.address, "ping", timeout=timeout)
    ticks: list[float] = []
    beat = reactor.call_every(0.02, lambda: ticks.append(reactor.time()))
    failed: list[str] = []

    def finish() -> None:
        beat.cancel()
        requests.close()
        asyncore.close_all()  # the servers, and any client still open: loop() ends with an empty map

    def check() -> None:
        done = (not echo_client.connected and not line_client.connected and reply.done() and len(ticks) >= 3)
        if done:
            finish()
        else:
            reactor.call_later(0.01, check)

    def give_up() -> None:
        failed.append(f"the session did not finish within {timeout} s")
        finish()

    watchdog = reactor.call_later(timeout, give_up)
    reactor.call_soon(check)
    asyncore.loop(timeout=1.0)
    watchdog.cancel()

    print(f"echo server: sent {echo_client.message!r}, got back {echo_client.received!r}")
    print(f"line server: replies {[r.decode() for r in line_client.replies]}")
    answer = reply.result() if reply.done() and reply.exception() is None else f"failed: {reply.exception()!r}"
    print(f"RequestServer: 'ping' -> {answer!r}")
    print(f"timer: {len(ticks)} ticks of call_every(0.02) during the session")
    if echo_client.received != echo_client.message:
        failed.append("the echo came back different")
    if line_client.replies != [b"you said: hello", b"you said: async_chat", b"bye"]:
        failed.append("the line server's replies are wrong")
    if answer != "Requested: ping":
        failed.append("the RequestServer's reply is wrong")
    if len(ticks) < 3:
        failed.append("the timer did not tick while asyncore.loop() ran")
    if asyncore.socket_map or reactor.connections:
        failed.append("something is still open after close_all()")
    reactor.close()
    for problem in failed:
        print(f"FAILED: {problem}")
    print("demo ok: four services, one loop, one thread" if not failed else "demo FAILED")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    """``--demo``, or serve on the given ports until Ctrl-C."""
    if argv[:1] == ["--demo"]:
        return demo()
    ports = [int(a) for a in argv[:3]] + [8007, 8008, 8009][len(argv[:3]):]
    reactor = asyncore.get_reactor()
    echo, lines, requests = start(reactor, *ports)
    reactor.call_every(60.0, lambda: print(f"{len(asyncore.socket_map) - 2} asyncore connections open", flush=True))
    # Ctrl-C (or SIGTERM) in a turn of the reactor, never in the middle of other
    # code: close every dispatcher, and loop() ends with an empty map.
    for sig in (signal.SIGINT, signal.SIGTERM):
        reactor.add_signal_handler(sig, asyncore.close_all)
    print(f"echo on {HOST}:{ports[0]}, lines on {HOST}:{ports[1]}, RequestServer on {requests.address}", flush=True)
    try:
        asyncore.loop(timeout=30.0)
    finally:
        requests.close()
        asyncore.close_all()
        reactor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
