"""The easyservers chat over TCP, beside the UDP chat: one reactor, one thread, one user table.

`ChatHub` is `chat_udp.ChatServer` (its user table, its ``handle`` and its
ping beat) with a second door: a TCP server whose connections are
`LineProtocol`\\ s, one line per message.  Both servers live on the same
reactor in the same thread, so a member who joined over TCP and one who joined
over UDP are in one room: MSGA reaches both, MSGP goes across, and one
``call_every`` timer pings everybody.

The protocol is chat_udp's, unchanged (see its docstring), with one message
per line (``\\n``; a ``\\r`` before it is ignored, so telnet and nc both work).
A TCP member's address in the user table is ``("tcp", host, port)``, which no
UDP address looks like; `ChatHub.send` routes by it.

What TCP adds, all because a connection is a resource the UDP chat did not
hold: a member dropped after three unanswered PINGs is also disconnected;
closing the connection (or half-closing it) leaves the chat like EXIT; a
member who reads so slowly that more than ``write_buffer_high`` bytes wait for
them is disconnected instead of being buffered for without bound; a line
longer than `MAX_LINE` bytes closes the connection; and a connection that
says nothing for `MAX_MISSED_PINGS` + 2 beats is closed (joined members
answer PINGs, so only silent strangers are cut).

Run:
    python examples/chat_tcp.py server [TCP_PORT [UDP_PORT]]  (default 1234 for both)
    python examples/chat_tcp.py client PORT NAME [HOST]        (TCP; lines from stdin:
        "text" to all, "/msg NAME text" to one, "/quit" or end of input to leave)
    python examples/chat_tcp.py --demo                          (the hub, two TCP members and
        one UDP member in one reactor; finishes on its own)
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from chat_udp import DEFAULT_PORT, MAX_MISSED_PINGS, Address, ChatClient, ChatCommands, ChatServer

from reactor import Future, LineProtocol, Reactor, get_default_reactor
from reactor.streams import StreamTransport

logger = logging.getLogger("chat_tcp")

#: The first element of a TCP member's address in the user table.
TCP = "tcp"
#: The longest line accepted from a TCP member (bytes).
MAX_LINE = 8 * 1024


def _decode(line: bytes) -> str | None:
    try:
        return line.decode("utf-8").removesuffix("\r")
    except UnicodeDecodeError:
        return None


class ChatLine(LineProtocol):
    """The server side of one TCP connection: every line is a message for the hub."""

    terminator = b"\n"
    max_line_length = MAX_LINE

    def __init__(self, hub: ChatHub) -> None:
        self.hub = hub
        self.address: Address = ()

    def connection_made(self, transport: StreamTransport) -> None:
        """Register the connection with the hub under its ``("tcp", host, port)`` address."""
        super().connection_made(transport)
        host, port = transport.get_extra_info("peername")[:2]
        self.address = (TCP, host, port)
        self.hub.lines[self.address] = self

    def line_received(self, line: bytes) -> None:
        """Hand one message to the hub, as the UDP server hands it one datagram."""
        text = _decode(line)
        if text is None:
            logger.info("dropped a line from %s that is not UTF-8", self.address)
            return
        self.hub.handle(text, self.address, self.hub.send)

    def eof_received(self) -> bool | None:
        """The member half-closed: take the last line, then leave the chat (the transport closes)."""
        super().eof_received()
        self.hub.hang_up(self.address)
        return None

    def pause_writing(self) -> None:
        """More than ``write_buffer_high`` bytes wait for this member: disconnect rather than buffer on.

        An abort, not `ChatHub.hang_up`: this runs inside a write, possibly in
        the middle of an MSGA loop over the user table; ``connection_lost``
        logs the member out a moment later.
        """
        logger.info("%s reads too slowly; disconnecting", self.address)
        self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        """A closed connection leaves the chat, like EXIT."""
        self.hub.hang_up(self.address)


class ChatHub(ChatServer):
    """`chat_udp.ChatServer` on UDP ``host:udp_port`` and on TCP ``host:tcp_port``, sharing one user table.

    ``users``, ``handle`` and the beat are the UDP server's; this class routes
    what they send (`send`), pings TCP members over their connections
    (`ping_clients`) and disconnects TCP members who leave (`hang_up`).
    Attributes: ``server`` (the `UDPServer`), ``tcp`` (the stream `Server`),
    ``lines`` (the open TCP connections by address).
    """

    def __init__(
        self,
        udp_port: int = 0,
        tcp_port: int = 0,
        ping_interval: float = 10.0,
        *,
        host: str = "127.0.0.1",
        reactor: Reactor | None = None,
        write_buffer_high: int = 64 * 1024,
    ) -> None:
        reactor = reactor if reactor is not None else get_default_reactor()
        super().__init__(udp_port, ping_interval, host=host, reactor=reactor)
        self.reactor = reactor
        #: The open TCP connections, by their address in the user table.
        self.lines: dict[Address, ChatLine] = {}
        try:
            self.tcp = reactor.create_server(
                lambda: ChatLine(self),
                (host, tcp_port),
                idle_timeout=(MAX_MISSED_PINGS + 2) * ping_interval,
                write_buffer_high=write_buffer_high,
            )
        except BaseException:
            super().close()
            raise

    @property
    def tcp_address(self) -> str:
        """The TCP address clients connect to, as ``'host:port'``."""
        return self.tcp.address

    def handle(self, message: str, address: Address, send: Callable[[str, Address], None]) -> None:
        """chat_udp's ``handle``, with replies routed by `send` whichever door they go out of."""
        super().handle(message, address, self.send)

    def send(self, message: str, address: Address) -> None:
        """Send ``message`` to a member: a line on their TCP connection, or a UDP datagram."""
        if address[:1] != (TCP,):
            self.server.send(message, address)
            return
        line = self.lines.get(address)
        if line is not None and not line.transport.is_closing():
            line.send_line(message)

    def ping_clients(self) -> None:
        """chat_udp's beat, over either door; a TCP member dropped for silence is also disconnected."""
        for user in list(self.users.values()):
            if user.missed_pings >= MAX_MISSED_PINGS:
                del self.users[user.name]
                logger.info("%s dropped after %d unanswered PINGs", user.name, user.missed_pings)
                self.hang_up(user.address)
                continue
            self.send("PING", user.address)
            user.missed_pings += 1

    def hang_up(self, address: Address) -> None:
        """Log out whoever is at ``address``; close it if it is a TCP connection.  Idempotent."""
        user = self.user_at(address)
        if user is not None:
            del self.users[user.name]
            logger.info("%s disconnected", user.name)
        line = self.lines.pop(address, None)
        if line is not None:
            line.transport.close()

    def close(self) -> None:
        """Stop pinging, close the UDP socket, and close the TCP server and its connections."""
        super().close()
        self.tcp.close()


class TCPChatClient(LineProtocol, ChatCommands):
    """A chat member over TCP: `chat_udp.ChatClient`'s methods on a `LineProtocol`.

    Every line from the server is appended to `received` (PINGs too) and,
    except PINGs, passed to ``on_message``; ``answer_pings=False`` makes a
    member that never answers.  `closed` becomes True when the connection is
    lost, and ``on_close`` is called then.  Connect it with `connect`.
    """

    terminator = b"\n"
    max_line_length = MAX_LINE

    def __init__(
        self,
        name: str,
        *,
        on_message: Callable[[str], object] | None = None,
        on_close: Callable[[], object] | None = None,
        answer_pings: bool = True,
    ) -> None:
        self.name = name
        self.on_message = on_message
        self.on_close = on_close
        self.answer_pings = answer_pings
        #: Every line received from the server, in order.
        self.received: list[str] = []
        self.closed = False

    def line_received(self, line: bytes) -> None:
        """Handle one line from the server."""
        text = _decode(line)
        if text is None:
            return
        self.received.append(text)
        if text == "PING":
            if self.answer_pings:
                self.send("PONG")
        elif self.on_message is not None:
            self.on_message(text)

    def connection_lost(self, exc: BaseException | None) -> None:
        """The server closed the connection (or we did)."""
        self.closed = True
        if self.on_close is not None:
            self.on_close()

    def send(self, message: str) -> None:
        """Send a raw protocol message (one line) to the server."""
        if not self.transport.is_closing():
            self.send_line(message)

    def close(self) -> None:
        """Close the connection (after sending what is buffered)."""
        self.transport.close()


def connect(reactor: Reactor, address: str, name: str, **kwargs: Any) -> Future[tuple[StreamTransport, TCPChatClient]]:
    """Connect a `TCPChatClient` called ``name`` to the hub's TCP ``address``."""
    return reactor.create_connection(lambda: TCPChatClient(name, **kwargs), address, timeout=5.0)


# ------------------------------------------------------------------- programs


def run_server(tcp_port: int, udp_port: int) -> None:
    """Serve the chat on TCP ``tcp_port`` and UDP ``udp_port`` until Ctrl-C."""
    with Reactor() as reactor:
        hub = ChatHub(udp_port, tcp_port, reactor=reactor)
        logger.info("chat on tcp %s and udp %s:%d", hub.tcp_address, *hub.address[:2])
        try:
            reactor.run()
        except KeyboardInterrupt:
            pass
        finally:
            hub.close()


def run_client(port: int, name: str, host: str = "127.0.0.1") -> None:
    """Join the chat at TCP ``host:port`` as ``name``; send lines from stdin, in one thread.

    Standard input is one more reader on the reactor (a regular file, which
    epoll cannot watch, is read at once instead).
    """
    with Reactor() as reactor:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            _, chat = reactor.run_until_complete(
                connect(reactor, where, name, on_message=print, on_close=reactor.stop)
            )
        except OSError as exc:
            print(f"cannot connect to {where}: {exc}", file=sys.stderr)
            return
        stdin = sys.stdin.fileno()
        pending = bytearray()
        gone = False

        def typed(data: bytes) -> None:
            """Act on the complete lines typed so far; at end of input (``b""``) on the rest, then leave."""
            nonlocal gone
            if gone:
                return
            pending.extend(data)
            *lines, rest = pending.split(b"\n")
            pending[:] = rest
            if not data:
                lines.append(rest)
            for line in lines:
                if not chat.command(line.decode("utf-8", "replace")):
                    break
            else:
                if data:
                    return
                chat.exit()
            gone = True
            reactor.remove_reader(stdin)
            # Half-close, not close: closing with the server's last lines still
            # unread would reset the connection, and the reset may overtake the
            # EXIT.  The server closes on our EOF; connection_lost stops the reactor.
            chat.transport.write_eof()

        def typed_file() -> None:
            typed(sys.stdin.buffer.read())
            typed(b"")

        chat.join()
        try:
            reactor.add_reader(stdin, lambda: typed(os.read(stdin, 4096)))
        except PermissionError:  # a regular file: epoll cannot watch it, and it is always readable
            reactor.call_soon(typed_file)
        try:
            reactor.run()
        except KeyboardInterrupt:
            chat.exit()
            chat.close()
            reactor.run_once(0)


def run_demo(ping_interval: float = 0.05) -> None:
    """The hub, two TCP members (alice; carol, who never answers PING) and one UDP member (bob)."""
    with Reactor() as reactor:
        hub = ChatHub(0, 0, ping_interval, host="127.0.0.1", reactor=reactor)

        def show(name: str) -> Callable[[str], None]:
            return lambda message: print(f"[{name}] {message}")

        _, alice = reactor.run_until_complete(connect(reactor, hub.tcp_address, "alice", on_message=show("alice")))
        _, carol = reactor.run_until_complete(
            connect(reactor, hub.tcp_address, "carol", on_message=show("carol"), answer_pings=False,
                    on_close=lambda: print("[carol] (disconnected by the server)"))
        )
        bob = ChatClient("bob", hub.address, reactor=reactor, on_message=show("bob"))
        at = reactor.call_later
        at(0.00, alice.join)
        at(0.01, bob.join, "alice")                  # taken, across the doors: JERR NAME TAKEN
        at(0.02, bob.join)
        at(0.02, carol.join)
        at(0.04, alice.say, "hello everyone, I am on TCP")
        at(0.06, bob.tell, "alice", "hi alice, from UDP, only you see this")
        at(0.07, alice.tell, "bob", "hi bob, from TCP")
        at(0.08, carol.say, "I will not answer PINGs")
        # PINGs at 0.05, 0.10, 0.15: carol misses three and is dropped (and disconnected) at 0.20.
        at(0.24, alice.say, "is carol still here?")
        at(0.26, bob.exit)
        at(0.27, alice.exit)
        at(0.30, reactor.stop)
        reactor.run()
        print("users left:", sorted(hub.users) or "none")
        print(f"PINGs: alice (tcp) {alice.received.count('PING')}, bob (udp) {bob.received.count('PING')}, "
              f"carol (tcp) {carol.received.count('PING')} (dropped)")
        alice.close()
        bob.close()
        hub.close()
        reactor.run_once(0)  # deliver connection_lost


def main(argv: list[str] | None = None) -> int:
    """Command line: ``server [TCP_PORT [UDP_PORT]]``, ``client PORT NAME [HOST]`` or ``--demo``."""
    args = sys.argv[1:] if argv is None else argv
    mode = args[0] if args else ""
    if not (
        (mode == "--demo" and len(args) == 1)
        or (mode == "server" and len(args) <= 3)
        or (mode == "client" and len(args) in (3, 4))
    ):
        print(__doc__.split("Run:")[1].rstrip(), file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    if mode == "--demo":
        run_demo()
    elif mode == "server":
        tcp_port = int(args[1]) if len(args) >= 2 else DEFAULT_PORT
        run_server(tcp_port, int(args[2]) if len(args) == 3 else tcp_port)
    else:
        run_client(int(args[1]), args[2], *args[3:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
