"""The UDPServer example: answer each datagram upper-cased.

Usage: ``python examples/socketserver/udp_server.py [--port 9999] [--count N]``.
It prints ``listening on HOST PORT``, then one report per datagram; with
``--count N`` it handles N datagrams and exits.  Try it with ``udp_client.py``.
"""

from __future__ import annotations

import argparse

from reactor import socketserver


class MyUDPHandler(socketserver.BaseRequestHandler):
    """Like the TCP handler, but ``self.request`` is ``(data, socket)``.

    There is no connection, so the answer goes back with ``sendto()`` to
    the client's address.
    """

    def handle(self) -> None:
        data = self.request[0].strip()
        sock = self.request[1]
        print(f"{self.client_address[0]} wrote:")
        print(data.decode())
        sock.sendto(data.upper(), self.client_address)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--count", type=int, default=None, help="handle N datagrams, then exit")
    args = parser.parse_args()
    with socketserver.UDPServer((args.host, args.port), MyUDPHandler) as server:
        host, port = server.server_address[:2]
        print(f"listening on {host} {port}", flush=True)
        if args.count is None:
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
        else:
            for _ in range(args.count):
                server.handle_request()


if __name__ == "__main__":
    main()
