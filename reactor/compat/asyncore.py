"""asyncore on the reactor: Python 3.11's module, with a selector that scales.

Existing code changes one line (``from reactor.compat import asyncore``) and
keeps its dispatchers, hooks and ``loop()``.  What changes underneath:

*Where a dispatcher lives.*  asyncore keeps a map (fd -> dispatcher) and, on
every ``poll``, asks each dispatcher ``readable()`` and ``writable()`` and
hands the lists to ``select`` (which fails above fd 1024) or builds a fresh
``poll`` object (O(n) system work per turn).  Here each map is served by a
driver (`_MapDriver`) on a `Reactor`: every dispatcher with a socket is a row
(`DispatcherRow`) of ``Reactor.connections``, registered with the reactor's
selector (epoll on Linux) for the events its answers ask for.  The map keeps
its meaning: it is still the plain dict code may read and even write; the
driver reconciles its rows with it on every turn.

*Asking readable()/writable() cheaply.*  asyncore asks every dispatcher every
turn, so an idle connection costs two Python calls per turn, and code depends
on the asking: one dispatcher's handler fills another's buffer, and the
other's ``writable()`` must be asked again.  Here a dispatcher is asked
before a turn only when its answer may have changed unseen:

- an answer that is registered (the row waits for reading, or for writing)
  is checked when its event comes, just before the handler would run
  (`_MapDriver._on_read`, ``_on_write``); if it is false now, the interest is
  dropped and nothing is delivered, as if it had been asked before the wait;
- an answer that is not registered is asked before every turn (the
  ``asking`` set), since only asking can tell that it turned true, except
- a ``writable()`` of the package's own (`dispatcher`'s, and
  ``async_chat``'s, in `_TRACKED_WRITABLE`), which turns true only through
  the package's methods (``push``, ``push_with_producer``,
  ``close_when_done``, ``initiate_send``, `dispatcher.connect`, and appends to
  ``producer_fifo``, a deque that reports them): those mark the row
  (`_asked_again`, the ``dirty`` set) to be asked once before the next wait.

A dispatcher after its write event, and a new one, are asked once too.  So
an ``async_chat`` server waiting on 1,000 connections asks nobody between
events, where asyncore asks 2,000 times a turn; a dispatcher with a
``writable()`` of its own that is not registered is still asked every turn.
The selector is touched only when an answer changed (one ``epoll_ctl``),
never rebuilt.  When ``loop()`` drives, the asking before the next wait also
covers the dispatcher that just handled an event and the ones its handler
made (accepted connections); when something else drives the reactor
(`Reactor.run`, a server's ``run()``), nothing asks before the wait, so
those are asked again at once after the handler.  When the map holds more
or fewer dispatchers than there are rows (code that writes the map dict
directly instead of calling ``add_channel``/``del_channel``), every
dispatcher of the map is asked, as asyncore does, and the rows follow.
``tests/test_asyncore.py`` counts the asking and the selector calls.

*Which reactor.*  The module's ``socket_map`` is served by the default
reactor (`reactor.get_default_reactor`), so ``asyncore.loop()`` also serves
the `RequestServer`\\ s, stream servers and timers on it.  A private ``map``
passed to a dispatcher or to ``loop(map=...)`` gets a private reactor, so
``loop(map=m)`` serves only ``m`` (as in asyncore) and a thread may loop its
own map; `set_reactor` puts any map on a reactor of your choosing, and
`get_reactor` tells which reactor serves a map.  A private reactor is closed
when its map is empty after a turn (or after `close_all`).

*What a turn is.*  ``poll()``/``poll2()`` are one turn of the map's reactor
(`Reactor.run_once` with the same timeout) after asking every dispatcher;
``loop(count=1)`` is one turn.  ``use_poll`` keeps its one observable
meaning, how events are delivered: ``readwrite(obj, flags)`` (errors of the
disconnect kind close the channel) or ``read``/``write``/``_exception``.

*Exceptions.*  In asyncore anything that escapes the handlers (``ExitNow``,
or an error raised by ``handle_error`` itself) leaves ``loop()``.  The
reactor reports and swallows a callback's ``Exception``, so the driver wraps
an escaping exception in `_Escape` (a ``BaseException``, which the reactor
lets through, as it does ``KeyboardInterrupt``), and the turn unwraps it:
the caller of ``loop()``/``poll()`` gets the original exception.  An
``ExitNow`` raised where no handler frame of ours catches it (a timer or
another server's callback, or a signal handler that raises it between two
frames) reaches the reactor's error reporting instead: during a turn the
driver's exception handler takes it back, the turn finishes, and ``loop()``
raises it; other errors go on to the handler that was set before.

*Two things selectors cannot say.*  ``select`` reports a socket's urgent
(out-of-band) data as an exceptional condition and ``poll`` as ``POLLPRI``;
epoll reports it only to an ``EPOLLPRI`` registration, which `selectors`
does not offer.  So each driver keeps one extra epoll set for priority
events only (edge-triggered, so a hung-up socket cannot make it spin); its fd
is an ordinary reader of the reactor, and it is polled only, with timeout
0, when the reactor says it is ready.  This is the one place outside the
core that calls epoll; without ``select.epoll`` urgent data is not reported.
Second, epoll refuses regular files (``EPERM``) where ``poll`` calls them
always ready; a `file_dispatcher` on a regular file is therefore kept aside
and dispatched every turn that it is interested, as ``poll`` would.

Dispatchers call ``recv``/``send``/``accept``/``close`` on their own
sockets: that is asyncore's API, so unlike the other surfaces this one does
not go through the transport layer.  It keeps the house rules it can: the
selector is touched only when interest changes, a row is unregistered before
its socket is closed, and the table says where each dispatcher is.

The module is longer than our usual one because it holds asyncore's whole
public surface with its docstrings as well as the driver.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time  # noqa: F401  (asyncore exposes it)
import warnings
from errno import (
    EAGAIN,
    EALREADY,
    EBADF,
    ECONNABORTED,
    ECONNRESET,
    EINPROGRESS,
    EINVAL,
    EISCONN,
    ENOTCONN,
    EPIPE,
    ESHUTDOWN,
    EWOULDBLOCK,
    errorcode,
)
from typing import Any

from ..core import Reactor, get_default_reactor
from ..transport.table import TRANSITIONS, Connection, State
from ..transport.threads import in_reactor_thread

# No ``__all__``: asyncore has none, so ``from asyncore import *`` exports
# every public name (``socket``, ``os``, the errno constants...) and code may
# rely on it.

_DISCONNECTED = frozenset({ECONNRESET, ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE, EBADF})

#: The default map: fd -> dispatcher.  Re-bindable (``asyncore.socket_map = {}``):
#: every function reads the module global when it is called.
socket_map: dict[int, Any] = {}

_POLLIN: int = getattr(select, "POLLIN", 1)
_POLLPRI: int = getattr(select, "POLLPRI", 2)
_POLLOUT: int = getattr(select, "POLLOUT", 4)
_POLLERR: int = getattr(select, "POLLERR", 8)
_POLLHUP: int = getattr(select, "POLLHUP", 16)
_POLLNVAL: int = getattr(select, "POLLNVAL", 32)
_READ = 1  # selectors.EVENT_READ
_WRITE = 2  # selectors.EVENT_WRITE
_EPOLLPRI: int = getattr(select, "EPOLLPRI", 0)
_EPOLLET: int = getattr(select, "EPOLLET", 0)


def _strerror(err: int) -> str:
    """The message of an errno value, never failing."""
    try:
        return os.strerror(err)
    except (ValueError, OverflowError, NameError):
        return errorcode.get(err, f"Unknown error {err}")


class ExitNow(Exception):
    """Raise it in a handler to leave ``loop()``: it is never passed to ``handle_error``."""


_reraised_exceptions = (ExitNow, KeyboardInterrupt, SystemExit)


def read(obj: Any) -> None:
    """Deliver a read event to ``obj``; other errors than `ExitNow` go to its ``handle_error``."""
    try:
        obj.handle_read_event()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def write(obj: Any) -> None:
    """Deliver a write event to ``obj``; other errors than `ExitNow` go to its ``handle_error``."""
    try:
        obj.handle_write_event()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def _exception(obj: Any) -> None:
    """Deliver an exceptional condition (urgent data) to ``obj``."""
    try:
        obj.handle_expt_event()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def readwrite(obj: Any, flags: int) -> None:
    """Deliver ``poll()`` event ``flags`` to ``obj``.

    A disconnect-kind `OSError` (reset, broken pipe...) closes the channel
    with ``handle_close``; other errors go to ``handle_error``.
    """
    try:
        if flags & _POLLIN:
            obj.handle_read_event()
        if flags & _POLLOUT:
            obj.handle_write_event()
        if flags & _POLLPRI:
            obj.handle_expt_event()
        if flags & (_POLLHUP | _POLLERR | _POLLNVAL):
            obj.handle_close()
    except OSError as exc:
        if exc.errno in _DISCONNECTED:
            obj.handle_close()
        else:
            obj.handle_error()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


# ---------------------------------------------------------------- the driver


class _Escape(BaseException):
    """Carries an exception out of a reactor turn to the caller of ``poll()``/``loop()``."""

    def __init__(self, exception: BaseException) -> None:
        super().__init__(f"asyncore handler raised {exception!r} outside asyncore.loop()")
        self.exception = exception


class DispatcherRow(Connection):
    """The connection-table row of one dispatcher (``owner`` is the dispatcher).

    ``interest`` is the selector mask registered now (read 1, write 2), from
    the dispatcher's last ``readable()``/``writable()`` answers;
    ``always_ready`` marks an fd the selector refuses (a regular file).
    """

    __slots__ = ("driver", "interest", "always_ready", "tracked")

    def __init__(self, obj: Any, fd: int, state: str, started: float, driver: _MapDriver) -> None:
        sock: Any = getattr(obj, "socket", None)
        super().__init__(sock, fd, obj, state, getattr(obj, "addr", None), started)
        self.driver = driver
        self.interest = 0
        self.always_ready = False
        self.tracked = _tracks_writable(obj)

    def get_write_buffer_size(self) -> int:
        """Bytes a `dispatcher_with_send` holds that the kernel has not taken yet."""
        return len(getattr(self.owner, "out_buffer", b""))


def _state_of(obj: Any) -> str:
    if getattr(obj, "accepting", False):
        return State.LISTENING
    if getattr(obj, "connecting", False):
        return State.CONNECTING
    if getattr(obj, "connected", False):
        return State.OPEN
    return State.UNCONNECTED


def _tracks_writable(obj: Any) -> bool:
    """Is ``obj.writable()`` one of ours, whose answer can turn true only through our own methods?

    Those methods (`dispatcher_with_send.send`, ``async_chat.push``, `dispatcher.connect`...)
    call `_asked_again`; no other dispatcher needs asking before a turn.
    """
    # Through the bound method, not ``obj.__dict__``: reading ``__dict__`` makes
    # CPython give the instance a real dict, and every attribute read of the
    # dispatcher then takes the slow path (measured: +0.7 us per request).
    return getattr(getattr(obj, "writable", None), "__func__", None) in _TRACKED_WRITABLE


def _asked_again(obj: Any) -> None:
    """Ask ``obj`` readable()/writable() before the next wait (its tracked ``writable()`` may have turned true)."""
    row = getattr(obj, "_reactor_row", None)
    if row is not None:
        row.driver.dirty.add(row)


class _MapDriver:
    """Serves one asyncore map on one reactor (see the module docstring)."""

    def __init__(self, map: dict[int, Any], shared: bool) -> None:
        self.map = map
        self.rows: dict[int, DispatcherRow] = {}
        self.shared = shared  # the module's socket_map: follows the default reactor
        self.bound: Reactor | None = None  # given by set_reactor()
        self._reactor: Reactor | None = None  # the rows are registered here
        self._private = False  # we created the reactor, we close it
        self.use_poll = False
        self.turning = False
        self.new_rows: list[DispatcherRow] = []
        self.ready_rows: set[DispatcherRow] = set()
        # Who is asked readable()/writable() before a turn (see `sync`):
        self.asking: set[DispatcherRow] = set()  # every turn: an answer may turn true unseen
        self.dirty: set[DispatcherRow] = set()  # once: new, just written to, or marked by our methods
        self.priority: Any = None  # the epoll set of urgent-data registrations
        self.turns = 0
        self.asked = 0
        self.interest_changes = 0
        self.exit_now: BaseException | None = None  # an ExitNow the reactor caught in this turn
        self.chained: Any = None  # the reactor's exception handler, outside turns

    # -- the reactor
    def reactor(self) -> Reactor:
        r = self._reactor
        if r is not None and not r.is_closed():
            return r
        if self.bound is not None:
            if self.bound.is_closed():
                raise RuntimeError("the reactor set for this asyncore map is closed; call set_reactor() again")
            new = self.bound
            self._private = False
        elif self.shared:
            new = get_default_reactor()
            self._private = False
        else:
            new = Reactor()
            self._private = True
        self._reactor = new
        if r is not None:
            self._rehome(new)
        return new

    def _rehome(self, reactor: Reactor) -> None:
        # The old reactor is closed: its selector is gone, so nothing is
        # unregistered; the rows are made again on the new one.
        self.priority_close(unregister=False)
        self._readd(list(self.rows.values()))

    def _readd(self, rows: list[DispatcherRow]) -> None:
        self.rows.clear()
        self.ready_rows.clear()
        self.new_rows.clear()
        self.asking.clear()
        self.dirty.clear()
        for row in rows:
            self.add(row.fd, row.owner, row.state)

    def set_reactor(self, reactor: Reactor | None) -> None:
        old = self._reactor
        rows = list(self.rows.values())
        if old is not None and not old.is_closed():
            for row in rows:
                self._set_interest(row, 0)
                if old.connections.get(row.fd) is row:
                    del old.connections[row.fd]
            self.priority_close(unregister=True)
            if self._private and old is not reactor:
                old.close()
        else:
            self.priority_close(unregister=False)
        self.bound = reactor
        self._reactor = None
        self._readd(rows)

    # -- rows
    def add(self, fd: int, obj: Any, state: str | None = None) -> DispatcherRow:
        reactor = self.reactor()
        old = self.rows.get(fd)
        if old is not None:
            self.remove(old)
        row = DispatcherRow(obj, fd, state or _state_of(obj), reactor.time(), self)
        self.rows[fd] = row
        reactor.connections[fd] = row
        if isinstance(obj, dispatcher):
            obj._reactor_row = row
        self.new_rows.append(row)
        self.dirty.add(row)
        self.asking.add(row)  # no interest yet
        return row

    def remove(self, row: DispatcherRow) -> None:
        """Unregister the row (before its socket is closed) and take it out of the table."""
        self._set_interest(row, 0)
        fd = row.fd
        if self.rows.get(fd) is row:
            del self.rows[fd]
        reactor = self._reactor
        if reactor is not None and reactor.connections.get(fd) is row:
            del reactor.connections[fd]
        if row.state != State.CLOSED:
            row._set_state(State.CLOSED)
        self.ready_rows.discard(row)
        self.asking.discard(row)
        self.dirty.discard(row)
        owner = row.owner
        if isinstance(owner, dispatcher) and owner._reactor_row is row:
            owner._reactor_row = None
        if not self.rows:
            self.priority_close(unregister=True)
            if not self.turning:
                self.discard_if_idle()

    def drop_missing(self) -> None:
        """Remove the rows whose dispatcher is no longer in the map."""
        current = self.map
        for fd, row in list(self.rows.items()):
            if current.get(fd) is not row.owner:
                self.remove(row)

    def discard_if_idle(self) -> None:
        """Forget an empty, unbound driver; close its private reactor."""
        if self.rows or self.map or self.bound is not None:
            return
        with _drivers_lock:
            if _drivers.get(id(self.map)) is self:
                del _drivers[id(self.map)]
        reactor = self._reactor
        self._reactor = None
        if self._private and reactor is not None and not reactor.is_running():
            reactor.close()

    # -- interest
    def _set_interest(self, row: DispatcherRow, want: int) -> None:
        old = row.interest
        if old == want:
            return
        row.interest = want
        self.interest_changes += 1
        # A registered interest is checked when its event comes (`_on_read`,
        # `_on_write`); one that is not must be asked for before every turn,
        # unless our own methods say when it turns true (a tracked writable()).
        if row.always_ready or not want & _READ or not (want & _WRITE or row.tracked):
            self.asking.add(row)
        else:
            self.asking.discard(row)
        if row.always_ready:
            return
        reactor = self._reactor
        if reactor is None or reactor.is_closed():
            return
        fd = row.fd
        try:
            if want & _READ and not old & _READ:
                reactor.add_reader(fd, self._on_read, row)
            if want & _WRITE and not old & _WRITE:
                reactor.add_writer(fd, self._on_write, row)
        except PermissionError:
            # epoll refuses regular files; poll() calls them always ready.
            reactor.remove_reader(fd)
            reactor.remove_writer(fd)
            row.always_ready = True
            self.ready_rows.add(row)
            return
        if old & _READ and not want & _READ:
            reactor.remove_reader(fd)
        if old & _WRITE and not want & _WRITE:
            reactor.remove_writer(fd)
        if not old or not want:
            self._watch_priority(row, bool(want))

    def _ask(self, fd: int, obj: Any) -> None:
        row = self.rows.get(fd)
        if row is None or row.owner is not obj:
            row = self.add(fd, obj)
        self._answer(row, obj)

    def _answer(self, row: DispatcherRow, obj: Any) -> None:
        """Ask ``obj`` readable()/writable() and register what the answers ask for."""
        want = _READ if obj.readable() else 0
        if obj.writable() and not obj.accepting:
            want |= _WRITE
        if want != row.interest:
            self._set_interest(row, want)

    def sync(self) -> None:
        """Before a turn: ask the dispatchers whose answer may have changed unseen; update the selector.

        asyncore asks every dispatcher.  Here an answer that is registered
        (read, or write) is checked when its event comes instead, and a
        ``writable()`` of ours is asked when our own methods change what it
        answers; so before a turn only the others (`asking`) and the marked
        ones (`dirty`) are asked.  When the map holds more or fewer
        dispatchers than there are rows (code that writes the map directly),
        every dispatcher is asked.
        """
        self.new_rows.clear()
        rows = self.rows
        if len(rows) != len(self.map):
            self._sync_all()
            return
        # A copy: an answer moves its row in or out of `asking`.
        todo = self.asking | self.dirty if self.dirty else self.asking.copy()
        self.dirty = set()
        self.asked += len(todo)
        for row in todo:
            if rows.get(row.fd) is row:  # not removed by an earlier answer's side effect
                self._answer(row, row.owner)

    def _sync_all(self) -> None:
        """Ask every dispatcher of the map, as asyncore does (rows made or dropped to match the map)."""
        rows = self.rows
        items = list(self.map.items())
        self.asked += len(items)
        self.dirty.clear()
        for fd, obj in items:
            row = rows.get(fd)
            if row is None or row.owner is not obj:
                self._ask(fd, obj)
            else:
                self._answer(row, obj)
        if len(rows) > len(self.map):
            self.drop_missing()

    def _refresh(self, row: DispatcherRow) -> None:
        # After a handler ran: ask its dispatcher, and the dispatchers it made, again.
        if self.new_rows:
            new, self.new_rows = self.new_rows, []
            for other in new:
                if self.rows.get(other.fd) is other and self.map.get(other.fd) is other.owner:
                    self._ask(other.fd, other.owner)
        if self.rows.get(row.fd) is row and self.map.get(row.fd) is row.owner:
            self._ask(row.fd, row.owner)

    # -- priority (urgent data)
    def _watch_priority(self, row: DispatcherRow, on: bool) -> None:
        pri = self.priority
        if pri is None:
            if not on or not _EPOLLPRI or self._reactor is None:
                return
            pri = self.priority = select.epoll()
            self._reactor.add_reader(pri.fileno(), self._on_priority)
        try:
            if on:
                pri.register(row.fd, _EPOLLPRI | _EPOLLET)
            else:
                pri.unregister(row.fd)
        except FileExistsError:
            pri.modify(row.fd, _EPOLLPRI | _EPOLLET)
        except OSError:
            pass  # a regular file, or an fd already closed: nothing to watch

    def priority_close(self, unregister: bool) -> None:
        pri = self.priority
        if pri is None:
            return
        self.priority = None
        reactor = self._reactor
        if unregister and reactor is not None and not reactor.is_closed():
            reactor.remove_reader(pri.fileno())
        pri.close()

    # -- events (reactor callbacks)
    def _dispatch(self, row: DispatcherRow, flag: int) -> None:
        obj = row.owner
        try:
            if self.use_poll:
                readwrite(obj, flag)
            elif flag == _POLLIN:
                read(obj)
            elif flag == _POLLOUT:
                write(obj)
            else:
                _exception(obj)
            if not self.turning:
                self._refresh(row)
        except Exception as exc:
            raise _Escape(exc) from None

    def _on_read(self, row: DispatcherRow) -> None:
        # `_dispatch` for _POLLIN, written out: this is the per-request path.
        # The registered answer is checked now, as asyncore would have asked
        # before the wait (`sync` does not ask a registered interest).
        obj = row.owner
        try:
            if not obj.readable():
                self._set_interest(row, row.interest & ~_READ)
                return
            try:
                obj.handle_read_event()
            except _reraised_exceptions:
                raise
            except OSError as exc:
                if self.use_poll and exc.errno in _DISCONNECTED:
                    obj.handle_close()
                else:
                    obj.handle_error()
            except BaseException:
                obj.handle_error()
            if not self.turning:
                self._refresh(row)
        except Exception as exc:
            raise _Escape(exc) from None

    def _on_write(self, row: DispatcherRow) -> None:
        obj = row.owner
        try:
            wants = obj.writable() and not obj.accepting
        except Exception as exc:
            raise _Escape(exc) from None
        if not wants:
            self._set_interest(row, row.interest & ~_WRITE)
            return
        self._dispatch(row, _POLLOUT)
        # Asked again before the wait, so a drained buffer unregisters at once.
        self.dirty.add(row)

    def _on_priority(self) -> None:
        pri = self.priority
        if pri is None:
            return
        for fd, events in pri.poll(0):
            row = self.rows.get(fd)
            if events & _EPOLLPRI and row is not None and row.interest:
                self._dispatch(row, _POLLPRI)

    def _on_always_ready(self, row: DispatcherRow) -> None:
        if row.interest & _READ and self.rows.get(row.fd) is row:
            self._dispatch(row, _POLLIN)
        if row.interest & _WRITE and self.rows.get(row.fd) is row:
            self._dispatch(row, _POLLOUT)

    def _callback_failed(self, reactor: Reactor, context: dict[str, Any]) -> None:
        # The reactor's exception handler during a turn: keep the first
        # ExitNow (and the like) for turn() to raise; report the rest as usual.
        exc = context.get("exception")
        if isinstance(exc, _reraised_exceptions):
            if self.exit_now is None:
                self.exit_now = exc
            return
        if self.chained is not None:
            self.chained(reactor, context)
        else:
            reactor.default_exception_handler(context)

    # -- a turn
    def turn(self, timeout: float | None, use_poll: bool) -> None:
        """Ask every dispatcher, then do one turn of the reactor; re-raise what a handler let out."""
        reactor = self.reactor()
        if not in_reactor_thread(reactor):
            raise RuntimeError(
                "this asyncore map's reactor is running in another thread (run() or a server's start()); "
                "call asyncore.loop() from that thread, or give the map its own reactor with set_reactor()"
            )
        self.use_poll = use_poll
        self.turns += 1
        self.turning = True
        try:
            self.sync()
            for row in self.ready_rows:
                if row.interest:
                    reactor.call_soon(self._on_always_ready, row)
            # An ExitNow that a signal handler raises where no driver frame
            # catches it (inside another callback, or between frames) reaches
            # the reactor's error reporting: catch it there and leave after
            # the turn, as asyncore leaves loop().
            self.chained = reactor.get_exception_handler()
            reactor.set_exception_handler(self._callback_failed)
            try:
                reactor.run_once(timeout)
            except _Escape as escape:
                exc: BaseException | None = escape.exception
            else:
                exc = None
            finally:
                if reactor.get_exception_handler() == self._callback_failed:
                    reactor.set_exception_handler(self.chained)
                self.chained = None
            if exc is None and self.exit_now is not None:
                exc = self.exit_now
            self.exit_now = None
            if exc is not None:
                try:
                    raise exc
                finally:
                    exc = None
        finally:
            self.turning = False
            if not self.rows:
                self.discard_if_idle()


_drivers: dict[int, _MapDriver] = {}
_drivers_lock = threading.Lock()


def _driver(map: dict[int, Any]) -> _MapDriver:
    driver = _drivers.get(id(map))
    if driver is None or driver.map is not map:
        with _drivers_lock:
            driver = _drivers.get(id(map))
            if driver is None or driver.map is not map:
                driver = _drivers[id(map)] = _MapDriver(map, shared=map is socket_map)
    return driver


def get_reactor(map: dict[int, Any] | None = None) -> Reactor:
    """The reactor that serves ``map`` (default: the module's ``socket_map``).

    Not in asyncore.  The default map is served by the default reactor, a
    private map by a reactor of its own unless `set_reactor` chose one.
    """
    return _driver(socket_map if map is None else map).reactor()


def set_reactor(reactor: Reactor | None, map: dict[int, Any] | None = None) -> None:
    """Serve ``map`` (default: ``socket_map``) on ``reactor``; None restores the default choice.

    Not in asyncore.  Use it to put asyncore dispatchers on the same reactor
    as other servers when that is not the default reactor; dispatchers
    already in the map move with it.
    """
    if reactor is not None and not isinstance(reactor, Reactor):
        raise TypeError(f"set_reactor() needs a reactor.Reactor or None, got {type(reactor).__name__}")
    driver = _driver(socket_map if map is None else map)
    driver.set_reactor(reactor)
    if reactor is None:
        driver.discard_if_idle()


def statistics(map: dict[int, Any] | None = None) -> dict[str, int]:
    """Counters of the driver of ``map``: ``turns``, ``rows``, ``asked``, ``interest_changes``.

    Not in asyncore.  ``asked`` counts the dispatchers asked
    ``readable()``/``writable()`` before turns; ``interest_changes`` counts
    the changes of a row's registered events (each at most one selector call).
    """
    driver = _drivers.get(id(socket_map if map is None else map))
    if driver is None:
        return {"turns": 0, "rows": 0, "asked": 0, "interest_changes": 0}
    return {
        "turns": driver.turns,
        "rows": len(driver.rows),
        "asked": driver.asked,
        "interest_changes": driver.interest_changes,
    }


def _turn(map: dict[int, Any], timeout: float | None, use_poll: bool) -> None:
    _driver(map).turn(timeout, use_poll)


def poll(timeout: float | None = 0.0, map: dict[int, Any] | None = None) -> None:
    """One turn for ``map``, events delivered with `read`, `write` and `_exception`.

    Waits at most ``timeout`` seconds (None: until something happens).  Does
    nothing when the map is empty.
    """
    if map is None:
        map = socket_map
    if map:
        _turn(map, timeout, False)


def poll2(timeout: float | None = 0.0, map: dict[int, Any] | None = None) -> None:
    """One turn for ``map``, events delivered with `readwrite` (asyncore's ``poll()`` flavour)."""
    if map is None:
        map = socket_map
    if map:
        _turn(map, timeout, True)


poll3 = poll2


def loop(
    timeout: float | None = 30.0,
    use_poll: bool = False,
    map: dict[int, Any] | None = None,
    count: int | None = None,
) -> None:
    """Serve ``map`` (default ``socket_map``) until it is empty, or for ``count`` turns.

    Each turn waits at most ``timeout`` seconds.  The map's reactor runs
    everything else it has too (servers, protocols, timers).
    """
    if map is None:
        map = socket_map
    use_poll = bool(use_poll)
    if count is None:
        while map:
            _turn(map, timeout, use_poll)
    else:
        while map and count > 0:
            _turn(map, timeout, use_poll)
            count -= 1


# ---------------------------------------------------------------- dispatcher


class dispatcher:
    """A thin wrapper around a non-blocking socket, driven by events.

    Methods for the caller: the socket methods (``create_socket``, ``bind``,
    ``listen``, ``connect``, ``accept``, ``send``, ``recv``, ``close``) and
    ``set_reuse_addr``.  May be overridden: ``readable``/``writable`` (asked
    before every turn: should this dispatcher wait for reading/writing?) and
    the ``handle_*`` hooks.  Its row in the reactor's connection table follows
    ``connecting``, ``connected`` and ``accepting``.
    """

    debug = False
    connected = False
    accepting = False
    connecting = False
    closing = False
    addr: Any = None
    ignore_log_types = frozenset({"warning"})
    socket: Any  # the socket (or a file_wrapper); None before create_socket()
    _fileno: int | None = None
    _reactor_row: DispatcherRow | None = None

    def __init__(self, sock: Any = None, map: dict[int, Any] | None = None) -> None:
        self._map: dict[int, Any] = socket_map if map is None else map
        self._fileno = None
        if not sock:
            self.socket = None
            return
        sock.setblocking(False)  # it may come from blocking code
        self.set_socket(sock, map)
        self.connected = True
        try:
            self.addr = sock.getpeername()
        except OSError as err:
            if err.errno not in (ENOTCONN, EINVAL):
                self.del_channel(map)  # broken: keep it out of the map
                raise
            self.connected = False  # a socket that is not connected (yet)
        else:
            self._follow(State.OPEN)

    def __repr__(self) -> str:
        cls = type(self)
        parts = [f"{cls.__module__}.{cls.__qualname__}"]
        if self.accepting and self.addr:
            parts.append("listening")
        elif self.connected:
            parts.append("connected")
        if self.addr is not None:
            try:
                parts.append("%s:%d" % self.addr)  # noqa: UP031  (a TypeError is the point)
            except TypeError:
                parts.append(repr(self.addr))
        return f"<{' '.join(parts)} at {id(self):#x}>"

    def _follow(self, state: str) -> None:
        # The row mirrors the flags where the table allows the step.
        row = self._reactor_row
        if row is not None and row.state != state and (row.state, state) in TRANSITIONS:
            row._set_state(state)
            if state == State.OPEN or state == State.CONNECTING:
                row.peer = self.addr

    def add_channel(self, map: dict[int, Any] | None = None) -> None:
        """Put this dispatcher in ``map`` (default: its own) and in the reactor's table."""
        if map is None:
            map = self._map
        fd = self._fileno
        assert fd is not None, "add_channel() needs a socket: call create_socket() or set_socket() first"
        map[fd] = self
        _driver(map).add(fd, self)

    def del_channel(self, map: dict[int, Any] | None = None) -> None:
        """Take this dispatcher out of ``map`` (default: its own) and out of the reactor."""
        fd = self._fileno
        if map is None:
            map = self._map
        if fd in map:
            del map[fd]
        driver = _drivers.get(id(map))
        if driver is not None and fd is not None:
            row = driver.rows.get(fd)
            if row is not None and row.owner is self:
                driver.remove(row)
        self._fileno = None

    def create_socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> None:
        """Make a non-blocking socket of that family and type, and add the channel."""
        self.family_and_type = family, type
        sock = socket.socket(family, type)
        sock.setblocking(False)
        self.set_socket(sock)

    def set_socket(self, sock: Any, map: dict[int, Any] | None = None) -> None:
        """Use ``sock`` and add the channel to ``map``."""
        self.socket = sock
        self._fileno = sock.fileno()
        self.add_channel(map)

    def set_reuse_addr(self) -> None:
        """Set ``SO_REUSEADDR`` if the platform allows it."""
        try:
            current = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, current | 1)
        except OSError:
            pass

    # -- asked before every turn

    def readable(self) -> bool:
        """Wait for reading? (default: always)"""
        return True

    def writable(self) -> bool:
        """Wait for writing? (default: always)"""
        return True

    # -- socket methods

    def listen(self, num: int) -> Any:
        """Listen with backlog ``num``; the dispatcher is ``accepting`` from now on."""
        self.accepting = True
        if os.name == "nt" and num > 5:
            num = 5
        result = self.socket.listen(num)
        self._follow(State.LISTENING)
        return result

    def bind(self, addr: Any) -> Any:
        """Bind the socket to ``addr`` (remembered as ``addr``)."""
        self.addr = addr
        return self.socket.bind(addr)

    def connect(self, address: Any) -> None:
        """Start connecting; ``handle_connect`` runs when the connection is made."""
        self.connected = False
        self.connecting = True
        self._follow(State.CONNECTING)
        _asked_again(self)  # a tracked writable() is true while connecting
        err = self.socket.connect_ex(address)
        if err in (EINPROGRESS, EALREADY, EWOULDBLOCK) or (err == EINVAL and os.name == "nt"):
            self.addr = address
            return
        if err in (0, EISCONN):
            self.addr = address
            self.handle_connect_event()
        else:
            raise OSError(err, errorcode[err])

    def accept(self) -> tuple[Any, Any] | None:
        """``(socket, address)`` of a new connection, or None when there is none after all."""
        try:
            conn, addr = self.socket.accept()  # socket-ok: asyncore's own API
        except TypeError:
            return None
        except OSError as why:
            if why.errno in (EWOULDBLOCK, ECONNABORTED, EAGAIN):
                return None
            raise
        return conn, addr

    def send(self, data: Any) -> int:
        """Send what the kernel takes now; 0 when it takes nothing (or the peer is gone)."""
        try:
            sent: int = self.socket.send(data)  # socket-ok: asyncore's own API
        except OSError as why:
            if why.errno == EWOULDBLOCK:
                return 0
            if why.errno in _DISCONNECTED:
                self.handle_close()
                return 0
            raise
        row = self._reactor_row
        if row is not None:
            row.bytes_out += sent
        return sent

    def recv(self, buffer_size: int) -> bytes:
        """Up to ``buffer_size`` bytes; ``b''`` (after ``handle_close``) when the peer closed."""
        try:
            data: bytes = self.socket.recv(buffer_size)  # socket-ok: asyncore's own API
        except OSError as why:
            if why.errno in _DISCONNECTED:
                self.handle_close()
                return b""
            raise
        if not data:
            # The peer closed: reported as readable, then recv() gives nothing.
            self.handle_close()
            return b""
        row = self._reactor_row
        if row is not None:
            row.bytes_in += len(data)
        return data

    def close(self) -> None:
        """Leave the map and the reactor, then close the socket."""
        self.connected = False
        self.accepting = False
        self.connecting = False
        self.del_channel()
        if self.socket is not None:
            try:
                self.socket.close()
            except OSError as why:
                if why.errno not in (ENOTCONN, EBADF):
                    raise

    # -- logging (may be overridden)

    def log(self, message: Any) -> None:
        """Hit logging: ``log: message`` on stderr."""
        sys.stderr.write(f"log: {message}\n")

    def log_info(self, message: Any, type: str = "info") -> None:
        """Informational logging: print ``type: message`` unless ``type`` is in ``ignore_log_types``."""
        if type not in self.ignore_log_types:
            print(f"{type}: {message}")

    # -- events, as the loop delivers them

    def handle_read_event(self) -> None:
        """Readable: accept, complete a connect, or read."""
        if self.accepting:
            self.handle_accept()  # a listening socket only ever accepts
        elif not self.connected:
            if self.connecting:
                self.handle_connect_event()
            self.handle_read()
        else:
            self.handle_read()

    def handle_connect_event(self) -> None:
        """The connect finished: raise its error, or call ``handle_connect``."""
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, _strerror(err))
        self.handle_connect()
        self.connected = True
        self.connecting = False
        self._follow(State.OPEN)

    def handle_write_event(self) -> None:
        """Writable: complete a connect, then write (never for a listening socket)."""
        if self.accepting:
            return
        if not self.connected and self.connecting:
            self.handle_connect_event()
        self.handle_write()

    def handle_expt_event(self) -> None:
        """An exceptional condition: a socket error closes, urgent data goes to ``handle_expt``."""
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            self.handle_close()
        else:
            self.handle_expt()

    def handle_error(self) -> None:
        """An uncaught exception in a handler: log it, then ``handle_close``."""
        _, t, v, tbinfo = compact_traceback()
        try:
            self_repr = repr(self)
        except BaseException:
            self_repr = f"<__repr__(self) failed for object at {id(self):0x}>"
        self.log_info(f"uncaptured python exception, closing channel {self_repr} ({t}:{v} {tbinfo})", "error")
        self.handle_close()

    # -- hooks to override

    def handle_expt(self) -> None:
        """Urgent (out-of-band) data arrived."""
        self.log_info("unhandled incoming priority event", "warning")

    def handle_read(self) -> None:
        """The socket is readable."""
        self.log_info("unhandled read event", "warning")

    def handle_write(self) -> None:
        """The socket is writable."""
        self.log_info("unhandled write event", "warning")

    def handle_connect(self) -> None:
        """The outgoing connection is made."""
        self.log_info("unhandled connect event", "warning")

    def handle_accept(self) -> None:
        """A connection is waiting: accept it and pass it to ``handle_accepted``."""
        pair = self.accept()  # socket-ok: asyncore's own API
        if pair is not None:
            self.handle_accepted(*pair)

    def handle_accepted(self, sock: Any, addr: Any) -> None:
        """A new connection ``sock`` from ``addr`` (default: close it)."""
        sock.close()
        self.log_info("unhandled accepted event", "warning")

    def handle_close(self) -> None:
        """The peer closed, or the channel failed (default: close)."""
        self.log_info("unhandled close event", "warning")
        self.close()


class dispatcher_with_send(dispatcher):
    """A dispatcher whose ``send`` buffers what the kernel does not take at once."""

    def __init__(self, sock: Any = None, map: dict[int, Any] | None = None) -> None:
        dispatcher.__init__(self, sock, map)
        self.out_buffer = b""

    def initiate_send(self) -> None:
        """Hand up to 64 KiB of the buffer to the kernel."""
        sent = dispatcher.send(self, self.out_buffer[:65536])  # socket-ok: asyncore's own API
        self.out_buffer = self.out_buffer[sent:]

    def handle_write(self) -> None:
        """Writable: send more of the buffer."""
        self.initiate_send()

    def writable(self) -> bool:
        """While connecting, or while the buffer holds data."""
        return (not self.connected) or bool(self.out_buffer)

    def send(self, data: Any) -> None:  # type: ignore[override]
        """Append ``data`` to the buffer and try to send at once."""
        if self.debug:
            self.log_info(f"sending {data!r}")
        self.out_buffer = self.out_buffer + data
        self.initiate_send()


def compact_traceback() -> tuple[tuple[str, str, str], type[BaseException] | None, BaseException | None, str]:
    """``((file, function, line), type, value, info)`` of the exception being handled."""
    t, v, tb = sys.exc_info()
    if not tb:
        raise AssertionError("traceback does not exist")
    frames: list[tuple[str, str, str]] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_name, str(tb.tb_lineno)))
        tb = tb.tb_next
    info = " ".join(f"[{f}|{n}|{line}]" for f, n, line in frames)
    return frames[-1], t, v, info


def close_all(map: dict[int, Any] | None = None, ignore_all: bool = False) -> None:
    """Close every channel of ``map`` (default ``socket_map``) and empty it.

    `OSError` with ``EBADF`` is ignored; other errors are raised unless
    ``ignore_all`` (`ExitNow`, ``KeyboardInterrupt`` and ``SystemExit`` always are).
    """
    if map is None:
        map = socket_map
    for obj in list(map.values()):
        try:
            obj.close()
        except OSError as exc:
            if exc.errno != EBADF and not ignore_all:
                raise
        except _reraised_exceptions:
            raise
        except BaseException:
            if not ignore_all:
                raise
    map.clear()
    driver = _drivers.get(id(map))
    if driver is not None and driver.map is map:
        driver.drop_missing()
        driver.discard_if_idle()


# Files: select() and poll() work on pipes and terminals (and call regular
# files always ready); these classes make a file descriptor look enough like
# a socket for a dispatcher.
if os.name == "posix":

    class file_wrapper:
        """A file descriptor (duplicated; the wrapper owns the copy) with a socket's methods."""

        def __init__(self, fd: int) -> None:
            self.fd = os.dup(fd)

        def __del__(self) -> None:
            if self.fd >= 0:
                warnings.warn(f"unclosed file {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()

        def recv(self, *args: Any) -> bytes:
            """``os.read`` on the descriptor."""
            return os.read(self.fd, *args)

        def send(self, *args: Any) -> int:
            """``os.write`` on the descriptor."""
            return os.write(self.fd, *args)

        def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int:
            """Only ``SO_ERROR``, always 0: what a dispatcher asks."""
            if level == socket.SOL_SOCKET and optname == socket.SO_ERROR and not buflen:
                return 0
            raise NotImplementedError("Only asyncore specific behaviour implemented.")

        read = recv
        write = send

        def close(self) -> None:
            """Close the descriptor; idempotent (``fd`` is -1 afterwards, even if closing failed)."""
            if self.fd < 0:
                return
            fd, self.fd = self.fd, -1
            os.close(fd)

        def fileno(self) -> int:
            """The wrapped descriptor."""
            return self.fd

    class file_dispatcher(dispatcher):
        """A dispatcher for a file descriptor or file object (a pipe, a terminal), made non-blocking."""

        def __init__(self, fd: Any, map: dict[int, Any] | None = None) -> None:
            dispatcher.__init__(self, None, map)
            self.connected = True
            try:
                fd = fd.fileno()
            except AttributeError:
                pass
            self.set_file(fd)
            os.set_blocking(fd, False)

        def set_file(self, fd: int) -> None:
            """Wrap ``fd`` (duplicated) and add the channel."""
            self.socket = file_wrapper(fd)
            self._fileno = self.socket.fileno()
            self.add_channel()


#: The ``writable()`` methods whose answer turns true only through the
#: package's own methods (which call `_asked_again`); `asynchat` adds its own.
_TRACKED_WRITABLE: set[Any] = {dispatcher.writable}
