"""DatagramEndpoint faults: a flood of oversized datagrams must not flood the log.

Real UDP sockets on 127.0.0.1; the reactor runs on a manual clock, so the
warning interval passes with ``clock.advance`` and nothing sleeps.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator

import pytest
from conftest import run_until

from reactor import ManualClock, Reactor
from reactor.transport.datagram import Address, DatagramEndpoint

LOOPBACK = "127.0.0.1"


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    """A plain UDP socket on loopback, as the sending peer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOPBACK, 0))
    yield s
    s.close()


@pytest.fixture
def endpoint(reactor: Reactor) -> Iterator[DatagramEndpoint]:
    """An endpoint that takes datagrams of at most 16 bytes and keeps the good ones."""
    got: list[bytes] = []

    def on_datagram(buffer: bytearray, nbytes: int, address: Address) -> None:
        got.append(bytes(buffer[:nbytes]))

    e = DatagramEndpoint(reactor, LOOPBACK, 0, on_datagram, receive_size=16)
    e.got = got  # type: ignore[attr-defined]
    yield e
    e.close()


def read_up_to(endpoint: DatagramEndpoint, truncated: int) -> Callable[[], bool]:
    """A predicate: the endpoint has read ``truncated`` oversized datagrams."""
    return lambda: endpoint.counters().truncated == truncated


def send_oversized(reactor: Reactor, endpoint: DatagramEndpoint, peer: socket.socket, count: int) -> None:
    """Send ``count`` oversized datagrams in batches small enough for the receive buffer; wait until all are read."""
    target = endpoint.counters().truncated + count
    while count:
        batch = min(count, 50)
        for _ in range(batch):
            peer.sendto(b"x" * 17, endpoint.sockaddr)
        count -= batch
        run_until(reactor, read_up_to(endpoint, target - count))


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The WARNING messages of the transport logger."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "reactor.transport"]


def test_oversized_flood_from_one_peer_logs_one_warning(
    reactor: Reactor, endpoint: DatagramEndpoint, peer: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """500 oversized datagrams from one peer: truncated counts 500, one WARNING, the rest at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="reactor.transport")
    send_oversized(reactor, endpoint, peer, 500)
    counters = endpoint.counters()
    assert (counters.truncated, counters.received) == (500, 500)
    warnings = warnings_logged(caplog)
    assert len(warnings) == 1
    assert str(peer.getsockname()) in warnings[0] and "receive_size=16" in warnings[0]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "longer than receive_size" in r.getMessage()]
    assert len(debug) == 499
    peer.sendto(b"fits", endpoint.sockaddr)  # good datagrams still get through
    run_until(reactor, lambda: endpoint.got == [b"fits"])  # type: ignore[attr-defined]


def test_next_interval_warns_again_with_the_count_since(
    reactor: Reactor,
    clock: ManualClock,
    endpoint: DatagramEndpoint,
    peer: socket.socket,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After truncated_warning_interval of reactor time one more WARNING says how many were dropped meanwhile."""
    send_oversized(reactor, endpoint, peer, 10)
    clock.advance(endpoint.truncated_warning_interval - 0.5)
    send_oversized(reactor, endpoint, peer, 10)
    assert len(warnings_logged(caplog)) == 1
    clock.advance(0.5)
    send_oversized(reactor, endpoint, peer, 1)
    warnings = warnings_logged(caplog)
    assert len(warnings) == 2 and "(19 more dropped since the last warning)" in warnings[1]
    assert endpoint.counters().truncated == 21
