"""`Listener`: bind, listen, and the one bounded accept loop.

What can go wrong with a listening socket, and what we chose
-------------------------------------------------------------
*A burst of clients.*  The backlog defaults to ``SOMAXCONN``: a burst queues
in the kernel instead of being reset.  Each readiness event accepts until
``EAGAIN`` but at most `ACCEPT_BATCH` connections, so one busy listener cannot
starve the other servers of the reactor (Twisted and asyncio bound it too).

*The cost of a one-shot request.*  ``socket.accept()`` spends microseconds
converting family and type to enums; the raw ``_accept()`` that it wraps and
the C socket type do the same work without that.  The new socket stays in
blocking mode and the transport reads it at once with ``MSG_DONTWAIT``
(`StreamTransport._start`): a request that is already there is answered
without the connection ever touching the selector.  A process-wide default
socket timeout would turn those calls into polls, so then the socket is made
non-blocking at once.

*Too many connections.*  ``max_connections`` caps the rows a listener owns:
at the cap it stops watching the listening socket (the kernel backlog holds
the next clients) and resumes when a connection closes.

*Out of descriptors.*  ``EMFILE``/``ENFILE``/``ENOBUFS``/``ENOMEM`` on accept
would make a level-triggered selector report the socket readable forever: the
listener stops accepting for ``accept_backoff`` seconds instead of spinning
(asyncio does the same).  Pausing alone leaves the waiting clients in the
backlog, neither served nor refused, until they time out.  So each listener
keeps one *reserve descriptor* (``/dev/null``, opened with the listener): on
``EMFILE``/``ENFILE`` it closes the reserve, accepts and closes the clients
waiting in the backlog (at most `ACCEPT_BATCH`; they see EOF at once instead
of a hang), and opens the reserve again.  libuv keeps one such descriptor per
loop and Twisted one per process; we keep one per listener, because then the
descriptor has one owner that opens and closes it with the socket (no lock
between reactors in different threads, nothing left open after the last
listener closes), and each listener can always shed its own backlog.  It
costs one descriptor per listener.  An *episode* starts at the first resource
error after accepting worked and ends when an accept succeeds again: one
WARNING at its start, DEBUG for the errors within it, one INFO at its end
(counted as ``exhaustions`` and ``refused`` in `ServerStatistics`).

*Graceful shutdown.*  `Listener.shutdown` closes the listening socket at once
(a late client is refused by the kernel instead of being accepted and then
reset when the process exits), closes the connections that are idle (no byte
received, nothing to send), lets the others finish, and aborts what is left
when a reactor timer fires ``grace`` seconds later.  `Listener.drain` only
stops accepting and keeps the socket (its callers rely on that).

*Unix sockets.*  A socket file left behind by a dead server must be
replaced, and a live server's must not.  Connecting to find out (what this
module did once) sends the live server a connection it counts and hands to
its protocol as an empty request.  So each listener holds a lock file next
to its socket, ``<path>.lock`` (``flock``, for as long as it listens, with
its pid inside for the operator), as PostgreSQL does with
``.s.PGSQL.<port>.lock`` and Twisted with ``listenUNIX(wantPID=True)``: a
lock held by someone else means ``EADDRINUSE``; a lock we could take means no
listener of ours lives there, and the socket file is stale and replaced,
unless the kernel lists a listening socket bound to that path (Linux
``/proc/net/unix``: a server that keeps no lock file), which is again
``EADDRINUSE``.  Anything else at the path is never followed, replaced or
removed: a symbolic link (dangling or not) is reported as one, with its
target, and a regular file, a directory or a pipe as what it is.  On close
the listener unlinks the socket file only if it is still its own inode,
then removes the lock file and drops the lock.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import logging
import os
import socket
import stat
import threading
import warnings
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from ..addresses import Address, format_address
from ..core import Reactor, TimerHandle
from ..futures import Future
from .errors import report_user_error
from .stream import DEFAULT_LIMITS, StreamTransport, TransportLimits
from .table import State
from .threads import in_reactor_thread

__all__ = [
    "Listener",
    "ServerStatistics",
    "ACCEPT_BATCH",
    "ACCEPT_BACKOFF",
    "ACCEPT_RESOURCE_ERRNOS",
    "bind_listening_socket",
    "UnixPathClaim",
    "listening_socket_source",
    "accept_failed_is_resource_error",
    "RequestDurations",
    "DURATION_BUCKETS",
    "listeners_of",
    "enable_request_timing",
    "AcceptExhaustion",
]

logger = logging.getLogger("reactor.transport")

#: Connections accepted per readiness event of a listening socket, at most.
ACCEPT_BATCH = 64
#: Seconds a listener stops accepting after running out of descriptors or memory.
ACCEPT_BACKOFF = 0.1
#: ``accept()`` errors that mean "out of descriptors or memory": a listener
#: that gets one pauses accepting for a while instead of spinning on it.
ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_STREAM = int(socket.SOCK_STREAM)
_OPEN = State.OPEN
#: The states of a connection that may be idle (nothing received yet): open, or waiting for a ClientHello.
_IDLE = frozenset({State.OPEN, State.HANDSHAKING})
#: Resource errors that one free descriptor relieves (the reserve is of no use for memory).
_DESCRIPTOR_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})


def accept_failed_is_resource_error(exc: OSError) -> bool:
    """True when an ``accept()`` error means the process is out of descriptors or memory."""
    return exc.errno in ACCEPT_RESOURCE_ERRNOS


class ServerStatistics:
    """Counters of one server: accepted, active, completed, errors, timeouts, rejected, ..."""

    __slots__ = (
        "accepted",
        "active",
        "completed",
        "errors",
        "timeouts",
        "rejected",
        "accept_pauses",
        "waited",
        "exhaustions",
        "refused",
        "durations",
    )

    def __init__(self) -> None:
        self.accepted = 0  #: connections accepted
        self.active = 0  #: connections open now (rows in the table owned by this server)
        self.completed = 0  #: exchanges finished in full (counted by the protocol layer)
        self.errors = 0  #: handler and protocol errors, and peer I/O errors
        self.timeouts = 0  #: connections closed by a deadline (a TLS handshake's included)
        #: input refused: a failed TLS handshake, a bad PROXY header, an oversized
        #: or malformed request (counted by the layer or protocol that refused it)
        self.rejected = 0
        self.accept_pauses = 0  #: times accepting paused (limit reached or EMFILE)
        #: connections whose first read found nothing, so they were registered
        #: with the selector (accepted - waited took the fast path)
        self.waited = 0
        #: episodes of accept failing for lack of descriptors or memory
        self.exhaustions = 0
        #: clients accepted and closed at once because the process was out of descriptors
        self.refused = 0
        #: the request-duration histogram, while request timing is on (`enable_request_timing`);
        #: None otherwise, so the protocol layer's hot path pays one test and no clock read
        self.durations: RequestDurations | None = None

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {name: getattr(self, name) for name in _COUNTERS}

    def __repr__(self) -> str:
        return f"<ServerStatistics {self.as_dict()}>"


_COUNTERS = ServerStatistics.__slots__[:-1]

#: The upper bounds (seconds) of the request-duration buckets: Prometheus's
#: default buckets below 5 ms added, since a loopback request takes ~50 µs.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class RequestDurations:
    """A histogram of request durations (seconds), as Prometheus histograms count them.

    ``counts[i]`` is the number of observations ``<= bounds[i]`` and above the
    bound before it (not cumulative; the last count is above every bound);
    ``sum`` and ``count`` are their total and number.  `observe` is one
    ``bisect`` and three additions: it runs once per request while timing is on.
    """

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"bucket bounds must be increasing and unique, got {bounds!r}")
        self.bounds = tuple(float(bound) for bound in bounds)
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        """Count one request that took ``seconds``."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def as_dict(self) -> dict[str, Any]:
        """``bounds``, ``counts`` (per bucket, the last above every bound), ``sum`` and ``count``."""
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.sum, "count": self.count}


class _Registered:
    """The open listeners of one reactor, and whether new ones time their requests."""

    __slots__ = ("listeners", "timing")

    def __init__(self) -> None:
        # id -> listener, in the order they were opened; weak, so that a listener
        # dropped without close() still goes (and warns)
        self.listeners: weakref.WeakValueDictionary[int, Listener] = weakref.WeakValueDictionary()
        self.timing = False


# Per reactor, weakly: introspection (`reactor.control`) lists a reactor's servers
# from here, since the reactor itself knows rows, not servers.
_registry: weakref.WeakKeyDictionary[Reactor, _Registered] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def listeners_of(reactor: Reactor) -> list[Listener]:
    """The listeners of ``reactor`` that are not closed, oldest first."""
    registered = _registry.get(reactor)
    return list(registered.listeners.values()) if registered is not None else []


def enable_request_timing(reactor: Reactor) -> None:
    """Give every listener of ``reactor``, now and later, a `RequestDurations` histogram."""
    with _registry_lock:
        registered = _registry.setdefault(reactor, _Registered())
        registered.timing = True
        for listener in registered.listeners.values():
            if listener.stats.durations is None:
                listener.stats.durations = RequestDurations()


def _open_reserve() -> int:
    """A descriptor to give back when accept runs out of them, or -1 if none can be opened now."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


class AcceptExhaustion:
    """What a listening stream socket does when accept runs out of descriptors or memory.

    ``AcceptExhaustion(name, log, stats, reserve=True)``: the policy of the
    module docstring ("Out of descriptors"), for any owner of a listening
    socket that runs its own accept loop -- `Listener`, and
    ``reactor.socketserver``, whose ``get_request()`` hook must stay the
    one that accepts.  It holds the *reserve descriptor* (with
    ``reserve=True``), counts ``exhaustions`` and ``refused`` on ``stats``
    (any object with those two integer attributes, e.g.
    `ServerStatistics`), and logs one WARNING per episode on ``log`` (DEBUG
    within it, one INFO at its end).  Pausing accepts for the back-off is
    the owner's part, since each owner registers its socket its own way.

    Methods for the owner: `failed` (an accept raised one of
    `ACCEPT_RESOURCE_ERRNOS`), `recovered` (an accept worked while
    `exhausted`), `retake_reserve` (when accepting resumes), `close`.
    """

    __slots__ = ("name", "log", "stats", "reserve", "exhausted", "_keeps_reserve", "_refused_before")

    def __init__(self, name: str, log: logging.Logger, stats: Any, reserve: bool = True) -> None:
        self.name = name
        self.log = log
        self.stats = stats
        self._keeps_reserve = reserve
        self._refused_before = 0  # stats.refused when the episode began
        #: True within an episode of accept failing for lack of resources.
        self.exhausted = False
        #: The reserve descriptor (-1: none now).
        self.reserve = _open_reserve() if reserve else -1

    def failed(self, sock: Any, exc: OSError, backoff: float) -> None:
        """Accept on ``sock`` failed with a resource error: log once per episode, refuse the waiting clients.

        The owner pauses accepting for ``backoff`` seconds (named in the log).
        """
        stats = self.stats
        if not self.exhausted:
            self.exhausted = True
            self._refused_before = stats.refused
            stats.exhaustions += 1
            self.log.warning(
                "%s: accept failed (%s); refusing waiting clients and pausing accepts for %.2f s at a time "
                "until accepting works again",
                self.name,
                exc.strerror,
                backoff,
            )
        else:
            self.log.debug("%s: accept failed again (%s)", self.name, exc.strerror)
        if exc.errno in _DESCRIPTOR_ERRNOS:
            self._refuse_waiting(sock)

    def _refuse_waiting(self, sock: Any) -> None:
        """Give back the reserve descriptor, accept and close the clients in the backlog, take it again.

        The clients see EOF at once instead of waiting for a timeout.  If the
        reserve cannot be taken again (another thread took the slot), it is
        retried when accepting resumes.
        """
        accept = getattr(sock, "_accept", None)
        if self.reserve < 0 or accept is None or sock.gettimeout():
            # No reserve now, or a socket that cannot be drained without waiting
            # (no raw accept, or a timeout that would block the reactor): pause only.
            return
        os.close(self.reserve)
        self.reserve = -1
        refused = 0
        try:
            for _ in range(ACCEPT_BATCH):
                try:
                    fd, _peer = accept()
                except OSError as exc:
                    if exc.errno == errno.ECONNABORTED:
                        continue
                    break  # EAGAIN: nobody waits; EMFILE: the slot went elsewhere
                os.close(fd)
                refused += 1
        finally:
            self.reserve = _open_reserve()
        if refused:
            self.stats.refused += refused
            self.log.debug("%s: out of descriptors; refused %d waiting clients", self.name, refused)

    def retake_reserve(self) -> None:
        """Open the reserve again if the last refusal could not (call it when accepting resumes)."""
        if self._keeps_reserve and self.reserve < 0:
            self.reserve = _open_reserve()

    def recovered(self) -> None:
        """An accept worked again: the episode is over (one INFO)."""
        self.exhausted = False
        self.retake_reserve()
        self.log.info(
            "%s: accepting again (refused %d clients while out of resources)",
            self.name,
            self.stats.refused - self._refused_before,
        )

    def close(self) -> None:
        """Close the reserve descriptor; idempotent (no new one is taken after this)."""
        self._keeps_reserve = False
        reserve, self.reserve = self.reserve, -1
        if reserve >= 0:
            os.close(reserve)


class UnixPathClaim:
    """This process's claim on a Unix socket path: the lock held beside it, and the socket file's inode.

    Made by `bind_listening_socket`; `release` (when the listener closes)
    unlinks the socket file if it is still the one we bound, removes the lock
    file and drops the lock.  See the module docstring for why a lock file.
    """

    __slots__ = ("path", "lock_path", "inode", "_lock_fd")

    def __init__(self, path: str, lock_path: str, lock_fd: int) -> None:
        #: The socket's path, and the lock file beside it (``<path>.lock``).
        self.path = path
        self.lock_path = lock_path
        #: ``(st_dev, st_ino)`` of the socket file once it is bound (None before).
        self.inode: tuple[int, int] | None = None
        self._lock_fd = lock_fd

    def __repr__(self) -> str:
        held = "held" if self._lock_fd >= 0 else "released"
        return f"<UnixPathClaim {self.path!r} lock {held}>"

    def release(self) -> None:
        """Unlink the socket file if it is still ours, remove the lock file, drop the lock; idempotent."""
        fd = self._lock_fd
        if fd < 0:
            return
        self._lock_fd = -1
        try:
            if self.inode is not None and _inode(self.path) == self.inode:
                os.unlink(self.path)
            # Unlinked while still locked: a server starting now locks a new file.
            if _inode(self.lock_path) == _fd_inode(fd):
                os.unlink(self.lock_path)
        except OSError as exc:  # the directory went away, or its permissions changed
            logger.warning("could not remove unix socket %s or its lock file: %s", self.path, exc.strerror)
        finally:
            os.close(fd)


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _fd_inode(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _describe_file(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a socket"


def _take_lock(path: str, lock_path: str) -> int:
    """Open and lock ``lock_path``; the descriptor.  EADDRINUSE when another listener holds it."""
    import fcntl  # here, not at import: only a Unix listener needs it

    for _ in range(8):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise FileExistsError(
                    errno.EEXIST, f"the lock file {lock_path!r} of unix:{path} is a symbolic link; refusing it"
                ) from None
            message = f"cannot create the lock file {lock_path!r} of unix:{path}: {exc.strerror}"
            raise OSError(exc.errno, message) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OSError(
                errno.EADDRINUSE, f"a server is already listening on unix:{path} (it holds {lock_path})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if _inode(lock_path) == _fd_inode(fd):
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise FileExistsError(errno.EEXIST, f"the lock file {lock_path!r} of unix:{path} is not a regular file")
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # for the operator who finds it
            return fd
        os.close(fd)  # its owner removed it between our open and our lock: take the new one
    raise OSError(errno.EADDRINUSE, f"unix:{path}: its lock file {lock_path!r} keeps being replaced")


def _listening_on(path: str) -> bool:
    """True when the kernel lists a listening Unix socket bound to ``path`` (Linux ``/proc/net/unix``).

    A socket file with no lock beside it was bound by something else than
    a `Listener`, or by one that died.  This tells the two apart without
    connecting; where ``/proc/net/unix`` cannot be read, False.
    """
    names = {path, os.path.abspath(path)}
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="surrogateescape") as table:
            next(table, None)  # the header
            for line in table:
                fields = line.rstrip("\n").split(None, 7)
                if len(fields) == 8 and fields[7] in names and int(fields[3], 16) & _SO_ACCEPTCON:
                    return True
    except (OSError, ValueError):
        return False
    return False


#: The flag ``/proc/net/unix`` shows for a listening socket (``__SO_ACCEPTCON``).
_SO_ACCEPTCON = 0x10000


def _claim_unix_path(path: str) -> UnixPathClaim:
    """Lock ``<path>.lock``, then make sure nothing but a stale socket file is at ``path`` (removed)."""
    if len(os.fsencode(path)) >= 108:
        raise ValueError(f"unix socket path too long ({len(os.fsencode(path))} bytes, max 107): {path!r}")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"directory for unix socket does not exist: {directory!r}")
    # Absolute, so that the claim is released at the same place if the working directory changes.
    path = os.path.abspath(path)
    lock_path = path + ".lock"
    claim = UnixPathClaim(path, lock_path, _take_lock(path, lock_path))
    try:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return claim
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            dangling = "" if os.path.exists(path) else ", which does not exist"
            raise FileExistsError(
                errno.EEXIST,
                f"unix:{path} is a symbolic link to {target!r}{dangling}; "
                "refusing to bind there or to remove it (bind the target's path, or remove the link)",
            )
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(
                errno.EEXIST, f"unix:{path} exists and is {_describe_file(st.st_mode)}; refusing to replace it"
            )
        if _listening_on(path):
            raise OSError(errno.EADDRINUSE, f"a server that holds no {lock_path} is listening on unix:{path}")
        os.unlink(path)  # a stale socket file: we hold its lock, and nothing listens on it
        logger.info("replaced stale unix socket %s", path)
        return claim
    except BaseException:
        claim.release()
        raise


#: What a listening socket source answers: a socket and our claim on its Unix
#: path (None: not ours to unlink), or None to let the address be bound as usual.
ListeningSocketSource = Callable[[Address, int, bool], "tuple[socket.socket, UnixPathClaim | None] | None"]
_sources: list[ListeningSocketSource] = []


@contextlib.contextmanager
def listening_socket_source(source: ListeningSocketSource) -> Iterator[None]:
    """While the block runs, `bind_listening_socket` asks ``source(address, backlog, reuse_port)`` first.

    The seam through which a process adopts listening sockets bound by
    someone else, e.g. the worker processes of `reactor.workers`, which serve
    the sockets their supervisor bound: servers built inside the block take
    the adopted socket instead of binding their own.  A socket handed over
    with inode None is never unlinked by its listener.
    """
    _sources.append(source)
    try:
        yield
    finally:
        _sources.remove(source)


def bind_listening_socket(
    address: Address, backlog: int = socket.SOMAXCONN, reuse_port: bool = False, *, adopt: bool = True
) -> tuple[socket.socket, UnixPathClaim | None]:
    """A non-blocking listening stream socket bound to ``address``.

    Returns the socket and, for a Unix path, the `UnixPathClaim` (the lock
    held beside the path, and the socket file's inode) whose ``release()``
    the owner calls when it closes the socket.  A ``bind()`` error is raised again
    naming the address (``cannot bind 127.0.0.1:8000: Address already in
    use``), with the same ``errno`` and the original error as ``__cause__``.
    Inside `listening_socket_source` the source is asked first (unless
    ``adopt`` is false: a source binding a fresh socket itself says so).
    """
    for source in reversed(_sources if adopt else ()):
        adopted = source(address, backlog, reuse_port)
        if adopted is not None:
            adopted[0].setblocking(False)
            return adopted
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    claim = None
    try:
        if address.family == socket.AF_UNIX:
            claim = _claim_unix_path(str(address.sockaddr))
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(address.sockaddr)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot bind {address.text}: {exc.strerror}") from exc
        if claim is not None:
            claim.inode = _inode(claim.path)
        try:
            sock.listen(backlog)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {address.text}: {exc.strerror}") from exc
        sock.setblocking(False)
    except BaseException:
        sock.close()
        if claim is not None:
            claim.release()
        raise
    return sock, claim


class Listener:
    """A listening stream socket that accepts into the connection table.

    Every accepted connection becomes a `StreamTransport` row owned by this
    listener, with a protocol from ``protocol_factory()``.  The listener is
    listening when the constructor returns.

    Methods for the owner: `close`, `shutdown`, `drain`, `stop_accepting`,
    `connections`, `statistics`; attributes ``address`` (the string form), ``sockaddr``
    (the bound socket address), ``stats`` and ``limits``.
    """

    def __init__(
        self,
        reactor: Reactor,
        address: Address,
        protocol_factory: Callable[[], Any],
        *,
        backlog: int = socket.SOMAXCONN,
        max_connections: int = 1024,
        accept_backoff: float = ACCEPT_BACKOFF,
        reuse_port: bool = False,
        limits: TransportLimits = DEFAULT_LIMITS,
        log: logging.Logger = logger,
        log_accepts: bool = False,
        name: str = "server",
    ) -> None:
        if max_connections <= 0:
            raise ValueError(f"max_connections must be positive, got {max_connections!r}")
        if not accept_backoff >= 0:
            raise ValueError(f"accept_backoff must be >= 0, got {accept_backoff!r}")
        if not callable(protocol_factory):
            raise TypeError(f"protocol_factory must be callable, got {protocol_factory!r}")
        self.reactor = reactor
        self.protocol_factory = protocol_factory
        self.max_connections = max_connections
        self.accept_backoff = accept_backoff
        self.limits = limits
        self.log = log
        self.log_accepts = log_accepts
        self.name = name
        self.stats = ServerStatistics()
        self._accepting = False
        self._closed = False  # no more accepting (drain, stop_accepting, close)
        self._resume_timer: TimerHandle | None = None
        self._drain_futures: list[Future[None]] = []
        self._grace_timer: TimerHandle | None = None
        self._sock, self._unix_claim = bind_listening_socket(address, backlog, reuse_port)
        self._fd = self._sock.fileno()
        self._family = int(address.family)
        #: The bound socket address (the real port when 0 was asked).
        self.sockaddr: Any = self._sock.getsockname()
        #: The bound address as a string that `parse_address` accepts.
        self.address: str = format_address(address.family, self.sockaddr)
        #: The out-of-descriptors policy, with the reserve descriptor.
        self._exhaustion = AcceptExhaustion(self.address, log, self.stats)
        with _registry_lock:
            registered = _registry.setdefault(reactor, _Registered())
            registered.listeners[id(self)] = self
            if registered.timing:
                self.stats.durations = RequestDurations()
        if in_reactor_thread(reactor):
            self._start_accepting()
        else:
            reactor.call_soon_threadsafe(self._start_accepting)

    def __repr__(self) -> str:
        state = " closed" if self._sock.fileno() < 0 else ""
        return f"<Listener {self.name} {self.address} active={self.stats.active}{state}>"

    @property
    def _reserve(self) -> int:
        """The reserve descriptor of the accept policy (-1: none now)."""
        return self._exhaustion.reserve

    @property
    def socket(self) -> socket.socket:
        """The listening socket (do not accept from it yourself)."""
        return self._sock

    def fileno(self) -> int:
        """The listening socket's descriptor."""
        return self._fd

    def is_serving(self) -> bool:
        """True while the listener accepts (or will resume accepting) connections."""
        return not self._closed and self._sock.fileno() >= 0

    # ------------------------------------------------------------ accepting

    def _start_accepting(self) -> None:
        if not self._accepting and not self._closed:
            self._accepting = True
            self.reactor.add_reader(self._fd, self._on_acceptable)

    def _pause_accepting(self, resume_after: float | None) -> None:
        if self._accepting:
            self._accepting = False
            self.stats.accept_pauses += 1
            self.reactor.remove_reader(self._fd)
        if resume_after is not None and self._resume_timer is None:
            self._resume_timer = self.reactor.call_later(resume_after, self._resume_after_backoff)

    def _resume_after_backoff(self) -> None:
        self._resume_timer = None
        self._exhaustion.retake_reserve()  # lost to someone else at the last refusal: try again
        if self.stats.active < self.max_connections:
            self._start_accepting()

    def _on_acceptable(self) -> None:
        accept = self._sock._accept  # type: ignore[attr-defined]
        new_socket = _socket.socket
        set_nonblocking = socket.getdefaulttimeout() is not None
        family = self._family
        stats = self.stats
        reactor = self.reactor
        table = reactor.connections
        limits = self.limits
        factory = self.protocol_factory
        now = reactor.time()  # one clock read per readiness event, not per connection
        exhaustion = self._exhaustion
        exhausted = exhaustion.exhausted
        for _ in range(ACCEPT_BATCH):
            if stats.active >= self.max_connections:
                self._pause_accepting(None)
                return
            try:
                fd, peer = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                    exhaustion.failed(self._sock, exc, self.accept_backoff)
                    self._pause_accepting(self.accept_backoff)
                    return
                if exc.errno == errno.ECONNABORTED:
                    continue
                raise
            if exhausted:
                exhausted = False
                exhaustion.recovered()
            sock = new_socket(family, _STREAM, 0, fd)
            if set_nonblocking:
                sock.setblocking(False)
            stats.accepted += 1
            stats.active += 1
            transport = StreamTransport(reactor, sock, fd, self, peer, now, _OPEN, limits)
            table[fd] = transport
            if self.log_accepts:
                self.log.info("%s: accepted connection from %s", self.address, peer)
            try:
                protocol = factory()
            except Exception as exc:
                report_user_error(reactor, f"{self.address}: protocol_factory() raised", exc, handler=factory)
                transport._close_now(exc)
                continue
            transport._start(protocol)

    # ------------------------------------------------------------ rows

    def _connection_waits(self, transport: StreamTransport) -> None:
        self.stats.waited += 1

    def _connection_closed(self, transport: StreamTransport, exc: BaseException | None) -> None:
        stats = self.stats
        stats.active -= 1
        if exc is not None:
            if isinstance(exc, TimeoutError):
                stats.timeouts += 1
            else:
                stats.errors += 1
        if not self._accepting and not self._closed and self._resume_timer is None:
            if stats.active < self.max_connections and self._sock.fileno() >= 0:
                self._start_accepting()
        if not stats.active and (self._drain_futures or self._grace_timer is not None):
            self._finish_drain()

    def connections(self) -> list[Any]:
        """The rows of the connection table this listener owns (read from the table)."""
        return [row for row in self.reactor.connections.values() if row.owner is self]

    def statistics(self) -> dict[str, int]:
        """The counters as a dict."""
        return self.stats.as_dict()

    # ------------------------------------------------------------ lifecycle

    def stop_accepting(self) -> None:
        """Accept no new connection (the socket stays open); idempotent."""
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        if self._accepting:
            self._accepting = False
            if not self.reactor.is_closed():
                self.reactor.remove_reader(self._fd)
        self._closed = True

    def drain(self) -> Future[None]:
        """Stop accepting; a future that completes when this listener owns no connection.

        The socket stays open (the kernel still completes handshakes into the
        backlog); for a shutdown that refuses new clients use `shutdown`.
        """
        self.stop_accepting()
        return self._no_rows_left()

    def shutdown(self, grace: float) -> Future[None]:
        """Shut down gracefully: a future that completes when this listener owns no connection.

        At once: stops accepting, closes the listening socket (later clients
        are refused; a Unix path is unlinked if it is still ours) and closes
        every idle connection (``OPEN``, no byte received, nothing buffered
        to send).  The others may finish for ``grace`` seconds of reactor
        time; then the rest are aborted.  So the future completes at most
        ``grace`` seconds and one reactor turn from now.  Calling it again
        returns another such future; the earlier deadline wins.  Call it
        from the reactor's thread.
        """
        if not grace >= 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
        self.stop_accepting()
        self._close_socket()
        rows = self.connections()
        idle = [row for row in rows if row.state in _IDLE and not row.bytes_in and not row.get_write_buffer_size()]
        for row in idle:
            row._close_now(None)  # as in close(): the server ended it, so later writes are dropped quietly
        fut = self._no_rows_left()
        if self.stats.active:
            due = self.reactor.time() + grace
            timer = self._grace_timer
            if timer is None or due < timer.when:
                if timer is not None:
                    timer.cancel()
                self._grace_timer = self.reactor.call_at(due, self._grace_expired)
        self.log.info(
            "%s: shutting down; closed %d idle connections, %d may finish within %.1f s",
            self.address,
            len(idle),
            self.stats.active,
            grace,
        )
        return fut

    def _grace_expired(self) -> None:
        self._grace_timer = None
        rows = self.connections()
        if rows:
            self.log.info("%s: shutdown grace is over; aborting %d connections", self.address, len(rows))
        for row in rows:
            row._close_now(None)
        self._finish_drain()

    def _no_rows_left(self) -> Future[None]:
        fut: Future[None] = self.reactor.create_future()
        self._drain_futures.append(fut)
        if not self.stats.active:
            self._finish_drain()
        return fut

    def _finish_drain(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        futures, self._drain_futures = self._drain_futures, []
        for fut in futures:
            if not fut.done():
                fut.set_result(None)

    def close(self) -> None:
        """Stop accepting, abort every connection this listener owns, close the socket.

        Unlinks a Unix socket path if it is still ours.  Idempotent, and it
        also ends a `shutdown` in progress at once; call it from the
        reactor's thread or after the reactor stopped.
        """
        self.stop_accepting()
        # Not row.abort(): the server closed these, not their protocols, so a
        # protocol that writes before its connection_lost arrives is dropped
        # quietly, as after a peer reset.
        for row in self.connections():
            row._close_now(None)
        self._close_socket()
        self._finish_drain()

    def _close_socket(self) -> None:
        """Close the listening socket and the reserve, unlink our Unix path; after `stop_accepting`."""
        self._exhaustion.close()
        if self._sock.fileno() < 0:
            return
        registered = _registry.get(self.reactor)
        if registered is not None:
            with _registry_lock:
                registered.listeners.pop(id(self), None)
        self._sock.close()
        if self._unix_claim is not None:
            self._unix_claim.release()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None and sock.fileno() >= 0:
            _warn(f"unclosed {self!r}", ResourceWarning, source=self)
            sock.close()
            claim = getattr(self, "_unix_claim", None)
            if claim is not None:
                claim.release()
        exhaustion = getattr(self, "_exhaustion", None)
        if exhaustion is not None:
            exhaustion.close()
