"""What the stdlib module cannot do: three servers, one reactor, one thread.

A TCP, a UDP and a Unix stream server share one reactor (``reactor=``) and
are all served by ``reactor.run()`` in the main thread -- no thread per
server, no polling.  Clients in a helper thread ask each server once; the
last answer stops the reactor.

Run: ``python examples/socketserver/many_servers.py`` -- it finishes on its own.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading

from reactor import Reactor, socketserver


class Upper(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.readline().upper())


class UpperDatagram(socketserver.DatagramRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.read().upper())


def ask_stream(family: int, address: tuple[str, int] | str, text: str) -> str:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(text.encode() + b"\n")
        return sock.makefile("rb").readline().decode().strip()


def ask_datagram(address: tuple[str, int], text: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(text.encode(), address)
        return sock.recv(1024).decode()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Reactor() as reactor:
        path = os.path.join(tmp, "upper.sock")
        tcp = socketserver.TCPServer(("127.0.0.1", 0), Upper, reactor=reactor)
        udp = socketserver.UDPServer(("127.0.0.1", 0), UpperDatagram, reactor=reactor)
        unix = socketserver.UnixStreamServer(path, Upper, reactor=reactor)

        def clients() -> None:
            try:
                print("tcp :", ask_stream(socket.AF_INET, tcp.server_address, "over tcp"))
                print("udp :", ask_datagram(udp.server_address, "over udp"))
                print("unix:", ask_stream(socket.AF_UNIX, path, "over a unix socket"))
            finally:
                reactor.stop()  # safe from any thread

        helper = threading.Thread(target=clients)
        helper.start()
        reactor.run()  # serves all three, in this thread
        helper.join()
        for server in (tcp, udp, unix):
            server.server_close()
        print("served by thread:", threading.current_thread().name)


if __name__ == "__main__":
    main()
