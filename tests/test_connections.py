"""The connection table row, its states and its summary helpers."""

from __future__ import annotations

import socket

import pytest

from reactor.transport.table import TRANSITIONS, Connection, State, connection_stats


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
