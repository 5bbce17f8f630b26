"""The echo example without the logging: the handler is all a service needs.

Run: ``python examples/socketserver/echo_simple.py`` -- it finishes on its own.
"""

from __future__ import annotations

import socket
import threading

from reactor import socketserver


class EchoRequestHandler(socketserver.BaseRequestHandler):
    """Echoes one read's worth of data back."""

    def handle(self) -> None:
        self.request.sendall(self.request.recv(1024))


def main() -> None:
    with socketserver.TCPServer(("127.0.0.1", 0), EchoRequestHandler) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        message = b"Hello, world"
        with socket.create_connection(server.server_address) as sock:
            print(f"Sending : {message.decode()!r}")
            sock.sendall(message)
            print(f"Received: {sock.recv(1024).decode()!r}")
        server.shutdown()
        thread.join()


if __name__ == "__main__":
    main()
