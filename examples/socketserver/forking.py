"""A forking server: each request is handled in a child process.

The reply carries the child's process id.  Children are reaped as soon as
they exit (on Linux through a pidfd the reactor watches), and
``server_close()`` waits for any still running.

Run: ``python examples/socketserver/forking.py`` -- it finishes on its own.
"""

from __future__ import annotations

import os
import socket
import threading

from reactor import socketserver


class ForkingRequestHandler(socketserver.BaseRequestHandler):
    """Answers with the id of the process that handled the request."""

    def handle(self) -> None:
        data = self.request.recv(1024)
        self.request.sendall(f"{os.getpid()}: {data.decode()}".encode())


class ForkingServer(socketserver.ForkingMixIn, socketserver.TCPServer):
    """The mix-in comes first: it overrides process_request()."""


def main() -> None:
    server = ForkingServer(("127.0.0.1", 0), ForkingRequestHandler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    print(f"Server loop running in process: {os.getpid()}")
    with socket.create_connection(server.server_address) as sock:
        message = "Hello, world"
        print(f"Sending : {message!r}")
        sock.sendall(message.encode())
        print(f"Received: {sock.recv(1024).decode()!r}")
    server.shutdown()
    thread.join()
    server.server_close()


if __name__ == "__main__":
    main()
