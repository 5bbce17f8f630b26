"""The UDP client for ``udp_server.py``: send a datagram, print the answer.

Usage: ``python examples/socketserver/udp_client.py PORT words to send``.
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
    # SOCK_DGRAM: a UDP socket.  No connect(): each datagram is addressed.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(data.encode() + b"\n", (args.host, args.port))
        received = sock.recv(1024)
    print(f"Sent:     {data}")
    print(f"Received: {received.decode()}")


if __name__ == "__main__":
    main()
