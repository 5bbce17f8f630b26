"""The python-easyservers chat, on the reactor: one UDP server, pings by timer.

Protocol (one UDP datagram per message, UTF-8, exactly as easyservers):

    client -> server                      server -> client
    JOIN name                             JOK, or JERR NAME TAKEN
    MSGA text                             "(sender) text" to every user
    MSGP (name) text                      "(sender) text" to name, echoed to the sender
    EXIT                                  (the sender is logged out)
    PONG                                  (answers PING)
                                          PING every ping_interval seconds

A user who has not answered three PINGs is dropped at the next beat.  The
pinging is ``server.every(ping_interval, ...)``: a reactor timer in the
server's own thread, where easyservers ran a thread that slept and shared the
user list without a lock.

Differences from the easyservers example, all on error paths: MSGA and MSGP
from an address that has not joined are ignored (easyservers sent them as
"(None) ..."), and a user is dropped *instead of* being sent a fourth PING.

Run:
    python examples/chat_udp.py server [PORT] [--host HOST]
        (default 127.0.0.1:1234, this machine only; --host 0.0.0.0 serves
        every network the machine is on)
    python examples/chat_udp.py client PORT NAME [HOST] (lines from stdin:
        "text" to all, "/msg NAME text" to one, "/quit" or end of input to leave;
        HOST, or --host HOST, is the server's, 127.0.0.1 by default)
    python examples/chat_udp.py --demo                 (server and three scripted
        clients in one reactor; finishes on its own)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from reactor import Reactor
from reactor.easy import UDPClient, UDPServer

logger = logging.getLogger("chat_udp")

DEFAULT_PORT = 1234
#: Where the server listens and the client looks by default: this machine only.
DEFAULT_HOST = "127.0.0.1"
MAX_MISSED_PINGS = 3

Address = tuple[Any, ...]


class User:
    """A logged-in user: where to reach them, and how many PINGs went unanswered."""

    __slots__ = ("address", "missed_pings", "name")

    def __init__(self, name: str, address: Address) -> None:
        self.name = name
        self.address = address
        self.missed_pings = 0


class ChatServer:
    """The chat server on ``host:port``: a `UDPServer` whose handler is `handle`, and a
    timer that pings every ``ping_interval`` seconds."""

    def __init__(
        self,
        port: int = 0,
        ping_interval: float = 10.0,
        *,
        host: str = DEFAULT_HOST,
        reactor: Reactor | None = None,
    ) -> None:
        #: Logged-in users by name, in joining order.
        self.users: dict[str, User] = {}
        self.server = UDPServer(self.handle, port, host=host, reactor=reactor)
        self.pinger = self.server.every(ping_interval, self.ping_clients)

    @property
    def address(self) -> Address:
        """The socket address clients send to (the server's ``sockaddr``: replies come from it)."""
        return self.server.sockaddr

    def user_at(self, address: Address) -> User | None:
        """The user who joined from ``address``, if any."""
        for user in self.users.values():
            if user.address == address:
                return user
        return None

    def handle(self, message: str, address: Address, send: Callable[[str, Address], None]) -> None:
        """Interpret one datagram (the easyservers ``server_handle``)."""
        command, _, rest = message.partition(" ")
        sender = self.user_at(address)
        if command == "JOIN":
            if rest in self.users:
                send("JERR NAME TAKEN", address)
            else:
                self.users[rest] = User(rest, address)
                logger.info("%s joined from %s", rest, address)
                send("JOK", address)
        elif command == "MSGA":
            if sender is None:
                logger.warning("MSGA from %s, who has not joined; ignored", address)
                return
            text = f"({sender.name}) " + " ".join(rest.split())
            for user in self.users.values():
                send(text, user.address)
        elif command == "MSGP":
            if sender is None:
                logger.warning("MSGP from %s, who has not joined; ignored", address)
                return
            recipient = self.users.get(message[message.find("(") + 1 : message.find(")")])
            if recipient is None:
                logger.warning("MSGP to an unknown recipient; ignored: %r", message)
                return
            text = f"({sender.name}) " + message[message.find(")") + 1 :].strip()
            send(text, recipient.address)
            send(text, address)
        elif command == "EXIT":
            if sender is None:
                logger.warning("EXIT from unknown address %s; ignored", address)
                return
            del self.users[sender.name]
            logger.info("%s left", sender.name)
        elif command == "PONG":
            if sender is not None:
                sender.missed_pings = 0
        else:
            logger.warning("unknown message from %s: %r", address, message)

    def ping_clients(self) -> None:
        """Ping every user; drop those who left three PINGs unanswered."""
        for user in list(self.users.values()):
            if user.missed_pings >= MAX_MISSED_PINGS:
                del self.users[user.name]
                logger.info("%s dropped after %d unanswered PINGs", user.name, user.missed_pings)
                continue
            self.server.send("PING", user.address)
            user.missed_pings += 1

    def close(self) -> None:
        """Stop pinging and close the server socket."""
        self.pinger.cancel()
        self.server.close()


class ChatCommands:
    """The client side of the chat protocol, over any ``send(message)``: shared by the UDP and TCP clients."""

    name: str

    def send(self, message: str) -> None:
        """Send one raw protocol message (the transport's part)."""
        raise NotImplementedError

    def join(self, name: str | None = None) -> None:
        """JOIN as ``name`` (default: this client's name)."""
        self.send(f"JOIN {name if name is not None else self.name}")

    def say(self, text: str) -> None:
        """MSGA: a message to everyone."""
        self.send(f"MSGA {text}")

    def tell(self, name: str, text: str) -> None:
        """MSGP: a private message to ``name``."""
        self.send(f"MSGP ({name}) {text}")

    def exit(self) -> None:
        """EXIT: log out."""
        self.send("EXIT")

    def command(self, line: str) -> bool:
        """Act on one line typed by a user; False once the user has left."""
        if line == "/quit":
            self.exit()
            return False
        if line.startswith("/msg "):
            _, name, text = (line.split(" ", 2) + [""])[:3]
            self.tell(name, text)
        elif line.strip():
            self.say(line)
        return True


class ChatClient(ChatCommands):
    """A chat user: sends protocol messages, answers PING, reports the rest.

    Every datagram from the server is appended to `received` (PINGs too) and,
    except PINGs, passed to ``on_message``.  ``answer_pings=False`` makes a
    client that never answers (to watch it being dropped).
    """

    def __init__(
        self,
        name: str,
        server_address: Address,
        *,
        host: str = "127.0.0.1",
        reactor: Reactor | None = None,
        on_message: Callable[[str], object] | None = None,
        answer_pings: bool = True,
    ) -> None:
        self.name = name
        self.server_address = tuple(server_address)
        self.on_message = on_message
        self.answer_pings = answer_pings
        #: Every message received from the server, in order.
        self.received: list[str] = []
        self.client = UDPClient(self.handle, host=host, reactor=reactor)

    def handle(self, message: str, address: Address) -> None:
        """Handle one datagram from the server."""
        if address != self.server_address:
            return
        self.received.append(message)
        if message == "PING":
            if self.answer_pings:
                self.client.send("PONG", address)
        elif self.on_message is not None:
            self.on_message(message)

    def send(self, message: str) -> None:
        """Send a raw protocol message to the server."""
        self.client.send(message, self.server_address)

    def close(self) -> None:
        """Close the client socket."""
        self.client.close()


# ------------------------------------------------------------------- programs


def run_server(port: int, host: str = DEFAULT_HOST) -> None:
    """Serve the chat on ``host:port`` until Ctrl-C."""
    chat = ChatServer(port, host=host)
    logger.info("chat server on %s:%d", *chat.address[:2])
    try:
        chat.server.run()
    except KeyboardInterrupt:
        pass
    finally:
        chat.close()


def run_client(port: int, name: str, host: str = DEFAULT_HOST) -> None:
    """Join the chat at ``host:port`` as ``name``; send lines from stdin."""
    # A server on this machine answers to loopback; one elsewhere can only
    # answer if we listen on its network too, hence every interface (on a
    # port the kernel picks, for the replies alone).
    local = DEFAULT_HOST if host == "localhost" or host.startswith("127.") else "0.0.0.0"
    chat = ChatClient(name, (host, port), host=local, on_message=print)
    chat.client.start()  # replies and PONGs are handled in the reactor's thread
    chat.join()
    try:
        for line in sys.stdin:
            if not chat.command(line.rstrip("\n")):
                break
        else:
            chat.exit()
    except KeyboardInterrupt:
        chat.exit()
    finally:
        chat.client.stop()  # after the EXIT above has gone out
        chat.close()


def run_demo(ping_interval: float = 0.05) -> None:
    """A server and three scripted clients in one reactor; carol never answers PING."""
    with Reactor() as reactor:
        chat = ChatServer(0, ping_interval, host="127.0.0.1", reactor=reactor)

        def client(name: str, **kwargs: Any) -> ChatClient:
            return ChatClient(name, chat.address, reactor=reactor,
                              on_message=lambda m: print(f"[{name}] {m}"), **kwargs)

        alice, bob, carol = client("alice"), client("bob"), client("carol", answer_pings=False)
        at = chat.server.after
        at(0.00, alice.join)
        at(0.01, bob.join, "alice")                  # taken: JERR NAME TAKEN
        at(0.02, bob.join)
        at(0.02, carol.join)
        at(0.04, alice.say, "hello everyone")
        at(0.06, bob.tell, "alice", "hi alice, only you see this")
        at(0.08, carol.say, "I will not answer PINGs")
        # PINGs at 0.05, 0.10, 0.15: carol misses three and is dropped at 0.20.
        at(0.24, alice.say, "is carol still here?")
        at(0.26, bob.exit)
        at(0.27, alice.exit)
        at(0.30, reactor.stop)
        chat.server.run()
        print("users left:", sorted(chat.users) or "none")
        print(f"PINGs: alice {alice.received.count('PING')}, bob {bob.received.count('PING')}, "
              f"carol {carol.received.count('PING')} (dropped)")
        for closable in (alice, bob, carol, chat):
            closable.close()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``server [PORT] [--host HOST]``, ``client PORT NAME [HOST]`` or ``--demo``."""
    args = list(sys.argv[1:] if argv is None else argv)
    host: str | None = None
    if "--host" in args:
        at = args.index("--host")
        host = args[at + 1] if at + 1 < len(args) else ""
        del args[at : at + 2]
    mode = args[0] if args else ""
    if not (
        (mode == "--demo" and len(args) == 1 and host is None)
        or (mode == "server" and len(args) <= 2)
        or (mode == "client" and len(args) == 3)
        or (mode == "client" and len(args) == 4 and host is None)
    ) or host == "":
        print(__doc__.split("Run:")[1].rstrip(), file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    if mode == "--demo":
        run_demo()
    elif mode == "server":
        run_server(int(args[1]) if len(args) == 2 else DEFAULT_PORT, host or DEFAULT_HOST)
    else:
        run_client(int(args[1]), args[2], host or (args[3] if len(args) == 4 else DEFAULT_HOST))
    return 0


if __name__ == "__main__":
    sys.exit(main())
