"""One background thread per reactor, whichever layer starts it."""

from __future__ import annotations

import threading

from reactor import Reactor, RequestServer, do_request
from reactor.easy import UDPServer
from reactor.transport import threads
from reactor.transport.threads import ServeToken, background_thread, join_background, start_background


def test_udp_then_request_server_share_one_thread() -> None:
    """A UDP server and a RequestServer started on one reactor share one thread."""
    r = Reactor()
    udp = UDPServer(lambda m, a, send: None, port=0, host="127.0.0.1", reactor=r)
    req = RequestServer("localhost:0", reactor=r)
    before = threading.active_count()
    t1 = udp.start()
    t2 = req.start()
    assert t1 is t2 and t1 is background_thread(r)
    assert threading.active_count() == before + 1
    assert do_request(req.address, "x", 5) == "Requested: x"
    req.stop()  # ends req only: the thread still serves udp
    assert background_thread(r) is t1
    udp.stop()  # the last started server: the thread ends
    req.join(5)
    assert background_thread(r) is None
    udp.close()
    req.close()
    r.close()


def test_start_background_returns_none_when_run_in_foreground() -> None:
    """A reactor already run() in the foreground gets no extra thread."""
    with Reactor() as r:
        seen: list[object] = []
        r.call_soon(lambda: seen.append(start_background(r, ServeToken())))
        r.call_soon(r.stop)
        r.run()
        assert seen == [None]
        assert join_background(r, 1) is True


def test_join_waits_for_a_thread_that_has_left_but_not_ended() -> None:
    """join_background() waits for the last background thread even after it stopped serving.

    The thread clears its registration a moment before it ends; the moment
    is made long here by standing in a thread that is held open.
    """
    with Reactor() as r:
        release = threading.Event()
        leaving = threading.Thread(target=release.wait, args=(5,))
        leaving.start()
        state = threads._state(r)
        with state.cond:
            state.thread, state.ended = None, leaving  # what _background leaves behind
        assert background_thread(r) is None  # no longer serving...
        assert join_background(r, 0.01) is False  # ...but not ended: join waits for it
        release.set()
        assert join_background(r, 5) is True and not leaving.is_alive()


def test_stop_then_join_leaves_no_thread() -> None:
    """After the last stop(), join() returns with the start() thread ended."""
    with Reactor() as r:
        for _ in range(20):
            server = RequestServer("localhost:0", reactor=r)
            thread = server.start()
            assert thread is not None
            server.stop()
            server.join(5)
            assert not thread.is_alive()
            server.close()
