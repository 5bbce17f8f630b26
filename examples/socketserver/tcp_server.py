"""The TCPServer example: answer each line upper-cased.

Usage: ``python examples/socketserver/tcp_server.py [--port 9999] [--count N]``.
It prints ``listening on HOST PORT``, then one report per request.  With
``--count N`` it handles N requests (``handle_request()``) and exits;
without, it serves until Ctrl-C (``serve_forever()``).  Port 0 picks a free
port.  Try it with ``tcp_client.py``.
"""

from __future__ import annotations

import argparse

from reactor import socketserver


class MyTCPHandler(socketserver.StreamRequestHandler):
    """One instance per connection; ``handle()`` speaks the protocol.

    ``self.rfile`` and ``self.wfile`` are file objects over the socket, so
    ``readline()`` keeps reading until a whole line is in, where a single
    ``self.request.recv(1024)`` would return whatever one read delivers.
    """

    def handle(self) -> None:
        data = self.rfile.readline().strip()
        print(f"{self.client_address[0]} wrote:")
        print(data.decode())
        self.wfile.write(data.upper())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--count", type=int, default=None, help="handle N requests, then exit")
    args = parser.parse_args()
    with socketserver.TCPServer((args.host, args.port), MyTCPHandler) as server:
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
