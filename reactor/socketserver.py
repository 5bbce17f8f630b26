"""Generic socket server classes, driven by a reactor.

A drop-in replacement for the standard library's ``socketserver``: the same
classes, attributes, hooks and semantics, with every server's socket watched
by a `reactor.core.Reactor` instead of a private ``select`` loop.  Existing
code changes one import line: ``from reactor import socketserver``.

For socket-based servers:

- address family: ``AF_INET{,6}`` (`TCPServer`, `UDPServer`) or ``AF_UNIX``
  (`UnixStreamServer`, `UnixDatagramServer`);
- socket type: ``SOCK_STREAM`` (a handler per connection) or ``SOCK_DGRAM``
  (a handler per datagram);
- how requests are handled: synchronously, one at a time, in the serving
  thread (the plain classes), in a new thread per request (`ThreadingMixIn`)
  or in a new process per request (`ForkingMixIn`).

The class tree is the standard library's::

        BaseServer --> TCPServer --> UnixStreamServer
                           |
                           v
                       UDPServer --> UnixDatagramServer

The module's names are those of the running interpreter's ``socketserver``
and only those: ``ForkingUnixStreamServer`` and ``ForkingUnixDatagramServer``
exist on Python 3.12 and later, as they do in the standard library.

Methods for the caller: ``__init__(server_address, RequestHandlerClass,
bind_and_activate=True, *, reactor=None)``, ``serve_forever()``,
``shutdown()``, ``handle_request()``, ``server_close()``, ``fileno()``, and
the context-manager protocol.  Methods that may be overridden:
``server_bind()``, ``server_activate()``, ``get_request()``,
``handle_timeout()``, ``verify_request()``, ``process_request()``,
``shutdown_request()``, ``close_request()``, ``service_actions()``,
``handle_error()``, ``server_close()``; for derived classes,
``finish_request()``.  Request handlers override ``setup()``, ``handle()``
and ``finish()``.

How it differs, and why
-----------------------
*No polling.*  The standard ``serve_forever(poll_interval)`` wakes every
``poll_interval`` seconds to notice ``shutdown()`` (its own XXX comment asks
for a wakeup fd instead).  Here the listening socket is registered with
``reactor.add_reader`` once, in ``server_activate()``, and ``serve_forever()``
runs reactor turns: a turn wakes on I/O, on a timer, or on the wakeup that
``shutdown()`` sends with ``call_soon_threadsafe``.  An idle server sleeps in
``epoll_wait`` with no timeout.  ``poll_interval`` is accepted and ignored;
``service_actions()`` still runs after every turn of ``serve_forever()``.

*One reactor per server, unless told otherwise.*  Standard-library code runs
each server's ``serve_forever()`` in a thread of its own (the interpreter's
own test suite starts twenty at once), and a reactor is single-threaded: two
threads running turns of one reactor would race.  So a server built without
``reactor=`` gets a private `Reactor` (three descriptors: an epoll set and a
wakeup socketpair) that ``server_close()`` closes, and behaves exactly like
the standard server.  The default reactor is not used implicitly for the same
reason: it would silently put independent servers in one thread.  Sharing is
opt-in: servers built with the same ``reactor=`` -- TCP, UDP and Unix alike,
and the package's other servers -- are served by one thread, through
``reactor.run()`` or through ``serve_forever()`` of any one of them.  Running
one reactor's turns from two threads at once raises `RuntimeError`.

*Out of descriptors.*  When ``get_request()`` fails with ``EMFILE`` or
``ENFILE``, a stream server does what the package's listeners do
(`reactor.transport.listener.AcceptExhaustion`): it gives back the one
*reserve descriptor* it keeps open from activation to ``server_close()``,
accepts and closes the clients waiting in the backlog (they see EOF at once
instead of a hang), takes the reserve again, and stops accepting for
``ACCEPT_BACKOFF`` seconds; ``ENOBUFS``/``ENOMEM`` only pause.  One WARNING
per episode, one INFO when accepting works again.  The listener's own accept
loop is not used: requests must keep going through the overridable
``get_request()``, ``verify_request()`` and ``process_request()``, so only
the policy is shared, not the loop.

*Synchronous means synchronous.*  As in the standard library, the plain
classes run the handler in the serving thread, one request at a time: a
handler that blocks blocks every server on that reactor.  Use `ThreadingMixIn`
or `ForkingMixIn` for concurrency, or ``reactor.reqrep.RequestServer``, which
keeps partially finished requests in the connection table instead.  Every
accepted stream connection is a row of ``reactor.connections`` (state
``HANDLING``) until ``shutdown_request()``/``close_request()`` closes it.

*Processes.*  After ``fork`` an epoll set is shared by parent and child: a
child that unregistered a descriptor would unregister it for the parent too.
The child therefore closes its copy of the epoll descriptor before running
the handler, and never runs the parent's reactor.  Children are reaped through
a pidfd each (Linux 5.3+) watched by the reactor, so an exit is noticed at
once; at ``max_children`` the server stops accepting until a child exits,
instead of blocking in ``waitpid``.  Without ``pidfd_open`` it falls back to
the standard ``waitpid(WNOHANG)`` in ``service_actions()``.

*Small, deliberate differences.*  ``request_queue_size`` is
``socket.SOMAXCONN``, so a burst of clients queues in the kernel instead of
being dropped (set 5 for the old value).  ``shutdown()`` called from the
serving thread (a handler, a reactor callback) requests the stop and returns
at once, where the standard library deadlocks.  An exception escaping a
server's hooks ends that server's ``serve_forever()``/``handle_request()`` as
in the standard library; when the reactor is driven by something else
(``reactor.run()``, another event loop) the reactor's exception handler
reports it and the loop goes on.  ``handle_error()`` prints the traceback to
stderr (the stdlib contract); the module logs on ``reactor.socketserver``.
This module is longer than the house's ~600 lines because it is the whole
stdlib surface with its documentation; the reactor plumbing (registration,
driving, connection rows, fork hand-off, pidfds) lives in
``reactor._socketserver_support`` so that this file reads like the module it
replaces.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

from ._socketserver_support import ACCEPT_BATCH as _ACCEPT_BATCH
from ._socketserver_support import NoThreads as _NoThreads
from ._socketserver_support import RequestThread as _RequestThread
from ._socketserver_support import ServerBinding as _ServerBinding
from ._socketserver_support import SocketWriter as _SocketWriter
from ._socketserver_support import Threads as _Threads
from .core import Reactor
from .transport.table import Connection as _Connection

__all__ = [
    "BaseRequestHandler",
    "BaseServer",
    "DatagramRequestHandler",
    "StreamRequestHandler",
    "TCPServer",
    "ThreadingMixIn",
    "ThreadingTCPServer",
    "ThreadingUDPServer",
    "UDPServer",
]
if hasattr(os, "fork"):
    __all__ += ["ForkingMixIn", "ForkingTCPServer", "ForkingUDPServer"]
if hasattr(socket, "AF_UNIX"):
    __all__ += [
        "ThreadingUnixDatagramServer",
        "ThreadingUnixStreamServer",
        "UnixDatagramServer",
        "UnixStreamServer",
    ]
    # The module follows the running interpreter's standard library: these two
    # arrived in 3.12, so they exist here exactly where they exist there.
    if sys.version_info >= (3, 12) and hasattr(os, "fork"):
        __all__ += ["ForkingUnixDatagramServer", "ForkingUnixStreamServer"]

#: Linux accepted sockets never inherit O_NONBLOCK; BSD and macOS ones do.
_ACCEPT_INHERITS_NONBLOCKING = not sys.platform.startswith("linux")
_MSG_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)
_Socket = socket.socket


def _noop() -> None:
    """Scheduled by shutdown() only to wake a reactor blocked in select."""


class BaseServer:
    """Base class for server classes.

    Methods for the caller:

    - ``__init__(server_address, RequestHandlerClass, *, reactor=None)``
    - serve_forever(poll_interval=0.5)
    - shutdown()
    - handle_request()  # if you do not use serve_forever()
    - fileno() -> int   # for selector

    Methods that may be overridden:

    - server_bind()
    - server_activate()
    - get_request() -> request, client_address
    - handle_timeout()
    - verify_request(request, client_address)
    - server_close()
    - process_request(request, client_address)
    - shutdown_request(request)
    - close_request(request)
    - service_actions()
    - handle_error()

    Methods for derived classes:

    - finish_request(request, client_address)

    Class variables that may be overridden by derived classes or instances:
    timeout, address_family, socket_type, allow_reuse_address,
    allow_reuse_port.  Instance variables: server_address,
    RequestHandlerClass, socket, and (new) reactor.
    """

    timeout: float | None = None
    socket: _Socket

    def __init__(
        self,
        server_address: Any,
        RequestHandlerClass: Callable[..., Any],
        *,
        reactor: Reactor | None = None,
    ) -> None:
        """Constructor.  May be extended, do not override.

        ``reactor``: serve this server from that reactor, together with
        whatever else it serves; by default the server gets a private one.
        """
        self.server_address = server_address
        self.RequestHandlerClass = RequestHandlerClass
        self.__is_shut_down = threading.Event()
        self.__shutdown_request = False
        self.__serving = False
        self._reactor_binding = _ServerBinding(self, reactor)

    @property
    def reactor(self) -> Reactor:
        """The reactor serving this server (a private one unless ``reactor=`` was given)."""
        return self._reactor_binding.reactor

    def server_activate(self) -> None:
        """Called by the constructor to activate the server.  May be overridden."""

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Handle requests until `shutdown()`, running the server's reactor.

        Every server sharing the reactor is served too.  Nothing polls: the
        loop wakes on I/O, timers and `shutdown()`, so ``poll_interval`` is
        ignored.  `service_actions` runs after every turn.
        """
        self.__is_shut_down.clear()
        self.__serving = True
        b = self._reactor_binding
        try:
            b.attach()
            with b.drive(_ACCEPT_BATCH) as reactor:
                b.serving_thread = threading.get_ident()
                while not self.__shutdown_request:
                    reactor.run_once(None)
                    b.reraise()
                    if self.__shutdown_request:
                        break
                    self.service_actions()
        finally:
            b.serving_thread = None
            self.__shutdown_request = False
            self.__serving = False
            self.__is_shut_down.set()
            if b.close_pending:
                b.release()

    def shutdown(self) -> None:
        """Stop the `serve_forever` loop and wait until it has stopped.

        From another thread it returns once ``serve_forever()`` has exited.
        When no ``serve_forever()`` runs it returns at once (the standard
        library blocks for ever there), and a ``serve_forever()`` that starts
        later sees the request and returns.  From the serving thread itself --
        a synchronous handler, a reactor callback -- it requests the stop and
        returns at once; the standard library deadlocks there.
        """
        self.__shutdown_request = True
        b = self._reactor_binding
        if b.serving_thread == threading.get_ident() or not self.__serving:
            return
        reactor = b.existing_reactor()
        if reactor is not None:
            try:
                reactor.call_soon_threadsafe(_noop)  # wake the serving thread now
            except RuntimeError:
                pass  # closed: nothing to wake
        self.__is_shut_down.wait()

    def service_actions(self) -> None:
        """Called after every turn of the `serve_forever` loop.

        May be overridden by a subclass / mixin for work to do in the loop.
        For periodic work, a reactor timer (``self.reactor.call_every``)
        wakes the loop only when due.
        """

    # The pipeline of one request: handle_request() (or the reactor, when the
    # socket is readable) -> get_request() -> verify_request() ->
    # process_request(), which may hand the request to a thread or a process
    # -> finish_request(), which instantiates the handler that does the work
    # -> shutdown_request() -> close_request().

    def handle_request(self) -> None:
        """Handle one request, waiting at most ``timeout`` seconds for it.

        Honours ``self.timeout`` and a timeout set on ``self.socket``, and
        calls `handle_timeout` when no request came in time.  While it waits
        it runs reactor turns, so servers sharing the reactor are served too.
        """
        timeout = self.socket.gettimeout()
        if timeout is None:
            timeout = self.timeout
        elif self.timeout is not None:
            timeout = min(timeout, self.timeout)
        b = self._reactor_binding
        b.attach()
        seen = b.seen
        wait = timeout
        with b.drive(1) as reactor:
            deadline = None if timeout is None else reactor.time() + timeout
            while True:
                reactor.run_once(wait)
                b.reraise()
                if b.seen != seen:
                    return None
                if deadline is not None:
                    wait = deadline - reactor.time()
                    if wait <= 0:
                        return self.handle_timeout()

    def _reactor_readable(self) -> None:
        """Reactor callback: requests are waiting; take up to a batch of them."""
        b = self._reactor_binding
        b.seen += 1
        try:
            for _ in range(b.batch):
                if not self._handle_request_noblock():
                    break
                if self.__shutdown_request or not b.accepting:
                    break
        except Exception as exc:  # noqa: BLE001 -- re-raised or reported, never dropped
            b.defer_or_raise(exc)

    def _handle_request_noblock(self) -> bool:
        """Handle one request without blocking; False when none was waiting.

        The socket is readable (or was: readiness is a hint), so
        `get_request` does not block.
        """
        try:
            request, client_address = self.get_request()  # type: ignore[attr-defined]
        except OSError as exc:
            self._reactor_binding.get_request_failed(exc)
            return False
        self._reactor_binding.request_taken()
        row = self._reactor_track(request, client_address)
        if self.verify_request(request, client_address):
            try:
                self.process_request(request, client_address)
            except Exception:  # noqa: BLE001 -- the stdlib contract: any error goes to handle_error
                self.handle_error(request, client_address)
                self.shutdown_request(request)
            except BaseException:
                self.shutdown_request(request)
                raise
        else:
            self.shutdown_request(request)
        if row is not None:
            self._reactor_binding.forget_if_closed(row)
        return True

    def handle_timeout(self) -> None:
        """Called if no new request arrives within ``self.timeout``.  Overridden by ForkingMixIn."""

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Return True to process the request, False to refuse it.  May be overridden."""
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        """Call `finish_request`, then `shutdown_request`.  Overridden by the mixins."""
        self.finish_request(request, client_address)
        self.shutdown_request(request)

    def server_close(self) -> None:
        """Clean up the server: unregister it, close a private reactor.  May be overridden."""
        self._reactor_binding.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Finish one request by instantiating RequestHandlerClass."""
        self.RequestHandlerClass(request, client_address, self)

    def shutdown_request(self, request: Any) -> None:
        """Called to shut down and close an individual request."""
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Called to clean up an individual request."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Handle an exception raised while processing a request.  May be overridden.

        The default prints the traceback to stderr and goes on, as the
        standard library does.
        """
        print("-" * 40, file=sys.stderr)
        print("Exception occurred during processing of request from", client_address, file=sys.stderr)
        traceback.print_exc()
        print("-" * 40, file=sys.stderr)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args: object) -> None:
        self.server_close()

    def _reactor_full(self) -> bool:
        """True while the server must not accept (ForkingMixIn at max_children)."""
        return False

    def _reactor_track(self, request: Any, client_address: Any) -> _Connection | None:
        """Add a row to the connection table for a stream request (None: not tracked)."""
        return None


class TCPServer(BaseServer):
    """Base class for various socket-based server classes.

    Defaults to synchronous IP stream (i.e., TCP).

    Methods for the caller:

    - ``__init__(server_address, RequestHandlerClass, bind_and_activate=True, *, reactor=None)``
    - serve_forever(poll_interval=0.5)
    - shutdown()
    - handle_request()  # if you don't use serve_forever()
    - fileno() -> int   # for selector

    Methods that may be overridden: server_bind(), server_activate(),
    get_request(), handle_timeout(), verify_request(), process_request(),
    shutdown_request(), close_request(), handle_error().  For derived
    classes: finish_request().

    Class variables that may be overridden by derived classes or instances:
    timeout, address_family, socket_type, request_queue_size (stream sockets
    only), allow_reuse_address, allow_reuse_port.  Instance variables:
    server_address, RequestHandlerClass, socket, reactor.
    """

    address_family: int = socket.AF_INET
    socket_type: int = socket.SOCK_STREAM
    request_queue_size: int = socket.SOMAXCONN
    allow_reuse_address: bool = False
    allow_reuse_port: bool = False

    def __init__(
        self,
        server_address: Any,
        RequestHandlerClass: Callable[..., Any],
        bind_and_activate: bool = True,
        *,
        reactor: Reactor | None = None,
    ) -> None:
        """Constructor.  May be extended, do not override."""
        BaseServer.__init__(self, server_address, RequestHandlerClass, reactor=reactor)
        self.socket = socket.socket(self.address_family, self.socket_type)
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    def server_bind(self) -> None:
        """Called by the constructor to bind the socket.  May be overridden."""
        if self.allow_reuse_address and hasattr(socket, "SO_REUSEADDR"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.allow_reuse_port and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        """Called by the constructor: listen, and register with the reactor.  May be overridden."""
        self.socket.listen(self.request_queue_size)
        if self.socket.gettimeout() is None:
            # Non-blocking for the kernel only: accept() after a spurious
            # wakeup raises BlockingIOError instead of stalling the reactor,
            # and gettimeout() keeps its stdlib meaning for handle_request().
            os.set_blocking(self.socket.fileno(), False)
        self._reactor_binding.attach()

    def server_close(self) -> None:
        """Clean up the server: unregister, close the socket, close a private reactor."""
        self._reactor_binding.detach()
        self.socket.close()
        BaseServer.server_close(self)

    def fileno(self) -> int:
        """Return the socket's file descriptor (the interface a selector needs)."""
        return self.socket.fileno()

    def get_request(self) -> tuple[Any, Any]:
        """Accept a connection; return (socket, client address).  May be overridden."""
        request, client_address = self.socket.accept()  # socket-ok: the stdlib's overridable hook
        if _ACCEPT_INHERITS_NONBLOCKING and request.gettimeout() is None:
            request.setblocking(True)
        return request, client_address

    def shutdown_request(self, request: Any) -> None:
        """Called to shut down and close an individual request."""
        self._reactor_binding.forget(request)
        try:
            # Explicitly: close() alone does not end the connection while a
            # forked child still holds the socket.
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # some platforms raise ENOTCONN here
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Called to clean up an individual request."""
        self._reactor_binding.forget(request)
        request.close()

    def _reactor_track(self, request: Any, client_address: Any) -> _Connection | None:
        return self._reactor_binding.track(request, client_address)


class UDPServer(TCPServer):
    """UDP server class."""

    allow_reuse_address = False
    allow_reuse_port = False
    socket_type = socket.SOCK_DGRAM
    max_packet_size = 8192

    def get_request(self) -> tuple[Any, Any]:
        """Receive a datagram; return ((data, socket), client address)."""
        data, client_addr = self.socket.recvfrom(self.max_packet_size, _MSG_DONTWAIT)  # socket-ok: stdlib hook
        return (data, self.socket), client_addr

    def server_activate(self) -> None:
        """No listen() for UDP: only register with the reactor."""
        self._reactor_binding.attach()

    def shutdown_request(self, request: Any) -> None:
        """Nothing to shut down for a datagram."""
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Nothing to close for a datagram."""

    def _reactor_track(self, request: Any, client_address: Any) -> _Connection | None:
        return None


if TYPE_CHECKING:
    _MixinBase = BaseServer
else:
    _MixinBase = object


if hasattr(os, "fork"):

    class ForkingMixIn(_MixinBase):
        """Mix-in class to handle each request in a new process.

        Children are reaped as soon as they exit (a pidfd each, watched by
        the reactor); with ``max_children`` children alive the server stops
        accepting until one exits.  ``server_close()`` waits for them all
        when ``block_on_close`` is true.
        """

        timeout: float | None = 300
        active_children: set[int] | None = None
        max_children: int = 40
        # If true, server_close() waits until all child processes complete.
        block_on_close: bool = True

        def collect_children(self, *, blocking: bool = False) -> None:
            """Reap children that have exited (all of them, waiting, if ``blocking``)."""
            active = self.active_children
            if active is None:
                return
            pidfds = self._reactor_binding.pidfds
            # Over the limit with children the reactor cannot watch: wait as the
            # standard library does (waitpid(-1) may reap a child we did not start).
            while len(active) >= self.max_children and len(pidfds) < len(active):
                try:
                    pid, _ = os.waitpid(-1, 0)
                    self._reactor_child_gone(pid)
                except ChildProcessError:
                    for pid in list(active):
                        self._reactor_child_gone(pid)
                except OSError:
                    break
            if not blocking and len(pidfds) >= len(active):
                return  # all watched: the reactor reaps each one as it exits
            for pid in list(active):
                if not blocking and pid in pidfds:
                    continue
                try:
                    reaped, _ = os.waitpid(pid, 0 if blocking else os.WNOHANG)
                except ChildProcessError:
                    reaped = pid  # someone else reaped it
                except OSError:
                    continue
                if reaped:
                    self._reactor_child_gone(pid)

        def handle_timeout(self) -> None:
            """Reap exited children after ``timeout`` seconds without a request."""
            self.collect_children()

        def service_actions(self) -> None:
            """Reap exited children that no pidfd watches, after every turn."""
            self.collect_children()

        def process_request(self, request: Any, client_address: Any) -> None:
            """Fork a new subprocess to process the request."""
            pid = os.fork()
            if pid:
                if self.active_children is None:
                    self.active_children = set()
                self.active_children.add(pid)
                if self._reactor_binding.watch_child(pid, self._reactor_child_exited):
                    self._reactor_binding.update_interest()
                self.close_request(request)
                return
            # The child: it never returns (os._exit) and never touches the parent's reactor.
            self._reactor_binding.after_fork_in_child()
            status = 1
            try:
                self.finish_request(request, client_address)
                status = 0
            except Exception:  # noqa: BLE001
                self.handle_error(request, client_address)
            finally:
                try:
                    self.shutdown_request(request)
                finally:
                    os._exit(status)

        def server_close(self) -> None:
            """Close the server, then reap children (waiting for them if ``block_on_close``)."""
            super().server_close()
            self.collect_children(blocking=self.block_on_close)
            for pid in list(self._reactor_binding.pidfds):
                self._reactor_binding.unwatch_child(pid)

        def _reactor_full(self) -> bool:
            active = self.active_children
            return (
                active is not None
                and len(active) >= self.max_children
                and len(self._reactor_binding.pidfds) >= len(active)  # an exit will wake us
            )

        def _reactor_child_exited(self, pid: int) -> None:
            """Reactor callback: the pidfd of ``pid`` is readable, so it has exited."""
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass  # reaped by someone else
            self._reactor_child_gone(pid)

        def _reactor_child_gone(self, pid: int) -> None:
            self._reactor_binding.unwatch_child(pid)
            if self.active_children is not None:
                self.active_children.discard(pid)
            self._reactor_binding.update_interest()


class ThreadingMixIn(_MixinBase):
    """Mix-in class to handle each request in a new thread.

    ``daemon_threads``: whether request threads are daemons.
    ``block_on_close``: whether ``server_close()`` joins the non-daemon
    request threads; only live threads are kept, however many requests ran.
    """

    daemon_threads: bool = False
    block_on_close: bool = True
    _threads: _Threads | _NoThreads = _NoThreads()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Same as in BaseServer but as a thread, with the error handling done here."""
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a new thread to process the request."""
        if self.block_on_close and "_threads" not in vars(self):
            self._threads = _Threads()  # once per server, not a throw-away per request
        threads = self._threads
        t = _RequestThread(self.process_request_thread, (request, client_address), threads)
        t.daemon = self.daemon_threads
        threads.append(t)
        t.start()

    def server_close(self) -> None:
        """Close the server, then join the request threads (if ``block_on_close``)."""
        super().server_close()
        self._threads.join()


if hasattr(os, "fork"):

    class ForkingUDPServer(ForkingMixIn, UDPServer):
        pass

    class ForkingTCPServer(ForkingMixIn, TCPServer):
        pass


class ThreadingUDPServer(ThreadingMixIn, UDPServer):
    pass


class ThreadingTCPServer(ThreadingMixIn, TCPServer):
    pass


if hasattr(socket, "AF_UNIX"):

    class UnixStreamServer(TCPServer):
        address_family = socket.AF_UNIX

    class UnixDatagramServer(UDPServer):
        address_family = socket.AF_UNIX

    class ThreadingUnixStreamServer(ThreadingMixIn, UnixStreamServer):
        pass

    class ThreadingUnixDatagramServer(ThreadingMixIn, UnixDatagramServer):
        pass

    if sys.version_info >= (3, 12) and hasattr(os, "fork"):

        class ForkingUnixStreamServer(ForkingMixIn, UnixStreamServer):
            pass

        class ForkingUnixDatagramServer(ForkingMixIn, UnixDatagramServer):
            pass


class BaseRequestHandler:
    """Base class for request handler classes.

    One instance is created per request.  The constructor sets ``request``,
    ``client_address`` and ``server``, then calls `setup`, `handle` and (even
    if `handle` raised) `finish`.  Override `handle` to implement a service.
    For stream servers ``request`` is the connected socket; for datagram
    servers it is the pair ``(data, server_socket)``.
    """

    def __init__(self, request: Any, client_address: Any, server: BaseServer) -> None:
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self) -> None:
        """Prepare for `handle`; the default does nothing."""

    def handle(self) -> None:
        """Serve the request; the default does nothing."""

    def finish(self) -> None:
        """Clean up after `handle`; the default does nothing."""


class StreamRequestHandler(BaseRequestHandler):
    """Define self.rfile and self.wfile for stream sockets.

    ``rbufsize`` (default -1: buffered) and ``wbufsize`` (default 0:
    unbuffered, every write is sent at once) size the two files; ``timeout``
    is applied to the connection if not None; ``disable_nagle_algorithm``
    sets TCP_NODELAY (useful only with a buffered ``wfile``).
    """

    rbufsize: int = -1
    wbufsize: int = 0
    timeout: float | None = None
    disable_nagle_algorithm: bool = False

    def setup(self) -> None:
        """Create ``rfile`` and ``wfile`` over the connection."""
        self.connection = self.request
        if self.timeout is not None:
            self.connection.settimeout(self.timeout)
        if self.disable_nagle_algorithm:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.rfile: io.BufferedIOBase = self.connection.makefile("rb", self.rbufsize)
        if self.wbufsize == 0:
            self.wfile: io.BufferedIOBase = _SocketWriter(self.connection)
        else:
            self.wfile = self.connection.makefile("wb", self.wbufsize)

    def finish(self) -> None:
        """Flush ``wfile`` and close both files."""
        if not self.wfile.closed:
            try:
                self.wfile.flush()
            except OSError:
                pass  # a final error such as ECONNABORTED
        self.wfile.close()
        self.rfile.close()


class DatagramRequestHandler(BaseRequestHandler):
    """Define self.rfile and self.wfile for datagram sockets.

    ``rfile`` holds the datagram; what the handler writes to ``wfile`` is sent
    back to the client as one datagram by `finish`.
    """

    def setup(self) -> None:
        """Wrap the datagram in ``rfile``; give ``wfile`` an empty buffer."""
        self.packet, self.socket = self.request
        self.rfile = io.BytesIO(self.packet)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        """Send what was written to ``wfile``."""
        self.socket.sendto(self.wfile.getvalue(), self.client_address)  # socket-ok: the stdlib's overridable hook
