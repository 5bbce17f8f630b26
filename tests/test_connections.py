"""The connection table row and its summary helpers."""

from __future__ import annotations

import socket

from reactor.connections import Connection, State, connection_stats


def test_row_snapshot_and_stats() -> None:
    """as_dict() reports a row; connection_stats() counts rows by state."""
    a, b = socket.socketpair()
    try:
        row = Connection(a, a.fileno(), owner="srv", state=State.READING, peer="peer", started=1.0)
        row.inbuf = b"abc"
        row.outbuf = b"12345"
        row.sent = 2
        snap = row.as_dict()
        assert snap["state"] == "READING" and snap["buffered_in"] == 3 and snap["pending_out"] == 3
        assert "READING" in repr(row)
        other = Connection(b, b.fileno(), owner="srv", state=State.WRITING, peer="p2", started=2.0)
        table = {row.fd: row, other.fd: other}
        assert connection_stats(table) == {"READING": 1, "WRITING": 1}
    finally:
        a.close()
        b.close()
