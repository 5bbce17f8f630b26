"""reactor.compat.asyncore on the reactor: rows, interest, turns, private maps, scale."""

from __future__ import annotations

import errno
import resource
import selectors
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reactor import Reactor, RequestServer
from reactor.compat import asynchat, asyncore
from reactor.transport.table import State


class CountingSelector(selectors.DefaultSelector):
    """The default selector, counting the calls that change the registration of one fd."""

    def __init__(self) -> None:
        super().__init__()
        self.watched = -1
        self.changes = 0

    def register(self, fileobj: Any, events: int, data: Any = None) -> Any:
        self.changes += fileobj == self.watched
        return super().register(fileobj, events, data)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> Any:
        self.changes += fileobj == self.watched
        return super().modify(fileobj, events, data)

    def unregister(self, fileobj: Any) -> Any:
        self.changes += fileobj == self.watched
        return super().unregister(fileobj)


@pytest.fixture
def amap(real_reactor: Reactor) -> Iterator[dict[int, Any]]:
    """A private asyncore map served by the test's reactor; closed (and unbound) afterwards."""
    m: dict[int, Any] = {}
    asyncore.set_reactor(real_reactor, m)
    yield m
    asyncore.close_all(m)
    asyncore.set_reactor(None, m)


def loop_until(m: dict[int, Any], predicate: Callable[[], bool], turns: int = 500) -> None:
    """Serve ``m`` one turn at a time until ``predicate()`` holds; fail after ``turns`` turns."""
    for _ in range(turns):
        if predicate():
            return
        asyncore.loop(timeout=0.05, map=m, count=1)
    assert predicate(), f"condition not reached within {turns} turns"


def fileno(d: asyncore.dispatcher) -> int:
    """The fd a dispatcher is registered under."""
    assert d._fileno is not None
    return d._fileno


def peek(sock: socket.socket) -> bytes:
    """What ``sock`` could read now, without reading it (b'' when nothing)."""
    try:
        return sock.recv(100, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


class Echo(asyncore.dispatcher_with_send):
    """Echoes what it reads."""

    def handle_read(self) -> None:
        data = self.recv(65536)
        if data:
            self.send(data)

    def handle_close(self) -> None:
        self.close()


class Toggle(asyncore.dispatcher):
    """Its readable()/writable() answers are set by the test; it reads nothing."""

    want_read = False
    want_write = False

    def readable(self) -> bool:
        return self.want_read

    def writable(self) -> bool:
        return self.want_write

    def handle_write(self) -> None:
        pass


class Listener(asyncore.dispatcher):
    """Accepts every pending connection per readiness and serves each with `Echo`."""

    def __init__(self, m: dict[int, Any], backlog: int = 128) -> None:
        super().__init__(map=m)
        self.create_socket()
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(backlog)
        self.address = self.socket.getsockname()
        self.accepted = 0

    def handle_accept(self) -> None:
        while (pair := self.accept()) is not None:
            Echo(pair[0], map=self._map)
            self.accepted += 1


def test_dispatchers_are_rows_whose_state_follows_the_flags(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """Listener, client and accepted dispatchers are rows: LISTENING, CONNECTING then OPEN, OPEN; CLOSED on close."""
    listener = Listener(amap)
    client = asyncore.dispatcher_with_send(map=amap)
    client.create_socket()
    assert real_reactor.connections[fileno(client)].state == State.UNCONNECTED
    client.connect(listener.address)
    rows = real_reactor.connections
    assert rows[fileno(listener)].state == State.LISTENING and rows[fileno(listener)].owner is listener
    client_row = rows[fileno(client)]
    assert client_row.state in (State.CONNECTING, State.OPEN)
    loop_until(amap, lambda: listener.accepted == 1 and client.connected)
    assert client_row.state == State.OPEN and client_row.peer == listener.address
    assert sorted(row.state for row in rows.values()) == [State.LISTENING, State.OPEN, State.OPEN]
    assert set(rows) == set(amap)
    client.send(b"ping")
    loop_until(amap, lambda: client_row.bytes_out == 4)
    client.close()
    assert client_row.state == State.CLOSED and client_row.fd not in rows


def test_interest_changes_only_when_an_answer_changes(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """readable()/writable() are asked every turn, but the selector is touched only when an answer changed."""
    selector = CountingSelector()
    r = Reactor(selector=selector)
    m: dict[int, Any] = {}
    asyncore.set_reactor(r, m)
    a, b = socket.socketpair()
    selector.watched = a.fileno()
    try:
        t = Toggle(a, map=m)
        asyncore.loop(timeout=0, map=m, count=5)
        assert selector.changes == 0  # nothing wanted: nothing registered
        t.want_write = True
        before = asyncore.statistics(m)
        asyncore.loop(timeout=0, map=m, count=20)
        assert selector.changes == 1  # registered once, then 19 turns of unchanged answers
        after = asyncore.statistics(m)
        assert after["asked"] - before["asked"] == 20 and after["interest_changes"] - before["interest_changes"] == 1
        t.want_read = True
        asyncore.loop(timeout=0, map=m, count=20)
        assert selector.changes == 2  # one modify
        t.want_read = t.want_write = False
        asyncore.loop(timeout=0, map=m, count=20)
        assert selector.changes == 4  # read dropped (modify), then write dropped (unregister)
        asyncore.close_all(m)
        assert r.statistics()["fds"] == 0 and r.connections == {}  # the priority set went with the last row
    finally:
        asyncore.close_all(m)
        asyncore.set_reactor(None, m)
        b.close()
        r.close()


class Lines(asynchat.async_chat):
    """Answers each line with ``ok <line>``; `readable()` is its own (as most servers' are not)."""

    def __init__(self, sock: socket.socket, map: dict[int, Any]) -> None:
        super().__init__(sock, map=map)
        self.set_terminator(b"\n")
        self.paused = False

    def collect_incoming_data(self, data: bytes) -> None:
        self._collect_incoming_data(data)

    def found_terminator(self) -> None:
        self.push(b"ok " + self._get_data() + b"\n")

    def readable(self) -> bool:
        return not self.paused


def read_all(sock: socket.socket, size: int, m: dict[int, Any]) -> bytes:
    """Serve ``m`` while reading ``size`` bytes from ``sock`` (bounded)."""
    got = bytearray()
    sock.setblocking(False)
    for _ in range(2000):
        asyncore.loop(timeout=0.01, map=m, count=1)
        try:
            got += sock.recv(1 << 20)
        except BlockingIOError:
            pass
        if len(got) >= size:
            break
    return bytes(got)


def test_push_with_nothing_queued_sends_at_once_and_keeps_what_the_kernel_refuses(
    real_reactor: Reactor, amap: dict[int, Any]
) -> None:
    """The common reply goes straight to send(); a partial send queues the rest, in order, as asyncore does."""
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    chat = Lines(a, amap)
    chat.push(b"at once\n")
    assert not chat.producer_fifo and b.recv(100) == b"at once\n"
    big = bytes(range(256)) * 200  # 51,200 bytes: one piece, more than the socket takes
    chat.push(big)
    assert chat.producer_fifo and chat.writable()  # the rest is queued
    chat.push(b"after\n")  # queued behind it: order is kept
    assert read_all(b, len(big) + 6, amap) == big + b"after\n"
    assert not chat.producer_fifo
    b.close()


def test_push_goes_through_an_overridden_initiate_send(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """A subclass's initiate_send() is called by push(), never bypassed."""

    class Counting(Lines):
        calls = 0

        def initiate_send(self) -> None:
            self.calls += 1
            super().initiate_send()

    a, b = socket.socketpair()
    chat = Counting(a, amap)
    chat.push(b"x\n")
    assert chat.calls == 1 and b.recv(10) == b"x\n"
    b.close()


def test_an_overridden_get_terminator_is_asked(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """handle_read() reads ``terminator`` directly only where get_terminator() is the class's own."""

    class Asked(Lines):
        asked = 0

        def get_terminator(self) -> Any:
            self.asked += 1
            return b";"  # not the b"\n" that set_terminator() stored

    a, b = socket.socketpair()
    chat = Asked(a, amap)
    assert Asked._plain_get_terminator is False and Lines._plain_get_terminator is True
    b.send(b"one;two;")
    loop_until(amap, lambda: chat.asked >= 2)  # once per line
    b.setblocking(False)
    assert read_all(b, 14, amap) == b"ok one\nok two\n"
    b.close()


def test_push_of_more_than_the_out_buffer_goes_in_pieces(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """A push() larger than ac_out_buffer_size is queued as pieces of that size, each sent in order."""
    a, b = socket.socketpair()
    chat = Lines(a, amap)
    chat.ac_out_buffer_size = 10
    chat.push(b"x\n")  # something queued first, so push() takes the queueing path
    chat.producer_fifo.append(b"")  # an empty piece ahead, dropped when reached
    data = bytes(range(35))
    chat.push(data)
    assert read_all(b, 37, amap) == b"x\n" + data
    b.close()


def test_a_failing_send_keeps_the_data_and_calls_handle_error(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """send() raising an OSError that is not a disconnect: handle_error() runs and the data stays queued."""
    a, b = socket.socketpair()
    errors: list[BaseException] = []

    class Failing(Lines):
        def send(self, data: Any) -> int:
            raise OSError(errno.EINVAL, "refused by the test")

        def handle_error(self) -> None:
            errors.append(sys.exc_info()[1])  # type: ignore[arg-type]

    chat = Failing(a, amap)
    chat.push(b"kept\n")
    assert [type(e) for e in errors] == [OSError] and list(chat.producer_fifo) == [b"kept\n"]
    b.close()


def test_idle_channels_are_not_asked_every_turn(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """An async_chat channel waiting for input is not asked before each turn; a busy one still answers."""
    pairs = [socket.socketpair() for _ in range(50)]
    try:
        channels = [Lines(a, amap) for a, _ in pairs]
        asyncore.loop(timeout=0, map=amap, count=1)  # the new rows are asked once
        before = asyncore.statistics(amap)["asked"]
        asyncore.loop(timeout=0, map=amap, count=20)
        assert asyncore.statistics(amap)["asked"] == before  # nothing can have changed unseen
        pairs[7][1].send(b"hi\n")
        loop_until(amap, lambda: peek(pairs[7][1]) == b"ok hi\n")
        assert asyncore.statistics(amap)["asked"] - before <= 2 and channels[7].connected
    finally:
        for _, b in pairs:
            b.close()


def test_output_queued_from_outside_a_handler_is_sent(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """push() from a timer, a direct producer_fifo.append() and close_when_done() all get the channel watched."""
    a, b = socket.socketpair()
    chat = Lines(a, amap)
    asyncore.loop(timeout=0, map=amap, count=2)
    real_reactor.call_soon(chat.push, b"from a timer\n")
    loop_until(amap, lambda: peek(b) == b"from a timer\n")
    b.recv(100)
    # Code that queues without initiate_send(), as asyncore allowed: the next turn sends it.
    real_reactor.call_soon(chat.producer_fifo.append, b"queued directly\n")
    loop_until(amap, lambda: peek(b) == b"queued directly\n")
    b.recv(100)
    real_reactor.call_soon(chat.close_when_done)
    loop_until(amap, lambda: not chat.connected)
    assert b.recv(100) == b""
    b.close()


def test_a_registered_answer_is_checked_when_its_event_comes(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """readable() turned false while registered: the input waits, unread, until it is true again."""
    a, b = socket.socketpair()
    chat = Lines(a, amap)
    asyncore.loop(timeout=0, map=amap, count=2)
    chat.paused = True
    b.send(b"later\n")
    asyncore.loop(timeout=0.05, map=amap, count=5)
    assert peek(a) == b"later\n" and chat.ac_in_buffer == b""  # not read
    assert not real_reactor.connections[a.fileno()].interest & 1  # read interest dropped at the event
    chat.paused = False
    loop_until(amap, lambda: peek(b) == b"ok later\n")
    b.close()


def test_a_writable_of_its_own_is_asked_every_turn(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """A dispatcher with its own writable() (here dispatcher_with_send's, fed directly) is asked as asyncore asks."""
    a, b = socket.socketpair()
    sender = asyncore.dispatcher_with_send(a, map=amap)
    asyncore.loop(timeout=0, map=amap, count=2)
    sender.out_buffer = b"assigned, not sent"  # no send(): only writable() can tell
    loop_until(amap, lambda: peek(b) == b"assigned, not sent")
    b.close()


def test_loop_count_one_is_one_turn(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """loop(count=1) is exactly one reactor turn, count=n is n turns, and an empty map makes none."""
    a, b = socket.socketpair()
    Toggle(a, map=amap)
    turns = real_reactor.statistics()["turns"]
    asyncore.loop(timeout=0, map=amap, count=1)
    assert real_reactor.statistics()["turns"] == turns + 1
    asyncore.loop(timeout=0, map=amap, count=3)
    assert real_reactor.statistics()["turns"] == turns + 4
    asyncore.poll(0, amap)
    asyncore.poll2(0, amap)
    assert real_reactor.statistics()["turns"] == turns + 6
    asyncore.close_all(amap)
    asyncore.loop(timeout=0, map=amap, count=3)
    assert real_reactor.statistics()["turns"] == turns + 6
    b.close()


def test_a_private_map_has_its_own_reactor_and_loop_serves_only_it() -> None:
    """A private map gets its own reactor, loop(map=m) leaves socket_map alone, the reactor closes with the map."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    private: dict[int, Any] = {}
    mine = Echo(a, map=private)
    other = Echo(c)  # the module's socket_map, on the default reactor
    try:
        reactor = asyncore.get_reactor(private)
        assert reactor is not asyncore.get_reactor() and reactor.connections[fileno(mine)].owner is mine
        b.send(b"hi")
        d.send(b"there")
        loop_until(private, lambda: peek(b) == b"hi")
        with pytest.raises(BlockingIOError):
            d.recv(10, socket.MSG_DONTWAIT)  # the other map was not served
        mine.close()
        assert reactor.is_closed() and private == {}
    finally:
        other.close()
        for s in (a, b, c, d):
            s.close()
    assert asyncore.socket_map == {}


def test_exit_now_and_errors_from_handle_error_leave_loop(amap: dict[int, Any]) -> None:
    """ExitNow, and an exception handle_error lets out, leave loop() as in asyncore, with the same object."""

    class Stopper(asyncore.dispatcher):
        def writable(self) -> bool:
            return True

        def handle_write(self) -> None:
            raise asyncore.ExitNow("stop")

    a, b = socket.socketpair()
    stopper = Stopper(a, map=amap)
    with pytest.raises(asyncore.ExitNow, match="stop"):
        asyncore.loop(timeout=0.05, map=amap, count=10)

    def reraise() -> None:
        raise sys.exc_info()[1]  # type: ignore[misc]  # what handle_error's bare `raise` does

    stopper.handle_write = lambda: 1 / 0  # type: ignore[method-assign,assignment]
    stopper.handle_error = reraise  # type: ignore[method-assign]
    with pytest.raises(ZeroDivisionError):
        asyncore.loop(timeout=0.05, map=amap, count=10, use_poll=True)
    b.close()


def test_exit_now_from_another_callback_of_the_turn_leaves_loop(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """ExitNow raised outside a dispatcher (a timer, or a signal handler landing there) leaves loop() after the turn.

    The reactor reports and swallows a callback's Exception; during an
    asyncore turn ExitNow is taken back from that report.  Other errors still
    reach the handler that was set, which is in place again after the turn.
    """
    seen: list[BaseException] = []
    real_reactor.set_exception_handler(lambda r, context: seen.append(context["exception"]))
    a, b = socket.socketpair()
    Toggle(a, map=amap)
    ran: list[str] = []

    def fail() -> None:
        ran.append("fail")
        raise ValueError("reported")

    def stop() -> None:
        ran.append("stop")
        raise asyncore.ExitNow("from a timer")

    real_reactor.call_soon(fail)
    real_reactor.call_soon(stop)
    real_reactor.call_soon(ran.append, "after")  # the rest of the turn still runs
    with pytest.raises(asyncore.ExitNow, match="from a timer"):
        asyncore.loop(timeout=0.05, map=amap, count=10)
    assert ran == ["fail", "stop", "after"]
    assert [type(e) for e in seen] == [ValueError]
    assert real_reactor.get_exception_handler() is not None
    real_reactor.call_soon(fail)
    asyncore.loop(timeout=0, map=amap, count=1)
    assert [type(e) for e in seen] == [ValueError, ValueError]  # the test's handler is back after the turn
    real_reactor.set_exception_handler(None)
    b.close()


def test_a_handler_set_during_a_turn_is_kept(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """A callback that installs an exception handler during an asyncore turn keeps it after the turn."""
    a, b = socket.socketpair()
    Toggle(a, map=amap)

    def mine(r: Reactor, context: dict[str, Any]) -> None:
        pass

    real_reactor.call_soon(real_reactor.set_exception_handler, mine)
    asyncore.loop(timeout=0, map=amap, count=1)
    assert real_reactor.get_exception_handler() is mine
    real_reactor.set_exception_handler(None)
    b.close()


def test_a_reactor_driven_elsewhere_still_follows_a_handlers_own_change(
    real_reactor: Reactor, amap: dict[int, Any]
) -> None:
    """When Reactor.run_once (not asyncore.loop) drives, the dispatcher that handled an event is asked again at once."""

    class Later(asyncore.dispatcher):
        """Reads, then wants to write: the reply goes out on a write event only."""

        pending = b""

        def writable(self) -> bool:
            return bool(self.pending)

        def handle_read(self) -> None:
            self.pending += self.recv(100)

        def handle_write(self) -> None:
            self.pending = self.pending[self.send(self.pending):]

    a, b = socket.socketpair()
    later = Later(a, map=amap)
    asyncore.loop(timeout=0, map=amap, count=1)  # registers the row for reading
    b.send(b"ping")
    for _ in range(50):
        if peek(b) == b"ping":
            break
        real_reactor.run_once(0.05)  # no asyncore turn: nothing asks before the wait
    assert peek(b) == b"ping" and later.pending == b""
    b.close()


def test_dispatchers_timers_and_a_request_server_share_one_loop(real_reactor: Reactor, amap: dict[int, Any]) -> None:
    """asyncore.loop() also runs the reactor's RequestServer and timers, in this thread."""
    server = RequestServer("127.0.0.1:0", reactor=real_reactor)
    try:
        ticks: list[float] = []
        timer = real_reactor.call_every(0.001, lambda: ticks.append(real_reactor.time()))
        a, b = socket.socketpair()
        Echo(a, map=amap)
        b.send(b"echo me")
        reply = real_reactor.request(server.address, "hello", timeout=5)
        loop_until(amap, lambda: reply.done() and len(ticks) >= 2)
        assert reply.result() == "Requested: hello"
        assert b.recv(100) == b"echo me"
        timer.cancel()
        b.close()
    finally:
        server.close()


def test_a_regular_file_dispatcher_is_always_ready(tmp_path: Any) -> None:
    """epoll refuses regular files; a file_dispatcher on one is dispatched every turn, as poll() would."""
    path = tmp_path / "data"
    path.write_bytes(b"abcdef")
    chunks: list[bytes] = []

    class Reader(asyncore.file_dispatcher):
        def writable(self) -> bool:
            return False

        def handle_read(self) -> None:
            chunks.append(self.recv(4))

        def handle_close(self) -> None:
            self.close()

    m: dict[int, Any] = {}
    with path.open("rb") as f:
        Reader(f, map=m)
    asyncore.loop(timeout=5, map=m, count=10)
    assert b"".join(chunks) == b"abcdef" and m == {}


N = 3000


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Lift RLIMIT_NOFILE for N connections (both ends) within the hard limit, or skip."""
    need = 2 * N + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need} descriptors needed for {N} connections")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_three_thousand_dispatchers_beside_a_request_server(
    many_fds: None, real_reactor: Reactor, amap: dict[int, Any]
) -> None:
    """3,000 connected echo dispatchers (fds far above 1024) are served in one loop while a RequestServer answers."""
    server = RequestServer("127.0.0.1:0", reactor=real_reactor)
    listener = Listener(amap, backlog=1024)
    clients: list[socket.socket] = []
    try:
        for start in range(0, N, 500):
            for _ in range(500):
                c = socket.socket()
                c.setblocking(False)
                assert c.connect_ex(listener.address) in (0, errno.EINPROGRESS)
                clients.append(c)
            loop_until(amap, lambda n=start + 500: listener.accepted == n)  # type: ignore[misc]
        assert len(amap) == N + 1 and max(amap) > 2 * N
        assert len(real_reactor.connections) == N + 1
        reply = real_reactor.request(server.address, "still here", timeout=5)
        for i, c in enumerate(clients):
            c.send(b"%d\n" % i)
        echoed = [b""] * N

        def all_echoed() -> bool:
            for i, c in enumerate(clients):
                if not echoed[i].endswith(b"\n"):
                    try:
                        echoed[i] += c.recv(100)
                    except BlockingIOError:
                        return False
            return True

        loop_until(amap, lambda: all_echoed() and reply.done())
        assert echoed == [b"%d\n" % i for i in range(N)]
        assert reply.result() == "Requested: still here"
    finally:
        for c in clients:
            c.close()
        server.close()
        asyncore.close_all(amap)
