"""The TCP client for ``tcp_server.py``: send a line, print the answer.

Usage: ``python examples/socketserver/tcp_client.py PORT words to send``.
"""

from __future__ import annotations

import argparse
import socket


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("words", nargs="+")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    data = " ".join(args.words)
    # SOCK_STREAM: a TCP socket.
    with socket.create_connection((args.host, args.port), timeout=10) as sock:
        sock.sendall(data.encode() + b"\n")
        received = b""
        while chunk := sock.recv(1024):  # the server closes after answering
            received += chunk
    print(f"Sent:     {data}")
    print(f"Received: {received.decode()}")


if __name__ == "__main__":
    main()
