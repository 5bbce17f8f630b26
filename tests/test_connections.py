"""The connection table row, its states and its summary helpers."""

from __future__ import annotations

import socket

import pytest

from reactor import Protocol, Reactor
from reactor.transport import table
from reactor.transport.connect import attach_socket
from reactor.transport.memory import MemoryTransport
from reactor.transport.stream import StreamTransport
from reactor.transport.table import (
    READABLE_STATES,
    TRANSITIONS,
    WRITABLE_STATES,
    Connection,
    State,
    change_state,
    connection_stats,
)


def test_row_snapshot_and_stats() -> None:
    """as_dict() reports a row; connection_stats() counts rows by state."""
    a, b = socket.socketpair()
    try:
        row = Connection(a, a.fileno(), owner="srv", state=State.OPEN, peer="peer", started=1.0)
        snap = row.as_dict()
        assert snap["state"] == "OPEN" and snap["pending_out"] == 0 and snap["peer"] == "peer"
        assert "OPEN" in repr(row)
        other = Connection(b, b.fileno(), owner="srv", state=State.HANDLING, peer="p2", started=2.0)
        table = {row.fd: row, other.fd: other}
        assert connection_stats(table) == {"OPEN": 1, "HANDLING": 1}
    finally:
        a.close()
        b.close()


def test_state_changes_only_along_the_table() -> None:
    """_set_state follows TRANSITIONS and refuses anything else with a clear error."""
    a, b = socket.socketpair()
    try:
        row = Connection(a, a.fileno(), owner=None, state=State.OPEN, peer=None, started=0.0)
        row._set_state(State.WRITE_CLOSED)
        with pytest.raises(RuntimeError, match="no transition from WRITE_CLOSED to OPEN"):
            row._set_state(State.OPEN)
        row._set_state(State.CLOSED)
        assert row.state == State.CLOSED
    finally:
        a.close()
        b.close()


def test_every_live_state_may_close() -> None:
    """Every state but CLOSED has a transition to CLOSED (the transport's close path relies on it)."""
    live = {name for name in vars(State).values() if isinstance(name, str) and name.isupper()} - {State.CLOSED}
    assert {state for state in live if (state, State.CLOSED) in TRANSITIONS} == live


def test_one_place_changes_a_state() -> None:
    """Table rows and memory transports share one _set_state, change_state; both refuse pairs outside the table."""
    assert Connection._set_state is change_state
    assert MemoryTransport._set_state is change_state
    assert StreamTransport._set_state is change_state


def test_the_close_path_follows_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing a transport goes through TRANSITIONS: a table without OPEN -> CLOSED refuses the close."""
    monkeypatch.setattr(table, "TRANSITIONS", TRANSITIONS - {(State.OPEN, State.CLOSED)})
    reactor = Reactor()
    a, b = socket.socketpair()
    try:
        transport = attach_socket(reactor, a, Protocol())
        with pytest.raises(RuntimeError, match="no transition from OPEN to CLOSED"):
            transport.abort()
        monkeypatch.undo()
        transport.abort()
        reactor.run_once(0)
        assert transport.state == State.CLOSED and reactor.connections == {}
    finally:
        b.close()
        reactor.close()


def test_the_state_sets_agree_with_the_table() -> None:
    """Every state named in TRANSITIONS is a State; the TLS states are readable, and only the handshake writable."""
    states = {value for name, value in vars(State).items() if name.isupper()}
    assert {s for pair in TRANSITIONS for s in pair} <= states
    assert {State.HANDSHAKING, State.SHUTTING_DOWN} <= READABLE_STATES
    assert State.HANDSHAKING in WRITABLE_STATES and State.SHUTTING_DOWN not in WRITABLE_STATES
    assert (State.WRITE_CLOSED, State.SHUTTING_DOWN) in TRANSITIONS
    assert (State.HANDSHAKING, State.OPEN) in TRANSITIONS and (State.OPEN, State.HANDSHAKING) in TRANSITIONS
