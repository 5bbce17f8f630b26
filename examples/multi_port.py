"""Three servers in one thread: request/reply on TCP, on a Unix socket, and UDP.

One reactor serves a `RequestServer` on a TCP port, another on a Unix socket
and a `reactor.easy.UDPServer`; a `UDPClient` and `Reactor.request` ask all
three from the same thread.  Nothing here starts a thread.

Run: ``python examples/multi_port.py`` — it finishes on its own.
"""

from __future__ import annotations

import os
import tempfile
import threading

from reactor import Reactor, RequestServer
from reactor.easy import UDPClient, UDPServer


class Upper(RequestServer):
    def handle_request(self, request: str) -> str:
        return request.upper()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Reactor() as reactor:
        tcp = RequestServer("localhost:0", reactor=reactor)
        unix = Upper(f"unix:{os.path.join(tmp, 'upper.sock')}", reactor=reactor)
        udp = UDPServer(
            lambda msg, addr, send: send("udp echo: " + msg, addr), port=0, host="127.0.0.1", reactor=reactor
        )
        udp_replies = []
        client = UDPClient(lambda msg, addr: udp_replies.append(msg), host="127.0.0.1", reactor=reactor)
        try:
            print(f"TCP on {tcp.address}, Unix on {unix.address}, UDP on 127.0.0.1:{udp.port}")
            replies = [
                reactor.request(tcp.address, "over tcp", timeout=5),
                reactor.request(unix.address, "over unix", timeout=5),
            ]
            client.send("over udp", ("127.0.0.1", udp.port))
            for fut in replies:
                print("reply:", reactor.run_until_complete(fut, timeout=10))
            deadline = reactor.time() + 5
            while not udp_replies and reactor.time() < deadline:
                reactor.run_once(0.1)
            print("reply:", udp_replies[0] if udp_replies else "(no UDP reply)")
            print("threads running:", threading.active_count())
        finally:
            for endpoint in (client, udp, unix, tcp):
                endpoint.close()


if __name__ == "__main__":
    main()
