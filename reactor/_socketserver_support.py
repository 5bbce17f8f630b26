"""The reactor side of `reactor.socketserver`, kept apart from the stdlib surface.

Why a separate module: ``reactor/socketserver.py`` is a drop-in for the
standard module, and a reader comparing the two should find the same classes,
hooks and pipeline there, not reactor plumbing.  Everything a server needs
from its reactor lives here instead: registering and unregistering its
descriptor, pausing accepts, claiming the turns of the reactor for one
thread, the rows of the connection table, handing the reactor off in a forked
child, and watching children through pidfds.  None of it is public.

All of a server's reactor-side state is one `ServerBinding`; which events the
server waits for is derived from that state (`ServerBinding.update_interest`),
and the selector is touched only when the derived interest changes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .core import Reactor, TimerHandle
from .transport.listener import (
    ACCEPT_BACKOFF,
    ACCEPT_BATCH,
    AcceptExhaustion,
    ServerStatistics,
    accept_failed_is_resource_error,
)
from .transport.table import Connection, State
from .transport.threads import claim_turns, release_turns

if TYPE_CHECKING:
    from .socketserver import BaseServer

logger = logging.getLogger("reactor.socketserver")
_SOCK_STREAM = int(socket.SOCK_STREAM)

# The accept policy is the transport layer's: at most ACCEPT_BATCH requests
# per readiness of a listening socket (handle_request() takes one), and when
# accept runs out of descriptors or memory, the listener's AcceptExhaustion:
# the reserve descriptor given back to refuse the clients waiting in the
# backlog (EMFILE/ENFILE), one WARNING per episode and one INFO at its end,
# and ACCEPT_BACKOFF seconds without accepting.  Only the accepting itself
# stays here, because the stdlib's get_request() hook must keep doing it:
# the listener's own accept loop cannot serve, since it would bypass that
# overridable hook (and verify_request() and the mix-ins after it).
__all__ = ["ACCEPT_BATCH", "ServerBinding", "Threads", "NoThreads", "RequestThread", "SocketWriter"]

class ServerBinding:
    """All the reactor-side state of one server, and the operations on it."""

    __slots__ = (
        "_lock",
        "_reactor",
        "accepting",
        "backoff",
        "batch",
        "close_pending",
        "closed",
        "deferred",
        "driving",
        "exhaustion",
        "fd",
        "in_child",
        "owned",
        "pidfds",
        "resume_timer",
        "seen",
        "server",
        "serving_thread",
    )

    def __init__(self, server: BaseServer, reactor: Reactor | None) -> None:
        self.server = server
        self._reactor = reactor
        self.owned = reactor is None          # a private reactor, closed by server_close()
        self._lock = threading.Lock()         # guards the lazy creation of that reactor
        self.fd = -1                          # the descriptor registered with the reactor
        self.accepting = False                # its reader is registered right now
        self.backoff = False                  # paused after EMFILE and friends
        self.closed = False                   # server_close() was called
        self.in_child = False                 # a forked child: hands off the reactor
        self.batch = ACCEPT_BATCH
        self.seen = 0                         # readiness callbacks run (handle_request waits on it)
        self.driving = False                  # the server's own loop runs the turns
        self.deferred: BaseException | None = None
        self.serving_thread: int | None = None
        self.exhaustion: AcceptExhaustion | None = None  # made when the descriptor is first attached
        self.close_pending = False
        self.resume_timer: TimerHandle | None = None
        self.pidfds: dict[int, int] = {}      # ForkingMixIn: child pid -> pidfd

    @property
    def reactor(self) -> Reactor:
        """The reactor, created on first use when the server has a private one."""
        if self._reactor is None:
            with self._lock:
                if self._reactor is None:
                    self._reactor = Reactor()
        return self._reactor

    def existing_reactor(self) -> Reactor | None:
        """The reactor if there is one already (never creates it)."""
        return self._reactor

    # ------------------------------------------------------------ registration

    def attach(self) -> None:
        """Register the server's descriptor with the reactor (idempotent)."""
        if self.fd >= 0 or self.closed or self.in_child:
            return
        self.fd = self.server.fileno()  # type: ignore[attr-defined]
        if self.exhaustion is None:
            server = self.server
            # The reserve descriptor serves stream servers only: a datagram
            # server accepts no descriptors, so only ENOBUFS/ENOMEM reach it.
            stream = getattr(server, "socket_type", None) == _SOCK_STREAM
            name = f"{type(server).__name__} {getattr(server, 'server_address', '')}"
            self.exhaustion = AcceptExhaustion(name, logger, ServerStatistics(), reserve=stream)
        self.update_interest()

    def update_interest(self) -> None:
        """Watch the descriptor exactly when the server may take a request."""
        if self.fd < 0 or self.closed or self.in_child:
            return
        want = not self.backoff and not self.server._reactor_full()
        if want != self.accepting:
            if want:
                self.reactor.add_reader(self.fd, self.server._reactor_readable)
            else:
                self.reactor.remove_reader(self.fd)
            self.accepting = want

    def detach(self) -> None:
        """Unregister the server's descriptor (before it is closed)."""
        if self.fd >= 0 and self.accepting and not self.in_child and self._reactor is not None:
            self._reactor.remove_reader(self.fd)
        self.fd = -1
        self.accepting = False

    def release(self) -> None:
        """Detach for good; close the reactor if it is private."""
        self.detach()
        self.closed = True
        if self.exhaustion is not None:
            self.exhaustion.close()
        if self.resume_timer is not None:
            self.resume_timer.cancel()
            self.resume_timer = None
        reactor = self._reactor
        if reactor is None or self.in_child or reactor.is_closed():
            return
        for row in list(reactor.connections.values()):
            if row.owner is self.server:
                self.forget_if_closed(row)  # e.g. a request thread's overriding hook closed it
        if self.owned:
            if self.serving_thread is not None and self.serving_thread != threading.get_ident():
                self.close_pending = True  # serve_forever() is inside a turn: it closes it
            else:
                self.close_pending = False
                reactor.close()

    # ------------------------------------------------------------ running turns

    @contextlib.contextmanager
    def drive(self, batch: int) -> Iterator[Reactor]:
        """Claim the turns of the reactor for this thread while the block runs.

        The claim is `reactor.transport.threads`' (`claim_turns`), the one
        record of who drives a reactor: a ``RequestServer.run()`` or a
        background thread on the same reactor waits until it is given back.
        """
        reactor = self.reactor
        try:
            claim_turns(reactor)
        except RuntimeError:
            if reactor.is_running():
                raise RuntimeError(
                    "this server's reactor is already running (reactor.run()), and that serves "
                    "this server already; stop it with reactor.stop(), not shutdown()"
                ) from None
            raise RuntimeError(
                "another thread is already serving this server's reactor; serve_forever() "
                "on one server serves every server that shares its reactor"
            ) from None
        saved = self.driving, self.batch
        self.driving, self.batch = True, batch
        try:
            yield reactor
        finally:
            self.driving, self.batch = saved
            release_turns(reactor)

    def defer_or_raise(self, exc: Exception) -> None:
        """An exception escaped the server's hooks inside a reactor callback.

        When the server's own loop runs the turns, keep it for `reraise` (the
        stdlib ends serve_forever()/handle_request() with it); otherwise let
        the reactor's exception handler report it.
        """
        if not self.driving:
            raise exc
        self.deferred = exc

    def reraise(self) -> None:
        """Raise the exception kept by `defer_or_raise`, if any."""
        exc, self.deferred = self.deferred, None
        if exc is not None:
            raise exc

    # ------------------------------------------------------------ accept errors

    def get_request_failed(self, exc: OSError) -> None:
        """get_request() raised: ignore a spurious wakeup; out of resources, the listener's policy."""
        if isinstance(exc, (BlockingIOError, InterruptedError)):
            return  # readiness is only a hint
        exhaustion = self.exhaustion
        if accept_failed_is_resource_error(exc) and exhaustion is not None and not self.backoff and self.fd >= 0:
            # Refuses the waiting clients with the reserve descriptor (EMFILE/ENFILE), logs the episode.
            exhaustion.failed(self.server.socket, exc, ACCEPT_BACKOFF)
            self.backoff = True
            self.update_interest()
            self.resume_timer = self.reactor.call_later(ACCEPT_BACKOFF, self._end_backoff)
        else:
            logger.debug("%s: get_request() failed: %r", type(self.server).__name__, exc)

    def request_taken(self) -> None:
        """get_request() worked while out of resources: the episode is over."""
        exhaustion = self.exhaustion
        if exhaustion is not None and exhaustion.exhausted:
            exhaustion.recovered()

    def _end_backoff(self) -> None:
        self.backoff = False
        self.resume_timer = None
        if self.exhaustion is not None:
            self.exhaustion.retake_reserve()  # lost to someone else at the last refusal: try again
        self.update_interest()

    # ------------------------------------------------------------ connection table

    def track(self, request: socket.socket, client_address: Any) -> Connection | None:
        """Add a ``HANDLING`` row for an accepted stream connection."""
        try:
            fd = request.fileno()
        except (AttributeError, OSError):
            return None
        reactor = self.reactor
        row = Connection(request, fd, self.server, State.HANDLING, client_address, reactor.time())
        reactor.connections[fd] = row
        return row

    def forget(self, request: Any) -> None:
        """Remove the row of ``request``; call it while the socket is still open.

        Safe from a request thread: while the socket is open its fd cannot be
        reused, so a row under that fd is this request's (and the dict
        operations are atomic).
        """
        reactor = self._reactor
        if reactor is None:
            return
        try:
            fd = request.fileno()
        except (AttributeError, OSError):
            return
        table = reactor.connections
        row = table.get(fd)
        if row is not None and row.sock is request:
            row._set_state(State.CLOSED)
            table.pop(fd, None)

    def forget_if_closed(self, row: Connection) -> None:
        """Drop ``row`` if its socket was closed by a hook that bypassed `forget`.

        Called in the reactor's thread, the only one that adds rows.
        """
        if row.sock.fileno() < 0:
            table = self.reactor.connections
            if table.get(row.fd) is row:
                del table[row.fd]

    # ------------------------------------------------------------ processes

    def after_fork_in_child(self) -> None:
        """In a forked child: let go of the parent's reactor without touching it.

        The epoll set is shared with the parent, so unregistering anything
        here would unregister it there.  Closing our copy of its descriptor
        cannot change the parent's set, and makes any later use fail loudly.
        """
        self.in_child = True
        if self.exhaustion is not None:
            self.exhaustion.close()  # the child accepts nothing; the parent keeps its own reserve
        reactor = self._reactor
        if reactor is not None and not reactor.is_closed():
            with contextlib.suppress(OSError, RuntimeError):
                os.close(reactor.fileno())
        for fd in self.pidfds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.pidfds = {}

    def watch_child(self, pid: int, on_exit: Callable[[int], object]) -> bool:
        """Call ``on_exit(pid)`` from the reactor when ``pid`` exits (pidfd).

        False when it cannot (no ``pidfd_open``, or it failed): the caller
        reaps that child by polling instead.
        """
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None or self.closed:
            return False
        try:
            fd = pidfd_open(pid)
        except OSError:
            return False
        self.pidfds[pid] = fd
        self.reactor.add_reader(fd, on_exit, pid)
        return True

    def unwatch_child(self, pid: int) -> None:
        """Stop watching ``pid`` and close its pidfd (idempotent)."""
        fd = self.pidfds.pop(pid, None)
        if fd is None:
            return
        if self._reactor is not None:
            self._reactor.remove_reader(fd)
        os.close(fd)


class Threads:
    """The live non-daemon request threads, for server_close() to join.

    Each thread removes itself when it ends, so the set never holds more than
    the threads running now, however many requests were served (bpo-37193).
    """

    __slots__ = ("_live",)

    def __init__(self) -> None:
        self._live: set[threading.Thread] = set()

    def __len__(self) -> int:
        return len(self._live)

    def append(self, thread: threading.Thread) -> None:
        """Track ``thread`` unless it is a daemon."""
        if not thread.daemon:
            self._live.add(thread)

    def discard(self, thread: threading.Thread) -> None:
        """Forget ``thread`` (it has ended)."""
        self._live.discard(thread)

    def join(self) -> None:
        """Wait for every tracked thread."""
        for thread in list(self._live):
            thread.join()
            self._live.discard(thread)


class NoThreads:
    """A `Threads` that keeps nothing (``block_on_close`` is false)."""

    __slots__ = ()

    def __len__(self) -> int:
        return 0

    def append(self, thread: threading.Thread) -> None:
        """Keep nothing."""

    def discard(self, thread: threading.Thread) -> None:
        """Keep nothing."""

    def join(self) -> None:
        """Wait for nothing."""


class RequestThread(threading.Thread):
    """A request's thread; it leaves the server's registry when it ends."""

    def __init__(
        self, target: Callable[..., object], args: tuple[Any, ...], registry: Threads | NoThreads
    ) -> None:
        super().__init__(target=target, args=args)
        self._registry = registry

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._registry.discard(self)


class SocketWriter(io.BufferedIOBase):
    """An unbuffered writable file over a socket: every write is sent at once."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._sock.sendall(b)  # socket-ok: the stdlib's SocketWriter contract
        with memoryview(b) as view:
            return view.nbytes

    def fileno(self) -> int:
        return self._sock.fileno()
