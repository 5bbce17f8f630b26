"""The connection table: one row per partially finished stream connection.

The asyncore approach the socketserver documentation describes: instead of a
thread (or a coroutine stack) per connection, the server keeps an explicit
table of connections that are not finished yet, each with the state it is in.
`Reactor.connections` maps fd -> `Connection`.  Server and client layers add a
row when a connection is accepted or opened and remove it when it closes; the
table is the single source of truth for timeouts, limits, graceful shutdown
and introspection.  Nothing about a connection lives in a closure or a thread
stack.

A row is deliberately plain: ``__slots__``, no methods on the hot path beyond
what the owning layer calls.  The state is one of the ``State`` strings
(``READING → HANDLING → WRITING → CLOSED`` for request/reply; other layers may
use their own, e.g. ``CONNECTING``).  Which selector events a connection
waits for is derived from that state by its owner.
"""

from __future__ import annotations

import _socket
import errno
from typing import Any

__all__ = ["Connection", "State", "connection_stats", "ACCEPT_RESOURCE_ERRNOS"]


#: ``accept()`` errors that mean "out of descriptors or memory": a listener
#: that gets one pauses accepting for a while instead of spinning on it.
ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class State:
    """The states a row can be in (plain strings: cheap to set and to log)."""

    CONNECTING = "CONNECTING"
    READING = "READING"
    HANDLING = "HANDLING"
    WRITING = "WRITING"
    CLOSED = "CLOSED"


class Connection:
    """One row of `Reactor.connections`.

    Attributes: ``sock`` (the socket: for connections a server accepted, the
    C socket type `_socket.socket` that `socket.socket` extends, with the same
    ``recv``/``send``/``close``), ``fd``, ``owner`` (the server, or the
    client operation, that owns the row), ``state``, ``inbuf`` (bytes read and
    not yet consumed), ``outbuf`` (bytes still to send), ``sent`` (offset into
    ``outbuf``), ``deadline`` (reactor time after which the owner closes it,
    or None), ``bytes_in`` / ``bytes_out`` (counters), ``peer`` (the remote
    address), ``started`` (reactor time when the row was created) and
    ``timer`` (the owner's deadline timer handle, if any).
    """

    __slots__ = (
        "sock",
        "fd",
        "owner",
        "state",
        "inbuf",
        "outbuf",
        "sent",
        "deadline",
        "bytes_in",
        "bytes_out",
        "peer",
        "started",
        "timer",
        "extra",
    )

    def __init__(self, sock: _socket.socket, fd: int, owner: Any, state: str, peer: Any, started: float) -> None:
        self.sock = sock
        self.fd = fd
        self.owner = owner
        self.state = state
        self.inbuf = b""
        self.outbuf = b""
        self.sent = 0
        self.deadline: float | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.peer = peer
        self.started = started
        self.timer: Any = None
        #: Free for the owning layer (e.g. a parser, a future).
        self.extra: Any = None

    def __repr__(self) -> str:
        return (
            f"<Connection fd={self.fd} {self.state} peer={self.peer!r} "
            f"in={self.bytes_in} out={self.bytes_out} owner={type(self.owner).__name__}>"
        )

    def as_dict(self) -> dict[str, Any]:
        """A snapshot of the row for logs and introspection."""
        return {
            "fd": self.fd,
            "state": self.state,
            "peer": self.peer,
            "owner": self.owner,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "buffered_in": len(self.inbuf),
            "pending_out": len(self.outbuf) - self.sent,
            "deadline": self.deadline,
            "started": self.started,
        }


def connection_stats(table: dict[int, Connection]) -> dict[str, int]:
    """Count the rows of a connection table by state."""
    counts: dict[str, int] = {}
    for row in table.values():
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts
