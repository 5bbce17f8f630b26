"""Per-server lifecycle: stopping one server never stops another on the same reactor."""

from __future__ import annotations

import socket
import threading

import pytest

from reactor import Reactor, RequestRefused, RequestServer, do_request, get_default_reactor
from reactor.easy import UDPServer
from reactor.transport.threads import background_thread


def refuses(address: tuple[str, int]) -> bool:
    """True when nothing listens at ``address`` any more."""
    with socket.socket() as probe:
        probe.settimeout(2)
        try:
            probe.connect(address)
        except ConnectionRefusedError:
            return True
    return False


@pytest.mark.timeout(60)
def test_stopping_one_of_two_servers_leaves_the_other_serving() -> None:
    """a.stop() on a shared reactor: b keeps answering, a's port refuses at once."""
    with Reactor() as r:
        a = RequestServer("localhost:0", reactor=r)
        b = RequestServer("localhost:0", reactor=r)
        a.start()
        b.start()
        assert do_request(a.address, "a", 5) == "Requested: a"
        a.stop()
        a.join(0.5)  # the thread serves b still: it must not end
        assert background_thread(r) is not None
        assert refuses(a.server_address)
        with pytest.raises(RequestRefused):
            do_request(a.address, "a again", 5)
        for i in range(20):
            assert do_request(b.address, str(i), 5) == f"Requested: {i}"
        b.stop()
        b.join(5)
        assert background_thread(r) is None
        a.close()
        b.close()


@pytest.mark.timeout(120)
def test_two_hundred_start_stop_cycles_on_the_default_reactor_answer_every_request() -> None:
    """start(); request; stop(); a new server start()s: 200 times, alternating classes, no request lost."""

    class Upper(RequestServer):
        def handle_request(self, request: str) -> str:
            return request.upper()

    answered = 0
    for i in range(200):
        cls = Upper if i % 2 else RequestServer
        server = cls("localhost:0")
        assert server.reactor is get_default_reactor()
        server.start()
        reply = do_request(server.address, f"req {i}", 5)
        assert reply == (f"REQ {i}" if i % 2 else f"Requested: req {i}")
        answered += 1
        server.stop()
        server.join(5)
    assert answered == 200
    assert background_thread(get_default_reactor()) is None


@pytest.mark.timeout(60)
def test_run_in_a_thread_per_server_as_easyservers_code_does() -> None:
    """Each server's run() in its own thread on one reactor: both serve; each run() returns on its own stop()."""
    with Reactor() as r:
        a = RequestServer("localhost:0", reactor=r)
        b = RequestServer("localhost:0", reactor=r)
        errors: list[BaseException] = []

        def run(server: RequestServer) -> None:
            try:
                server.run()
            except BaseException as exc:  # noqa: BLE001 -- reported by the assertion below
                errors.append(exc)

        ta = threading.Thread(target=run, args=(a,))
        tb = threading.Thread(target=run, args=(b,))
        ta.start()
        tb.start()
        assert do_request(a.address, "to a", 5) == "Requested: to a"
        assert do_request(b.address, "to b", 5) == "Requested: to b"
        a.stop()
        ta.join(5)
        assert not ta.is_alive() and tb.is_alive()
        assert do_request(b.address, "b still", 5) == "Requested: b still"  # tb took the serving over
        b.stop()
        tb.join(5)
        assert not tb.is_alive() and errors == []
        a.close()
        b.close()


@pytest.mark.timeout(30)
def test_run_returns_when_its_server_is_stopped_from_another_thread() -> None:
    """stop() from another thread: run() returns, the port is released."""
    with Reactor() as r:
        s = RequestServer("localhost:0", reactor=r)
        timer = threading.Timer(0.05, s.stop)
        timer.start()
        s.run()
        timer.join()
        assert refuses(s.server_address)
        s.close()


@pytest.mark.timeout(30)
def test_reactor_stop_still_stops_every_run() -> None:
    """Reactor.stop() stops the reactor itself: run() returns although the server was not stopped."""
    with Reactor() as r:
        s = RequestServer("localhost:0", reactor=r)
        r.call_soon(r.stop)
        s.run()
        # The server is still open: its port answers, on the same reactor, without another run().
        assert r.run_until_complete(r.request(s.address, "still there", timeout=5), timeout=10) == (
            "Requested: still there"
        )
        r.call_soon(s.stop)
        s.run()
        s.close()


@pytest.mark.timeout(30)
def test_udp_and_request_servers_stop_independently() -> None:
    """An easy UDP server and a RequestServer share a started reactor; stopping the UDP one spares the other."""
    with Reactor() as r:
        udp = UDPServer(lambda m, a, send: send(m, a), 0, host="127.0.0.1", reactor=r)
        req = RequestServer("localhost:0", reactor=r)
        udp.start()
        req.start()
        udp.stop()
        assert do_request(req.address, "x", 5) == "Requested: x"
        req.stop()
        req.join(5)
        assert background_thread(r) is None
        udp.close()
        req.close()
