"""The echo example, with every server and handler hook logged.

A TCP server whose handler echoes what it receives; each method of the
server and of the handler logs its call, so the output shows the order in
which ``reactor.socketserver`` calls them.  The server runs in a thread (the
stdlib way: ``serve_forever()`` + ``shutdown()``), and the main thread is the
client.

Run: ``python examples/socketserver/echo.py`` -- it finishes on its own.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from reactor import socketserver

logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")


class EchoRequestHandler(socketserver.BaseRequestHandler):
    """Echoes one read's worth of data back to the client."""

    def __init__(self, request: Any, client_address: Any, server: socketserver.BaseServer) -> None:
        self.logger = logging.getLogger("EchoRequestHandler")
        self.logger.debug("__init__")
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        self.logger.debug("setup")
        super().setup()

    def handle(self) -> None:
        self.logger.debug("handle")
        data = self.request.recv(1024)
        self.logger.debug("recv()->%r", data)
        self.request.sendall(data)

    def finish(self) -> None:
        self.logger.debug("finish")
        super().finish()


class EchoServer(socketserver.TCPServer):
    """A TCPServer that logs each of its hooks."""

    def __init__(self, server_address: Any, handler_class: Any = EchoRequestHandler) -> None:
        self.logger = logging.getLogger("EchoServer")
        self.logger.debug("__init__")
        super().__init__(server_address, handler_class)

    def server_activate(self) -> None:
        self.logger.debug("server_activate")
        super().server_activate()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self.logger.debug("waiting for requests")
        self.logger.info("handling requests until shutdown()")
        super().serve_forever(poll_interval)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.logger.debug("verify_request(%s)", client_address)
        return super().verify_request(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.logger.debug("process_request(%s)", client_address)
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.logger.debug("finish_request(%s)", client_address)
        super().finish_request(request, client_address)

    def close_request(self, request: Any) -> None:
        self.logger.debug("close_request")
        super().close_request(request)

    def server_close(self) -> None:
        self.logger.debug("server_close")
        super().server_close()


def main() -> None:
    server = EchoServer(("127.0.0.1", 0))  # port 0: the kernel picks a free port
    ip, port = server.server_address
    thread = threading.Thread(target=server.serve_forever)
    thread.start()

    log = logging.getLogger("client")
    log.info("server on %s:%s", ip, port)
    message = b"Hello, world"
    with socket.create_connection((ip, port)) as sock:
        log.debug("sending %r", message)
        sock.sendall(message)
        response = sock.recv(len(message))
        log.debug("response from server: %r", response)

    server.shutdown()
    thread.join()
    server.server_close()
    log.debug("done")


if __name__ == "__main__":
    main()
