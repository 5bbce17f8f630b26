"""One answer to "which thread drives this reactor?", whoever asks and however it is driven.

`reactor.transport.threads.reactor_thread` is the one owner of that answer;
the listener, the datagram endpoint, ``socketserver``'s serving loop,
``reactor.easy`` and the asyncore map all ask it (through
`in_reactor_thread`).  These tests drive a reactor each way there is -- a
plain ``run()`` in a thread, the background serving thread, a
``serve_forever()`` loop of ``run_once``, a host loop in the main thread
(claimed, or seen by a transport), and not at all -- and check that the
answer is the driving thread, asked from the driver and from elsewhere, and
that each place decides by it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

import reactor
import reactor.transport.threads as threads_module
from reactor import Reactor, socketserver
from reactor.addresses import parse_address
from reactor.compat import asyncore
from reactor.easy import UDPServer
from reactor.transport.datagram import DatagramEndpoint
from reactor.transport.listener import Listener
from reactor.transport.threads import (
    ServeToken,
    claim_turns,
    driving,
    in_reactor_thread,
    join_background,
    reactor_thread,
    release_turns,
    serve_until_stopped,
    start_background,
    stop_serving,
)

LOOPBACK = "127.0.0.1"
MODES = ["run_in_thread", "background", "serve_forever", "host_claim", "host_seen", "undriven"]


def in_thread(function: Callable[[], Any]) -> Any:
    """Call ``function()`` in a new thread (one that does not drive anything) and return its result."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(function())
        except BaseException as exc:  # noqa: BLE001 -- handed back to the test
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join(5)
    assert not t.is_alive()
    if errors:
        raise errors[0]
    return result[0]


def on_reactor(r: Reactor, function: Callable[[], Any]) -> Any:
    """Call ``function()`` in a turn of ``r``'s driving thread (from another thread) and return its result."""
    result: list[Any] = []
    done = threading.Event()

    def call() -> None:
        result.append(function())
        done.set()

    r.call_soon_threadsafe(call)
    assert done.wait(5), "the driving thread did not run a turn"
    return result[0]


def thread_in_a_turn(r: Reactor, target: Callable[[], object]) -> threading.Thread:
    """Start a thread running ``target`` (a loop that runs ``r``'s turns); return it once it ran a turn."""
    turned = threading.Event()
    r.call_soon(turned.set)
    t = threading.Thread(target=target)
    t.start()
    assert turned.wait(5)
    return t


@contextmanager
def driven(r: Reactor, mode: str) -> Iterator[int | None]:
    """Drive ``r`` as ``mode`` says while the block runs; yield the ident of the driving thread (None: undriven)."""
    with ExitStack() as undo:  # undone last-in first-out: stop the driver, then wait for it
        driver: int | None = None
        if mode == "run_in_thread":
            t = thread_in_a_turn(r, r.run)
            undo.callback(t.join, 5)
            undo.callback(r.stop)
            driver = t.ident
        elif mode == "background":
            token = ServeToken("test")
            background = start_background(r, token)
            assert background is not None
            undo.callback(join_background, r, 5)
            undo.callback(stop_serving, r, token)
            driver = background.ident
        elif mode == "serve_forever":
            server = socketserver.TCPServer((LOOPBACK, 0), socketserver.BaseRequestHandler, reactor=r)
            undo.callback(server.server_close)
            t = thread_in_a_turn(r, server.serve_forever)
            undo.callback(t.join, 5)
            undo.callback(server.shutdown)
            driver = t.ident
        elif mode == "host_claim":
            undo.enter_context(driving(r))
            r.run_once(0)
            driver = threading.get_ident()
        elif mode == "host_seen":
            # A host loop that claims nothing, seen by a datagram endpoint it created.
            endpoint = DatagramEndpoint(r, LOOPBACK, 0, lambda b, n, a: None)
            undo.callback(endpoint.close)
            r.run_once(0)
            driver = threading.get_ident()
        yield driver


def host_turns(r: Reactor, mode: str) -> Callable[[], None]:
    """What lets a handed-over call run: a turn in this (host) thread, or nothing when another thread drives."""
    def turn() -> None:
        if mode.startswith("host_"):
            r.run_once(0.5)

    return turn


@pytest.mark.parametrize("mode", MODES)
def test_every_asker_gets_the_driving_thread(real_reactor: Reactor, mode: str) -> None:
    """From a bystander thread and from the driver itself, reactor_thread names the driver (None when undriven)."""
    r = real_reactor
    with driven(r, mode) as driver:
        assert in_thread(lambda: reactor_thread(r)) == driver
        assert in_thread(lambda: in_reactor_thread(r)) is (driver is None)
        if driver is None:
            assert reactor_thread(r) is None and in_reactor_thread(r)
        elif driver == threading.get_ident():
            assert reactor_thread(r) == driver and in_reactor_thread(r)
        else:
            assert on_reactor(r, lambda: (reactor_thread(r), in_reactor_thread(r))) == (driver, True)
            assert reactor_thread(r) == driver and not in_reactor_thread(r)
    assert reactor_thread(r) in (None, threading.get_ident())  # a driver that left is not named


@pytest.mark.parametrize("mode", MODES)
def test_listener_and_datagram_decide_by_it(
    real_reactor: Reactor, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listener built and a datagram sent from a bystander thread act there only when nobody else drives."""
    r = real_reactor
    acted_on: dict[str, int] = {}

    def spy(cls: type, name: str) -> None:
        method = getattr(cls, name)

        def recorded(self: Any, *args: Any) -> Any:
            acted_on[name] = threading.get_ident()
            return method(self, *args)

        monkeypatch.setattr(cls, name, recorded)

    spy(Listener, "_start_accepting")
    spy(DatagramEndpoint, "_send_now")
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # socket-ok: the test's own receiver
    raw.bind((LOOPBACK, 0))  # socket-ok
    with driven(r, mode) as driver:
        turn = host_turns(r, mode)
        endpoint = None
        if driver is not None and driver != threading.get_ident():
            endpoint = on_reactor(r, lambda: DatagramEndpoint(r, LOOPBACK, 0, lambda b, n, a: None))
        elif driver is not None:
            endpoint = DatagramEndpoint(r, LOOPBACK, 0, lambda b, n, a: None)
        bystander: list[int] = []

        def build() -> Listener:
            bystander.append(threading.get_ident())
            return Listener(r, parse_address("localhost:0"), object)

        listener = in_thread(build)
        while "_start_accepting" not in acted_on:
            turn()
        assert acted_on["_start_accepting"] == (bystander[0] if driver is None else driver)
        if endpoint is not None:
            in_thread(lambda: endpoint.send(b"hi", raw.getsockname()))
            while "_send_now" not in acted_on:
                turn()
            assert acted_on["_send_now"] == driver
            assert raw.recv(10) == b"hi"
        if driver is not None and driver != threading.get_ident():
            on_reactor(r, listener.close)
            if endpoint is not None:
                on_reactor(r, endpoint.close)
        else:
            listener.close()
            if endpoint is not None:
                endpoint.close()
    raw.close()


def test_a_datagram_endpoint_makes_its_creator_the_host(real_reactor: Reactor) -> None:
    """On an undriven reactor, the creator of a datagram endpoint is taken for the host loop, by every place."""
    r = real_reactor
    assert reactor_thread(r) is None
    endpoint = DatagramEndpoint(r, LOOPBACK, 0, lambda b, n, a: None)
    me = threading.get_ident()
    assert reactor_thread(r) == me and in_thread(lambda: reactor_thread(r)) == me
    assert not in_thread(lambda: in_reactor_thread(r))
    with driving(r):  # a claim supersedes the note, and giving it back forgets both
        assert in_thread(lambda: reactor_thread(r)) == me
    assert reactor_thread(r) is None
    endpoint.close()


def test_serve_forever_keeps_a_background_thread_waiting_until_it_ends(real_reactor: Reactor) -> None:
    """While serve_forever() runs a reactor's turns, a started server's thread waits, then takes over."""
    r = real_reactor
    server = socketserver.TCPServer((LOOPBACK, 0), socketserver.BaseRequestHandler, reactor=r)
    loop = thread_in_a_turn(r, server.serve_forever)
    token = ServeToken("started")
    background = start_background(r, token)
    assert background is not None and background is not loop
    assert reactor_thread(r) == loop.ident  # the claim wins: two threads never run turns
    assert on_reactor(r, threading.get_ident) == loop.ident
    server.shutdown()
    loop.join(5)
    assert on_reactor(r, threading.get_ident) == background.ident  # handed over when the claim ended
    assert reactor_thread(r) == background.ident
    stop_serving(r, token)
    assert join_background(r, 5)
    server.server_close()


def test_claims_nest_and_refuse_a_second_thread(real_reactor: Reactor) -> None:
    """A thread may claim twice; another thread's claim, or a claim inside run(), raises; release needs the claimer."""
    r = real_reactor
    claim_turns(r)
    claim_turns(r)
    with pytest.raises(RuntimeError, match="another thread"):
        in_thread(lambda: claim_turns(r))
    with pytest.raises(RuntimeError, match="holds no claim"):
        in_thread(lambda: release_turns(r))
    release_turns(r)
    assert reactor_thread(r) == threading.get_ident()
    release_turns(r)
    assert reactor_thread(r) is None
    seen: list[BaseException] = []
    r.set_exception_handler(lambda reactor, context: seen.append(context["exception"]))
    r.call_soon(claim_turns, r)  # inside run(): refused
    r.call_soon(r.stop)
    r.run()
    assert len(seen) == 1 and "reactor.run()" in str(seen[0])


def test_serving_inside_ones_own_claim_raises_instead_of_waiting_for_ever(real_reactor: Reactor) -> None:
    """A server's run() from the thread that holds the turns (a serve_forever handler) raises at once."""
    r = real_reactor
    with driving(r), pytest.raises(RuntimeError, match="already runs the reactor's turns"):
        serve_until_stopped(r, ServeToken("inside"))
    assert reactor_thread(r) is None


def test_each_place_hands_over_when_the_one_answer_says_another_thread_drives(
    real_reactor: Reactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With reactor_thread() naming another thread, listener, datagram, easy and asyncore all defer to it."""
    r = real_reactor
    other = threading.Thread(target=lambda: None)
    other.start()
    other.join()
    handed: list[Any] = []
    real_threadsafe = r.call_soon_threadsafe

    def record(callback: Callable[..., object], *args: Any) -> Any:
        handed.append(callback)
        return real_threadsafe(callback, *args)

    udp = UDPServer(lambda m, a, send: None, 0, host=LOOPBACK, reactor=r)
    monkeypatch.setattr(threads_module, "reactor_thread", lambda reactor: other.ident)
    monkeypatch.setattr(r, "call_soon_threadsafe", record)
    listener = Listener(r, parse_address("localhost:0"), object)
    assert not listener._accepting and len(handed) == 1  # listener: registration handed over
    udp.send("x", (LOOPBACK, 9))
    assert udp.counters().sent == 0 and len(handed) == 2  # datagram: send handed over
    udp.close(timeout=0.01)  # easy: close handed over (nobody runs it here: it gives up)
    assert not udp.closed and len(handed) == 3
    amap: dict[int, Any] = {}
    asyncore.set_reactor(r, amap)
    amap[-1] = None  # not empty, so poll() turns; the refusal comes before any dispatcher is asked
    with pytest.raises(RuntimeError, match="another thread"):
        asyncore.poll(0, amap)  # asyncore: refuses to run turns beside the driver
    amap.clear()
    asyncore.set_reactor(None, amap)
    monkeypatch.undo()
    r.run_once(0)  # what was handed over runs here now
    assert listener._accepting
    udp.close()
    listener.close()
    assert udp.closed


def test_only_the_owner_reads_which_thread_runs_a_reactor() -> None:
    """Outside core.py and transport/threads.py no module reads Reactor.thread_ident: they ask reactor_thread()."""
    package = Path(reactor.__file__).resolve().parent
    owners = {package / "core.py", package / "transport" / "threads.py"}
    readers = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path not in owners and "thread_ident" in path.read_text(encoding="utf-8")
    ]
    assert readers == []
