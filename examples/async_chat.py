"""The line chat of chat_tcp.py, written with coroutine streams: one task per member.

The protocol is chat_udp's (see its docstring), one message per line (``\\n``;
a ``\\r`` before it is ignored, so telnet and nc work too)::

    JOIN name / JOK or JERR NAME TAKEN, MSGA text, MSGP (name) text, EXIT, PING / PONG

Where chat_tcp.py is a `LineProtocol` whose callbacks the reactor calls, here
each connection is one ``async def`` that reads its lines in a loop
(`ChatRoom.serve`), and the PING beat is one more task that sleeps between
beats (`ChatRoom.ping_forever`).  State that callbacks kept in attributes
lives in local variables, and leaving -- EXIT, the end of the connection, a
reset, being dropped -- is one ``finally``.

What the streams give the room: a member who reads so slowly that more than
`MAX_BUFFERED` bytes wait for them is disconnected instead of being buffered
for without bound (a broadcast must not wait for the slowest reader, so it
checks the write buffer rather than awaiting ``drain()``); a line longer than
`MAX_LINE` bytes ends that connection (the reader's ``limit``); a member
dropped after `MAX_MISSED_PINGS` unanswered PINGs is disconnected.

Run:
    python examples/async_chat.py server [PORT]        (default 1234, on 127.0.0.1)
    python examples/async_chat.py client PORT NAME     (lines from stdin: "text" to
        all, "/msg NAME text" to one, "/quit" or end of input to leave)
    python examples/async_chat.py --demo               (the room and three members in
        one reactor; finishes on its own)
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import reactor
from reactor import StreamReader, StreamWriter, open_connection, sleep, start_server
from reactor.streams_async import StreamServer

logger = logging.getLogger("async_chat")

DEFAULT_PORT = 1234
#: A member is dropped instead of receiving this many unanswered PINGs plus one.
MAX_MISSED_PINGS = 3
#: The longest line accepted (bytes).
MAX_LINE = 8 * 1024
#: Bytes that may wait for a slow member before they are disconnected.
MAX_BUFFERED = 256 * 1024


class Member:
    """A member of the room: their name, their writer and the PINGs they left unanswered."""

    __slots__ = ("name", "writer", "missed_pings")

    def __init__(self, name: str, writer: StreamWriter) -> None:
        self.name = name
        self.writer = writer
        self.missed_pings = 0


class ChatRoom:
    """The chat server's state and its two kinds of task: one per connection, one for the beat."""

    def __init__(self, ping_interval: float = 10.0) -> None:
        self.ping_interval = ping_interval
        #: Members by name, in joining order.
        self.users: dict[str, Member] = {}
        #: The PING beat's task (made by `start`).
        self.beat: reactor.Task[None] | None = None

    def send(self, member: Member, text: str) -> None:
        """Write one line to ``member``; disconnect them if too much already waits for them."""
        writer = member.writer
        if writer.is_closing():
            return
        if writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            logger.warning("%s reads too slowly; disconnected", member.name)
            writer.transport.abort()
            return
        writer.write(text.encode("utf-8") + b"\n")

    async def serve(self, reader: StreamReader, writer: StreamWriter) -> None:
        """One connection, from its first line to its end: the ``start_server`` callback."""
        me: Member | None = None
        try:
            async for raw in reader:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                command, _, rest = line.partition(" ")
                if command == "JOIN":
                    if rest in self.users or me is not None:
                        writer.write(b"JERR NAME TAKEN\n")
                    else:
                        me = self.users[rest] = Member(rest, writer)
                        logger.info("%s joined", rest)
                        writer.write(b"JOK\n")
                elif me is None or me.name not in self.users:
                    logger.warning("%r from a connection that has not joined; ignored", command)
                elif command == "MSGA":
                    text = f"({me.name}) " + " ".join(rest.split())
                    for member in list(self.users.values()):
                        self.send(member, text)
                elif command == "MSGP":
                    recipient = self.users.get(line[line.find("(") + 1 : line.find(")")])
                    if recipient is not None:
                        text = f"({me.name}) " + line[line.find(")") + 1 :].strip()
                        self.send(recipient, text)
                        self.send(me, text)
                elif command == "EXIT":
                    del self.users[me.name]
                    logger.info("%s left", me.name)
                    me = None
                elif command == "PONG":
                    me.missed_pings = 0
                await writer.drain()  # what this member asked for waits for this member only
        except (ValueError, ConnectionError) as exc:  # a line over the limit; a reset
            logger.info("connection ended: %s", exc)
        finally:
            if me is not None and self.users.get(me.name) is me:
                del self.users[me.name]
                logger.info("%s disconnected", me.name)

    async def ping_forever(self) -> None:
        """Every ``ping_interval`` seconds: PING every member; drop and disconnect the silent ones."""
        while True:
            await sleep(self.ping_interval)
            for member in list(self.users.values()):
                if member.missed_pings >= MAX_MISSED_PINGS:
                    del self.users[member.name]
                    logger.info("%s dropped after %d unanswered PINGs", member.name, member.missed_pings)
                    member.writer.close()
                    continue
                self.send(member, "PING")
                member.missed_pings += 1

    async def start(self, address: str) -> StreamServer:
        """Listen on ``address`` and start the beat (`beat`); the server.

        A connection that says nothing for `MAX_MISSED_PINGS` + 2 beats is
        closed (joined members answer PINGs, so only silent strangers are cut).
        """
        idle = (MAX_MISSED_PINGS + 2) * self.ping_interval
        server = await start_server(self.serve, address, limit=MAX_LINE, idle_timeout=idle)
        self.beat = reactor.create_task(self.ping_forever())
        return server

    async def close(self, server: StreamServer) -> None:
        """Stop the beat, close ``server`` and wait for its connections' tasks."""
        if self.beat is not None:
            self.beat.cancel()
        server.close()
        await server.wait_closed()


class ChatMember:
    """The client side: protocol commands out, every line in (PINGs answered) to `received`."""

    def __init__(self, name: str, reader: StreamReader, writer: StreamWriter, *, answer_pings: bool = True,
                 on_message: Any = None) -> None:
        self.name = name
        self.writer = writer
        self.answer_pings = answer_pings
        self.on_message = on_message
        #: Every line from the server, in order (PINGs too).
        self.received: list[str] = []
        #: True once the server closed the connection.
        self.closed = False
        self.listener = reactor.create_task(self.listen(reader))

    @classmethod
    async def connect(cls, address: str, name: str, **kwargs: Any) -> ChatMember:
        """Connect to the room at ``address`` (does not JOIN yet)."""
        reader, writer = await open_connection(address)
        return cls(name, reader, writer, **kwargs)

    async def listen(self, reader: StreamReader) -> None:
        """Read the server's lines until it closes the connection."""
        try:
            async for raw in reader:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.received.append(line)
                if line == "PING":
                    if self.answer_pings:
                        self.send("PONG")
                elif self.on_message is not None:
                    self.on_message(line)
        except ConnectionError:
            pass
        finally:
            self.closed = True

    def send(self, message: str) -> None:
        """Send one raw protocol line."""
        if not self.writer.is_closing():
            self.writer.write(message.encode("utf-8") + b"\n")

    def join(self, name: str | None = None) -> None:
        """JOIN as ``name`` (default: this member's name)."""
        self.send(f"JOIN {name if name is not None else self.name}")

    def say(self, text: str) -> None:
        """MSGA: a message to everyone."""
        self.send(f"MSGA {text}")

    def tell(self, name: str, text: str) -> None:
        """MSGP: a private message to ``name``."""
        self.send(f"MSGP ({name}) {text}")

    def exit(self) -> None:
        """EXIT: leave the room (the connection stays open)."""
        self.send("EXIT")

    async def close(self) -> None:
        """Close the connection and wait until it is closed."""
        self.writer.close()
        await self.writer.wait_closed()
        await self.listener


# ------------------------------------------------------------------- programs


async def run_server(port: int) -> None:
    """Serve the chat on 127.0.0.1:``port`` until Ctrl-C."""
    room = ChatRoom()
    server = await room.start(f"127.0.0.1:{port}")
    logger.info("chat room on %s", server.address)
    try:
        await server.serve_forever()
    finally:
        await room.close(server)


async def run_client(port: int, name: str) -> None:
    """Join the room at 127.0.0.1:``port`` as ``name``; send lines from stdin."""
    member = await ChatMember.connect(f"127.0.0.1:{port}", name, on_message=print)
    member.join()
    # Standard input as a stream: the reactor reports it readable, the reader is fed by hand.
    stdin = StreamReader()
    running = reactor.get_running_reactor()

    def stdin_readable() -> None:
        data = os.read(sys.stdin.fileno(), 4096)
        if data:
            stdin.feed_data(data)
        else:
            running.remove_reader(sys.stdin.fileno())
            stdin.feed_eof()

    running.add_reader(sys.stdin.fileno(), stdin_readable)
    try:
        async for raw in stdin:
            line = raw.decode().rstrip("\n")
            if member.closed or line == "/quit":
                break
            if line.startswith("/msg "):
                _, to, text = (line.split(" ", 2) + [""])[:3]
                member.tell(to, text)
            elif line.strip():
                member.say(line)
        member.exit()
    finally:
        running.remove_reader(sys.stdin.fileno())
        await member.close()


async def run_demo(ping_interval: float = 0.05) -> None:
    """The room and three scripted members in one reactor; carol never answers PING.

    Each step waits for what it expects to have arrived, so the script keeps
    its order however slowly the machine runs.
    """
    room = ChatRoom(ping_interval)
    server = await room.start("127.0.0.1:0")

    async def member(name: str, **kwargs: Any) -> ChatMember:
        return await ChatMember.connect(server.address, name, on_message=lambda m: print(f"[{name}] {m}"), **kwargs)

    async def until(condition: Any) -> None:
        for _ in range(2000):
            if condition():
                return
            await sleep(0.005)
        raise TimeoutError("the demo's chat did not get there within 10 s")

    alice, bob, carol = await reactor.gather(member("alice"), member("bob"), member("carol", answer_pings=False))
    alice.join()
    await until(lambda: alice.received == ["JOK"])
    bob.join("alice")  # taken: JERR NAME TAKEN
    await until(lambda: bob.received == ["JERR NAME TAKEN"])
    bob.join()
    carol.join()
    await until(lambda: "JOK" in bob.received and "JOK" in carol.received)
    alice.say("hello everyone")
    await until(lambda: "(alice) hello everyone" in carol.received)
    bob.tell("alice", "hi alice, only you see this")
    await until(lambda: "(bob) hi alice, only you see this" in alice.received)
    carol.say("I will not answer PINGs")
    await until(lambda: carol.closed)  # three PINGs unanswered: dropped at the fourth beat
    alice.say("is carol still here?")
    await until(lambda: "(alice) is carol still here?" in bob.received)
    bob.exit()
    alice.exit()
    await until(lambda: not room.users)
    print("users left:", sorted(room.users) or "none")
    print(f"PINGs to carol: {carol.received.count('PING')} (disconnected: {carol.closed})")
    for each in (alice, bob, carol):
        await each.close()
    await room.close(server)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``server [PORT]``, ``client PORT NAME`` or ``--demo``."""
    args = list(sys.argv[1:] if argv is None else argv)
    mode = args[0] if args else ""
    if not ((mode == "--demo" and len(args) == 1) or (mode == "server" and len(args) <= 2)
            or (mode == "client" and len(args) == 3)):
        print(__doc__.split("Run:")[1].rstrip(), file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    try:
        if mode == "--demo":
            reactor.run(run_demo())
        elif mode == "server":
            reactor.run(run_server(int(args[1]) if len(args) == 2 else DEFAULT_PORT))
        else:
            reactor.run(run_client(int(args[1]), args[2]))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
