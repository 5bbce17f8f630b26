"""A threading server: each request is handled in a thread of its own.

The reply names the handler's thread.  ``serve_forever()`` runs in one
thread; ``ThreadingMixIn`` starts one more per request, and
``server_close()`` waits for them.

Run: ``python examples/socketserver/threaded.py`` -- it finishes on its own.
"""

from __future__ import annotations

import socket
import threading

from reactor import socketserver


class ThreadedRequestHandler(socketserver.BaseRequestHandler):
    """Answers with the name of the thread that handled the request."""

    def handle(self) -> None:
        data = self.request.recv(1024)
        name = threading.current_thread().name
        self.request.sendall(f"{name}: {data.decode()}".encode())


class ThreadedTCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """The mix-in comes first: it overrides process_request()."""


def client(address: tuple[str, int], message: str) -> None:
    with socket.create_connection(address) as sock:
        sock.sendall(message.encode())
        print(f"Received: {sock.recv(1024).decode()}")


def main() -> None:
    server = ThreadedTCPServer(("127.0.0.1", 0), ThreadedRequestHandler)
    server_thread = threading.Thread(target=server.serve_forever, name="serve_forever")
    server_thread.start()
    print(f"Server loop running in thread: {server_thread.name}")
    for n in (1, 2, 3):
        client(server.server_address, f"Hello World {n}")
    server.shutdown()
    server_thread.join()
    server.server_close()


if __name__ == "__main__":
    main()
