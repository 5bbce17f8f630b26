"""reactor.transport.datagram and the WorkerPool of reactor.transport.threads.

Real UDP sockets on 127.0.0.1 port 0; faults injected by small fakes around
the socket; time never passes (a ManualClock) and nothing sleeps.  Worker
threads are waited for with events and joins, never with sleeps.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import run_until

from reactor import Reactor
from reactor.transport.datagram import Address, DatagramEndpoint
from reactor.transport.threads import WorkerPool

LOOPBACK = "127.0.0.1"


@pytest.fixture
def raw() -> Iterator[socket.socket]:
    """A plain blocking UDP socket on loopback, as a foreign peer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOPBACK, 0))
    s.settimeout(2.0)
    yield s
    s.close()


def collecting(reactor: Reactor, **kwargs: Any) -> tuple[DatagramEndpoint, list[tuple[bytes, Address]]]:
    """An endpoint whose callback keeps a copy of every datagram and its sender."""
    got: list[tuple[bytes, Address]] = []

    def on_datagram(buffer: bytearray, nbytes: int, address: Address) -> None:
        got.append((bytes(buffer[:nbytes]), address))

    return DatagramEndpoint(reactor, LOOPBACK, 0, on_datagram, **kwargs), got


class FakeSocket:
    """Wraps a real socket; ``sendto`` raises BlockingIOError while ``blocked``,
    ``recvmsg_into`` raises the errors queued in ``receive_errors`` first."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.blocked = True
        self.receive_errors: list[OSError] = []

    def sendto(self, data: bytes, address: Any) -> int:
        if self.blocked:
            raise BlockingIOError
        return self.real.sendto(data, address)

    def recvmsg_into(self, buffers: Any, ancillary_size: int = 0) -> Any:
        if self.receive_errors:
            raise self.receive_errors.pop(0)
        return self.real.recvmsg_into(buffers, ancillary_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


# ------------------------------------------------------------------ receiving


def test_datagrams_reach_the_callback_with_their_sender(reactor: Reactor, raw: socket.socket) -> None:
    """Each datagram is delivered as (buffer, nbytes, address), in order."""
    endpoint, got = collecting(reactor)
    for data in (b"one", b"two", b""):
        raw.sendto(data, endpoint.sockaddr)
    run_until(reactor, lambda: len(got) == 3)
    assert got == [(b"one", raw.getsockname()), (b"two", raw.getsockname()), (b"", raw.getsockname())]
    assert endpoint.counters().received == 3
    endpoint.close()


def test_oversize_datagram_is_counted_logged_and_dropped(
    reactor: Reactor, raw: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """A datagram longer than receive_size is never delivered cut: counted as truncated."""
    endpoint, got = collecting(reactor, receive_size=8)
    raw.sendto(b"x" * 20, endpoint.sockaddr)
    raw.sendto(b"12345678", endpoint.sockaddr)  # exactly receive_size: fine
    run_until(reactor, lambda: len(got) == 1)
    assert got[0][0] == b"12345678"
    counters = endpoint.counters()
    assert (counters.received, counters.truncated) == (2, 1)
    assert "receive_size=8" in caplog.text
    endpoint.close()


def test_receive_error_is_counted_and_the_loop_goes_on(reactor: Reactor, raw: socket.socket) -> None:
    """A socket error on one receive (a late ICMP error) is counted; the next datagram still arrives."""
    endpoint, got = collecting(reactor)
    real = endpoint.socket
    fake = FakeSocket(real)
    fake.receive_errors.append(ConnectionRefusedError())
    endpoint.socket = fake  # type: ignore[assignment]
    raw.sendto(b"after", endpoint.sockaddr)
    run_until(reactor, lambda: len(got) == 1)
    assert got[0][0] == b"after" and endpoint.counters().receive_errors == 1
    endpoint.socket = real
    endpoint.close()


def test_reads_are_bounded_per_readiness(reactor: Reactor, raw: socket.socket) -> None:
    """One readiness event reads at most max_datagrams_per_read datagrams."""
    endpoint, got = collecting(reactor)
    endpoint.max_datagrams_per_read = 4
    for i in range(10):
        raw.sendto(b"%d" % i, endpoint.sockaddr)
    run_until(reactor, lambda: len(got) > 0)
    assert len(got) == 4
    run_until(reactor, lambda: len(got) == 10)
    endpoint.close()


def test_callback_may_close_the_endpoint_mid_batch(reactor: Reactor, raw: socket.socket) -> None:
    """Closing from the callback stops the batch at once; nothing is read afterwards."""
    got: list[bytes] = []

    def on_datagram(buffer: bytearray, nbytes: int, address: Address) -> None:
        got.append(bytes(buffer[:nbytes]))
        endpoint.close()

    endpoint = DatagramEndpoint(reactor, LOOPBACK, 0, on_datagram)
    for _ in range(3):
        raw.sendto(b"x", endpoint.sockaddr)
    run_until(reactor, lambda: endpoint.closed)
    assert got == [b"x"] and endpoint.socket.fileno() == -1


def test_a_subclass_overrides_datagram_received(reactor: Reactor, raw: socket.socket) -> None:
    """Without a callback, datagram_received of a subclass gets the datagrams; with neither, TypeError."""

    class Upper(DatagramEndpoint):
        def datagram_received(self, buffer: bytearray, nbytes: int, address: Address) -> None:
            self.send(buffer[:nbytes].upper(), address)

    with pytest.raises(TypeError, match="on_datagram"):
        DatagramEndpoint(reactor, LOOPBACK, 0)
    endpoint = Upper(reactor, LOOPBACK, 0)
    raw.sendto(b"abc", endpoint.sockaddr)
    run_until(reactor, lambda: endpoint.counters().sent == 1)
    assert raw.recvfrom(10)[0] == b"ABC"
    endpoint.close()


def test_bind_failure_names_the_address(reactor: Reactor, raw: socket.socket) -> None:
    """Binding a port in use raises OSError quoting host:port, and leaves nothing registered."""
    before = set(reactor._wait.registrations())
    port = raw.getsockname()[1]
    with pytest.raises(OSError, match=f"cannot bind UDP 127.0.0.1:{port}"):
        DatagramEndpoint(reactor, LOOPBACK, port, lambda b, n, a: None)
    assert set(reactor._wait.registrations()) == before


# -------------------------------------------------------------------- sending


def test_send_queues_on_eagain_and_the_writer_lives_only_while_queued(reactor: Reactor, raw: socket.socket) -> None:
    """On EAGAIN datagrams wait in order; the writer is registered only while the queue is not empty."""
    endpoint = DatagramEndpoint(reactor, LOOPBACK, 0, lambda b, n, a: None)
    real = endpoint.socket
    fake = FakeSocket(real)
    endpoint.socket = fake  # type: ignore[assignment]
    for i in range(3):
        endpoint.send(b"m%d" % i, raw.getsockname())
    assert endpoint.counters().send_queue == 3 and endpoint.counters().sent == 0
    reactor.run_once(0)  # writable, but the kernel still says EAGAIN: kept
    assert endpoint.counters().send_queue == 3
    fake.blocked = False
    run_until(reactor, lambda: endpoint.counters().send_queue == 0)
    assert [raw.recvfrom(10)[0] for _ in range(3)] == [b"m0", b"m1", b"m2"]
    assert endpoint.counters().sent == 3
    assert reactor.remove_writer(real) is False  # gone with the queue
    endpoint.socket = real
    endpoint.close()


def test_send_queue_overflow_is_counted(reactor: Reactor) -> None:
    """A full send queue drops further datagrams and counts them as send_dropped."""
    endpoint = DatagramEndpoint(reactor, LOOPBACK, 0, lambda b, n, a: None, send_queue_size=2)
    real = endpoint.socket
    endpoint.socket = FakeSocket(real)  # type: ignore[assignment]
    for _ in range(5):
        endpoint.send(b"x", (LOOPBACK, 9))
    counters = endpoint.counters()
    assert (counters.send_queue, counters.send_dropped, counters.sent) == (2, 3, 0)
    endpoint.socket = real
    endpoint.close()
    assert endpoint.counters().send_queue == 0


def test_send_error_is_counted_not_raised(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """A datagram the kernel refuses (too large) is logged and counted as send_dropped."""
    endpoint = DatagramEndpoint(reactor, LOOPBACK, 0, lambda b, n, a: None)
    endpoint.send(b"x" * 70000, (LOOPBACK, 9))
    assert endpoint.counters().send_dropped == 1 and "could not send" in caplog.text
    endpoint.close()


def test_send_from_another_thread_is_handed_to_the_reactor(reactor: Reactor, raw: socket.socket) -> None:
    """A send from a foreign thread is queued with call_soon_threadsafe and goes out on the next turn."""
    endpoint = DatagramEndpoint(reactor, LOOPBACK, 0, lambda b, n, a: None)
    thread = threading.Thread(target=endpoint.send, args=(bytearray(b"hi"), raw.getsockname()))
    thread.start()
    thread.join(5)
    assert endpoint.counters().sent == 0  # not sent from the foreign thread
    run_until(reactor, lambda: endpoint.counters().sent == 1)
    assert raw.recvfrom(10)[0] == b"hi"
    endpoint.close()


def test_send_checks_its_argument_and_the_state(reactor: Reactor) -> None:
    """send() takes bytes-like data only, and refuses a closed endpoint on the reactor's thread."""
    endpoint = DatagramEndpoint(reactor, LOOPBACK, 0, lambda b, n, a: None)
    with pytest.raises(TypeError, match="bytes"):
        endpoint.send("text", (LOOPBACK, 9))  # type: ignore[arg-type]
    endpoint.close()
    with pytest.raises(RuntimeError, match="closed"):
        endpoint.send(b"x", (LOOPBACK, 9))


# -------------------------------------------------------------------- closing


def test_close_is_idempotent_and_unregisters(reactor: Reactor) -> None:
    """close() twice is fine; reader and writer are gone and the selector map is as before."""
    before = set(reactor._wait.registrations())
    endpoint = DatagramEndpoint(reactor, LOOPBACK, 0, lambda b, n, a: None)
    real = endpoint.socket
    endpoint.socket = FakeSocket(real)  # type: ignore[assignment]
    endpoint.send(b"x", (LOOPBACK, 9))  # queued: a writer is registered too
    endpoint.socket = real
    assert set(reactor._wait.registrations()) == before | {real.fileno()}
    endpoint.close()
    endpoint.close()
    assert endpoint.closed and real.fileno() == -1
    assert set(reactor._wait.registrations()) == before
    assert repr(endpoint) == "<DatagramEndpoint closed>"


def test_unclosed_endpoint_warns() -> None:
    """An endpoint dropped without close() emits ResourceWarning and closes its socket."""
    r = Reactor()
    endpoint = DatagramEndpoint(r, LOOPBACK, 0, lambda b, n, a: None)
    r.close()  # lets go of the reader registration
    with pytest.warns(ResourceWarning, match="unclosed DatagramEndpoint"):
        del endpoint


# ----------------------------------------------------------------- WorkerPool


def test_worker_pool_refuses_work_beyond_max_pending() -> None:
    """submit() returns False (and counts it) once max_pending jobs are queued or running."""
    pool = WorkerPool(max_workers=1, max_pending=2, thread_name_prefix="test-pool")
    release = threading.Event()
    done: list[int] = []

    def job(n: int) -> None:
        release.wait(5)
        done.append(n)

    assert [pool.submit(job, n) for n in range(4)] == [True, True, False, False]
    stats = pool.statistics()
    assert (stats.pending, stats.submitted, stats.rejected) == (2, 2, 2)
    release.set()
    pool.shutdown(wait=True)
    assert done == [0, 1] and pool.statistics().pending == 0
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(job, 9)


def test_worker_pool_shutdown_gives_back_the_slots_of_cancelled_jobs() -> None:
    """shutdown(cancel_futures=True) drops queued jobs, and their slots come back."""
    pool = WorkerPool(max_workers=1, max_pending=3)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def first() -> None:
        started.set()
        release.wait(5)
        ran.append("first")

    assert pool.submit(first)
    assert started.wait(5)
    assert pool.submit(ran.append, "second") and pool.submit(ran.append, "third")
    pool.shutdown(wait=False, cancel_futures=True)
    assert pool.statistics().pending == 1  # only the running job is left
    release.set()
    pool.shutdown(wait=True)  # idempotent; waits for the running job
    assert ran == ["first"] and pool.statistics().pending == 0


def test_worker_pool_shutdown_from_its_own_worker_does_not_wait_for_itself() -> None:
    """A job may shut its own pool down with wait=True without deadlocking."""
    pool = WorkerPool(max_workers=1, max_pending=1)
    finished = threading.Event()

    def job() -> None:
        pool.shutdown(wait=True)
        finished.set()

    assert pool.submit(job)
    assert finished.wait(5)
    pool.shutdown(wait=True)
    assert pool.is_shut_down


def test_worker_pool_logs_and_counts_a_failing_job(caplog: pytest.LogCaptureFixture) -> None:
    """A job that raises is logged with its traceback and counted; its slot comes back."""
    pool = WorkerPool(max_workers=1, max_pending=1)

    def job() -> None:
        raise KeyError("job bug")

    assert pool.submit(job)
    pool.shutdown(wait=True)
    stats = pool.statistics()
    assert (stats.failed, stats.pending) == (1, 0)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)


def test_worker_pool_checks_its_bounds() -> None:
    """max_workers and max_pending must be at least 1."""
    with pytest.raises(ValueError, match="max_pending"):
        WorkerPool(max_workers=1, max_pending=0)
