"""The connection table: one row per open stream connection, and its states.

The asyncore approach the socketserver documentation describes: instead of a
thread (or a coroutine stack) per connection, the reactor keeps an explicit
table of the connections that are not finished yet, each with the state it is
in.  `Reactor.connections` maps fd -> row.  The transport layer adds a row
when it accepts or opens a connection and removes it when the socket is
closed; limits, drain, close and introspection read the table, and no surface
keeps a private copy.

For a connection the transport layer drives, the row *is* the transport
(`reactor.transport.stream.StreamTransport` extends `Connection`), so there is
one object per connection and nothing to keep in sync.  A `reactor.socketserver`
request, whose socket belongs to the standard library's handler code, is a
plain `Connection` row in ``HANDLING`` for as long as the handler has it.
An asyncore dispatcher (`reactor.compat.asyncore`) is a row that points at
it; its state follows the dispatcher's own flags (``connecting``,
``connected``, ``accepting``), so it adds the two states a dispatcher can be
in that no transport is: ``UNCONNECTED`` (a socket just created, or a
datagram socket that is never connected) and ``LISTENING``.

States and transitions
----------------------
A row's state changes in one place, `change_state` (a row's ``_set_state``,
for the `Connection` rows and for the memory transports of tests alike),
which refuses a transition that is not in `TRANSITIONS`; the transport's
close path goes through it too.  A layer above the transport that has
states of its own puts them in the row, so that the table shows them: the
TLS layer's handshake (``HANDSHAKING``) and its closing exchange of
``close_notify`` (``SHUTTING_DOWN``).

==============  ==============  =============================================
from            to              when
==============  ==============  =============================================
(new)           CONNECTING      an outgoing connect was started
(new)           OPEN            a connection was accepted
(new)           HANDLING        a socketserver request was accepted
(new)           UNCONNECTED     a dispatcher took a socket that is not connected
(new)           LISTENING       a dispatcher took a listening socket
UNCONNECTED     CONNECTING      a dispatcher's ``connect()`` was started
UNCONNECTED     OPEN            the dispatcher's socket turned out connected
UNCONNECTED     LISTENING       a dispatcher's ``listen()``
UNCONNECTED     CLOSED          the dispatcher was closed
LISTENING       CLOSED          the dispatcher was closed
CONNECTING      OPEN            the connect completed
CONNECTING      CLOSED          the connect failed, timed out or was aborted
OPEN            READ_CLOSED     the peer sent EOF and the protocol keeps writing
OPEN            WRITE_CLOSED    ``write_eof()``: no more writing, still reading
OPEN            CLOSING         ``close()`` with output still buffered
OPEN            CLOSED          closed, aborted, failed or timed out
READ_CLOSED     CLOSING         ``close()`` with output still buffered
READ_CLOSED     CLOSED          closed (also: ``write_eof()`` on this side)
WRITE_CLOSED    CLOSING         ``close()`` with the EOF not yet flushed
WRITE_CLOSED    CLOSED          the peer's EOF arrived, or closed
CLOSING         CLOSED          the buffer was flushed, or aborted/failed
HANDLING        CLOSED          the request's socket was shut down
OPEN            HANDSHAKING     a TLS layer started its handshake
HANDSHAKING     OPEN            the handshake completed
HANDSHAKING     READ_CLOSED     the peer sent EOF in the middle of it
HANDSHAKING     CLOSING         it failed; the TLS alert is still being sent
HANDSHAKING     CLOSED          it failed, timed out, or the peer reset
WRITE_CLOSED    SHUTTING_DOWN   TLS ``close()``: our ``close_notify`` is sent,
                                the peer's awaited (input is discarded)
SHUTTING_DOWN   CLOSING         the peer's came; ours is still being sent
SHUTTING_DOWN   CLOSED          the peer's came, or it closed, or time ran out
==============  ==============  =============================================

Which selector events a row waits for is derived from its state (and, for a
transport, from whether the protocol paused reading and whether output is
buffered); the selector is touched only when that derived interest changes.
"""

from __future__ import annotations

import _socket
from typing import Any

__all__ = [
    "Connection",
    "State",
    "TRANSITIONS",
    "READABLE_STATES",
    "WRITABLE_STATES",
    "WRITE_DONE_STATES",
    "change_state",
    "connection_stats",
]


class State:
    """The states a row can be in (plain strings: cheap to set and to log)."""

    CONNECTING = "CONNECTING"
    OPEN = "OPEN"
    READ_CLOSED = "READ_CLOSED"
    WRITE_CLOSED = "WRITE_CLOSED"
    CLOSING = "CLOSING"
    HANDLING = "HANDLING"
    UNCONNECTED = "UNCONNECTED"
    LISTENING = "LISTENING"
    CLOSED = "CLOSED"
    HANDSHAKING = "HANDSHAKING"
    SHUTTING_DOWN = "SHUTTING_DOWN"


_S = State
#: Every allowed ``(from, to)`` pair; see the module docstring's table.
TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        (_S.CONNECTING, _S.OPEN),
        (_S.CONNECTING, _S.CLOSED),
        (_S.OPEN, _S.READ_CLOSED),
        (_S.OPEN, _S.WRITE_CLOSED),
        (_S.OPEN, _S.CLOSING),
        (_S.OPEN, _S.CLOSED),
        (_S.READ_CLOSED, _S.CLOSING),
        (_S.READ_CLOSED, _S.CLOSED),
        (_S.WRITE_CLOSED, _S.CLOSING),
        (_S.WRITE_CLOSED, _S.CLOSED),
        (_S.CLOSING, _S.CLOSED),
        (_S.HANDLING, _S.CLOSED),
        (_S.UNCONNECTED, _S.CONNECTING),
        (_S.UNCONNECTED, _S.OPEN),
        (_S.UNCONNECTED, _S.LISTENING),
        (_S.UNCONNECTED, _S.CLOSED),
        (_S.LISTENING, _S.CLOSED),
        (_S.OPEN, _S.HANDSHAKING),
        (_S.HANDSHAKING, _S.OPEN),
        (_S.HANDSHAKING, _S.READ_CLOSED),
        (_S.HANDSHAKING, _S.CLOSING),
        (_S.HANDSHAKING, _S.CLOSED),
        (_S.WRITE_CLOSED, _S.SHUTTING_DOWN),
        (_S.SHUTTING_DOWN, _S.CLOSING),
        (_S.SHUTTING_DOWN, _S.CLOSED),
    }
)
#: The states in which a transport reads from its peer.
READABLE_STATES: frozenset[str] = frozenset({_S.OPEN, _S.WRITE_CLOSED, _S.HANDSHAKING, _S.SHUTTING_DOWN})
#: The states in which a transport takes writes (during a handshake, the TLS layer's).
WRITABLE_STATES: frozenset[str] = frozenset({_S.OPEN, _S.READ_CLOSED, _S.HANDSHAKING})
#: The states in which our side has finished writing and the transport still reads.
WRITE_DONE_STATES: frozenset[str] = frozenset({_S.WRITE_CLOSED, _S.SHUTTING_DOWN})


def change_state(row: Any, new: str) -> None:
    """Move ``row`` (a table row, or a transport with a ``state``) to ``new``: the one place a state changes.

    RuntimeError, naming the row, for a pair that is not in `TRANSITIONS`.
    """
    if (row.state, new) not in TRANSITIONS:
        raise RuntimeError(f"{row!r}: no transition from {row.state} to {new}")
    row.state = new


class Connection:
    """One row of `Reactor.connections`.

    Attributes: ``sock`` (the socket; for accepted connections the C socket
    type `_socket.socket` that `socket.socket` extends), ``fd``, ``owner``
    (the listener, connector or server that owns the row), ``state`` (a
    `State`), ``peer`` (the remote address), ``started`` (reactor time when
    the row was created), ``bytes_in`` / ``bytes_out`` (counters),
    ``deadline`` (reactor time at which the row will be closed, or None) and
    ``timer`` (the handle of the timer that enforces it, if any).
    """

    __slots__ = ("sock", "fd", "owner", "state", "peer", "started", "bytes_in", "bytes_out", "deadline", "timer")

    def __init__(self, sock: _socket.socket, fd: int, owner: Any, state: str, peer: Any, started: float) -> None:
        self.sock = sock
        self.fd = fd
        self.owner = owner
        self.state = state
        self.peer = peer
        self.started = started
        self.bytes_in = 0
        self.bytes_out = 0
        self.deadline: float | None = None
        self.timer: Any = None

    #: Change the state along the table (`change_state`).
    _set_state = change_state

    def get_write_buffer_size(self) -> int:
        """Bytes accepted for sending and not yet handed to the kernel (0 for a plain row)."""
        return 0

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} fd={self.fd} {self.state} peer={self.peer!r} "
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
            "pending_out": self.get_write_buffer_size(),
            "deadline": self.deadline,
            "started": self.started,
        }


def connection_stats(table: dict[int, Connection]) -> dict[str, int]:
    """Count the rows of a connection table by state."""
    counts: dict[str, int] = {}
    for row in table.values():
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts
