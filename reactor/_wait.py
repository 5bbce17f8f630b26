"""The wait: which file descriptors the kernel watches, and one wait for them.

A reactor turn waits for I/O once, then dispatches.  This module is the
first half, behind a small contract, `Wait` (trio's ``EpollIOManager`` is
the model: the run loop asks the I/O manager for events and dispatches them
itself):

- ``register(fd, events)``, ``modify(fd, events)``, ``unregister(fd)`` say
  which events of an fd to watch: `READ`, `WRITE` or both;
- ``wait(timeout)`` waits at most ``timeout`` seconds (None: until
  something is ready; 0 or less: not at all) and returns the ``(fd, bits)``
  pairs that are ready;
- ``fileno()`` is a descriptor that is readable whenever a wait would
  return something: what a host loop sleeps on when it embeds the reactor;
- ``close()``, ``len()``, ``registrations()`` and ``statistics()``.

The bits are the backend's own, so that a turn pays no translation per
event: ``bits & READABLE`` wakes an fd's reader, ``bits & WRITABLE`` its
writer (an error or a hang-up wakes both, as `selectors` maps them), and
``bits & INVALID`` says the fd was closed while still registered.

What can go wrong, and what we chose
------------------------------------
*An fd closed while registered.*  epoll watches open files, not numbers:
closing the last descriptor of a file drops it from the epoll set without
a word, so ``unregister`` of such an fd must not fail (it does not), and a
``modify`` of it fails in the kernel (then the fd is no longer registered,
as the standard library's selectors do, and the error is raised).  A
``poll(2)`` wait instead reports the number as ``POLLNVAL`` (`INVALID`),
every time it waits, until told: the caller calls `Wait.forget_closed`,
and the fd stays registered, unwatched, until it is unregistered.  If the
number is reused before either wait notices, the new file's readiness
reaches the old registration; nothing below the caller can tell.  Remove an
fd's reader and writer before closing it.

*Which system call waits* (`PollSwitch`).  epoll's bookkeeping costs the
kernel more per ready descriptor than a ``poll()`` scan costs per
registered one (``python -m benchmarks wait``, Linux 6.18, 64 sockets
all ready: about 110 ns per ready fd for ``epoll_wait``, 65 ns for
``poll``; each idle fd adds about 40 ns to a ``poll`` and nothing to an
``epoll_wait``, so they cost the same when half are ready).  So the waits
follow the share of the registered fds found ready by recent waits, as a
moving average (big and small batches in turn must not make every guess
wrong): above `PollSwitch.POLL_SHARE` plus `PollSwitch.HYSTERESIS`, with
at most `PollSwitch.POLL_MAX` fds registered, they switch to ``poll``;
below `PollSwitch.POLL_SHARE` minus the hysteresis, back to ``epoll``.  The
``select.poll`` set is built from the registrations at the switch and kept
in step while the waits use it (no system call: the set is passed at each
wait); while epoll waits it does not exist, so a registration costs one
``epoll_ctl``, as before the switch existed (keeping both sets at all
times cost a one-shot server about 0.1 µs per connection).  The epoll set
is always complete, so `fileno` serves a host loop whichever wait a turn
used.  Both report the same bits for the same socket (both ask the
socket's own poll), except ``POLLNVAL`` above.

*Why not a selector.*  ``selectors.BaseSelector.select()`` builds a
``(SelectorKey, events)`` tuple per ready fd in Python, about 150 ns an
event, half of what dispatching one costs; its ``poll`` cannot be swapped
in without reading the epoll selector's private fields.  `EpollWait` owns
``select.epoll`` and ``select.poll`` directly and uses no private name of
the standard library.  A selector given to the reactor is still honoured,
through ``select()``, by `SelectorWait`.

*Timeouts* are rounded up to the next millisecond, as `selectors` does:
rounded down, a turn waiting for a timer due in 0.4 ms would spin.  A
signal during a wait is retried by the interpreter with the remaining
timeout (PEP 475) unless its handler raises, which then propagates.
"""

from __future__ import annotations

import abc
import math
import select
import selectors
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["READ", "WRITE", "Wait", "EpollWait", "PollSwitch", "SelectorWait", "default_wait"]

#: The events a registration watches (the values of `selectors`' constants).
READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE

_IN: int = getattr(select, "EPOLLIN", 1)  # the same values as POLLIN / POLLOUT
_OUT: int = getattr(select, "EPOLLOUT", 4)
_POLLNVAL: int = getattr(select, "POLLNVAL", 32)

#: events -> the kernel's bits, for epoll and poll alike.
_KERNEL_BITS = {READ: _IN, WRITE: _OUT, READ | WRITE: _IN | _OUT}


def _kernel_bits(events: int) -> int:
    bits = _KERNEL_BITS.get(events)
    if bits is None:
        raise ValueError(f"events must be READ, WRITE or READ | WRITE, got {events!r}")
    return bits


class Wait(abc.ABC):
    """What a reactor needs from the kernel: registrations, one wait, one pollable fd.

    Methods for the caller: all the public ones.  An fd is a non-negative
    int; ``events`` is `READ`, `WRITE` or both.  Registering an fd twice,
    or modifying or unregistering one that is not registered, is a
    `KeyError`; bad ``events`` a `ValueError`; the kernel's refusal an
    `OSError` (nothing is then registered; a failed `modify` leaves the fd
    unregistered).  Not thread-safe: one thread owns a wait.
    """

    #: The bits of a ready pair that wake the fd's reader.
    READABLE: int
    #: The bits of a ready pair that wake the fd's writer.
    WRITABLE: int
    #: The bit of a ready pair that says the fd was closed while registered (0: never reported).
    INVALID: int

    @abc.abstractmethod
    def register(self, fd: int, events: int) -> None:
        """Start watching ``fd`` for ``events``."""

    @abc.abstractmethod
    def modify(self, fd: int, events: int) -> None:
        """Watch a registered ``fd`` for ``events`` instead; if the kernel refuses, unregister it and raise."""

    @abc.abstractmethod
    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``; an fd already closed is unregistered without error."""

    @abc.abstractmethod
    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait at most ``timeout`` seconds (None: no limit; ≤ 0: none); the ready ``(fd, bits)`` pairs."""

    @abc.abstractmethod
    def forget_closed(self, fd: int) -> None:
        """Stop watching ``fd``, which a wait reported `INVALID`; it stays registered until unregistered."""

    @abc.abstractmethod
    def fileno(self) -> int:
        """A descriptor readable whenever a wait would return something; `RuntimeError` if there is none."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the kernel's resources; idempotent."""

    @abc.abstractmethod
    def registrations(self) -> Mapping[int, int]:
        """A read-only view of the registered fds and their events."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """How many fds are registered."""

    @abc.abstractmethod
    def statistics(self) -> dict[str, int]:
        """``fds`` registered, and how many waits of each kind were done."""


class PollSwitch:
    """The policy that chooses, before each wait of an `EpollWait`, ``poll(2)`` or ``epoll_wait(2)``.

    See the module docstring for the measurement behind it.  The four
    thresholds are class attributes; an instance may override them.
    """

    #: The most registered fds a wait may use ``poll`` for: bounds what one wrong guess costs.
    POLL_MAX = 2048
    #: The share of the registered fds ready per wait at which ``poll`` and
    #: ``epoll`` cost the same (below 0: always ``poll``, when at most
    #: `POLL_MAX` are registered; infinite: never).
    POLL_SHARE = 0.5
    #: How far the moving share must pass `POLL_SHARE` to switch the waits.
    HYSTERESIS = 0.1
    #: The weight of the newest wait in the moving average of the ready share.
    SHARE_WEIGHT = 0.25

    def __init__(self) -> None:
        #: The moving average of (ready fds / registered fds) per wait.
        self.share = 0.0
        #: The ``select.poll`` set while the waits use ``poll``, else None.
        #: The wait keeps it in step with its registrations.
        self.poll: Any = None
        #: Registered fds a ``poll`` wait reported closed: left out of the poll set.
        self.closed: set[int] = set()

    def choose(self, registrations: Mapping[int, int]) -> Any:
        """The poll set the next wait uses, or None for epoll; builds or drops the set at a switch."""
        poll = self.poll
        share = self.share
        if poll is None:
            if share >= self.POLL_SHARE + self.HYSTERESIS and len(registrations) <= self.POLL_MAX:
                poll = self.poll = select.poll()
                closed = self.closed
                for fd, events in registrations.items():
                    if fd not in closed:
                        poll.register(fd, _KERNEL_BITS[events])
        elif share < self.POLL_SHARE - self.HYSTERESIS or len(registrations) > self.POLL_MAX:
            poll = self.poll = None
        return poll

    def observe(self, ready_share: float) -> None:
        """Add one wait's share of ready fds to the moving average."""
        self.share += (ready_share - self.share) * self.SHARE_WEIGHT

    def closed_while_registered(self, fd: int) -> None:
        """Leave ``fd`` out of the poll set from now on, until it is unregistered (`forget`)."""
        self.closed.add(fd)
        self._leave_out(fd)

    def forget(self, fd: int) -> None:
        """``fd`` is no longer registered."""
        self.closed.discard(fd)
        self._leave_out(fd)

    def _leave_out(self, fd: int) -> None:
        if self.poll is not None:
            try:
                self.poll.unregister(fd)
            except KeyError:
                pass  # left out already, as closed

    def reset(self) -> None:
        """Back to epoll waits with nothing known (when the wait closes)."""
        self.poll = None
        self.closed.clear()
        self.share = 0.0


class EpollWait(Wait):
    """The default wait on Linux: ``select.epoll`` and ``select.poll``, chosen per wait by a `PollSwitch`."""

    READABLE = ~_OUT
    WRITABLE = ~_IN
    INVALID = _POLLNVAL

    def __init__(self, switch: PollSwitch | None = None) -> None:
        self._epoll = select.epoll()
        self._events: dict[int, int] = {}  # fd -> events: what the epoll set holds
        #: The policy that chooses each wait's system call.
        self.switch = switch if switch is not None else PollSwitch()
        #: Waits done with ``poll`` and with ``epoll_wait`` (for tests and tuning).
        self.poll_waits = 0
        self.epoll_waits = 0

    def register(self, fd: int, events: int) -> None:
        """Start watching ``fd`` for ``events``."""
        if fd in self._events:
            raise KeyError(f"fd {fd} is already registered")
        bits = _kernel_bits(events)
        self._epoll.register(fd, bits)
        self._events[fd] = events
        poll = self.switch.poll
        if poll is not None:
            poll.register(fd, bits)

    def modify(self, fd: int, events: int) -> None:
        """Watch a registered ``fd`` for ``events`` instead; if the kernel refuses, unregister it and raise."""
        if fd not in self._events:
            raise KeyError(f"fd {fd} is not registered")
        bits = _kernel_bits(events)
        try:
            self._epoll.modify(fd, bits)
        except OSError:
            del self._events[fd]  # closed behind our back: epoll forgot it already
            self.switch.forget(fd)
            raise
        self._events[fd] = events
        switch = self.switch
        if switch.poll is not None and fd not in switch.closed:
            switch.poll.register(fd, bits)  # a poll set's register replaces

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``; an fd already closed is unregistered without error."""
        try:
            del self._events[fd]
        except KeyError:
            raise KeyError(f"fd {fd} is not registered") from None
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass  # closed behind our back: epoll forgot it already
        switch = self.switch
        if switch.poll is not None or switch.closed:
            switch.forget(fd)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait with ``poll`` or ``epoll_wait``, as the switch chooses; the ready ``(fd, bits)`` pairs."""
        # In milliseconds, -1 for no limit; rounded up (see the module docstring).
        if timeout is None:
            ms = -1
        elif timeout <= 0:
            ms = 0
        else:
            ms = math.ceil(timeout * 1e3)
        registered = len(self._events)
        switch = self.switch
        poll = switch.choose(self._events)
        ready: list[tuple[int, int]]
        if poll is None:
            self.epoll_waits += 1
            ready = self._epoll.poll(ms * 1e-3 if ms > 0 else ms, registered or 1)
        else:
            self.poll_waits += 1
            ready = poll.poll(ms)
        if registered:
            switch.observe(len(ready) / registered)
        return ready

    def forget_closed(self, fd: int) -> None:
        """Stop watching ``fd``, which a wait reported `INVALID`; it stays registered until unregistered."""
        if fd in self._events:
            self.switch.closed_while_registered(fd)

    def fileno(self) -> int:
        """The epoll fd: readable whenever a wait would return something, whichever call waits."""
        return self._epoll.fileno()

    def close(self) -> None:
        """Close the epoll fd and forget every registration; idempotent."""
        self._epoll.close()
        self._events.clear()
        self.switch.reset()

    def registrations(self) -> Mapping[int, int]:
        """A read-only view of the registered fds and their events."""
        return types.MappingProxyType(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def statistics(self) -> dict[str, int]:
        """``fds`` registered, ``poll_waits`` and ``epoll_waits``."""
        return {"fds": len(self._events), "poll_waits": self.poll_waits, "epoll_waits": self.epoll_waits}


class SelectorWait(Wait):
    """A `selectors.BaseSelector` behind the `Wait` contract, used through its ``select()``.

    For a selector passed to the reactor, and where there is no epoll.  Its
    bits are the selector's `READ` and `WRITE`; it never reports `INVALID`.
    """

    READABLE = READ
    WRITABLE = WRITE
    INVALID = 0

    def __init__(self, selector: selectors.BaseSelector) -> None:
        if not isinstance(selector, selectors.BaseSelector):
            raise TypeError(f"selector must be a selectors.BaseSelector, got {type(selector).__name__}")
        #: The selector this wait uses.
        self.selector = selector
        self.waits = 0

    def register(self, fd: int, events: int) -> None:
        """Start watching ``fd`` for ``events``."""
        _kernel_bits(events)
        try:
            self.selector.register(fd, events)
        except KeyError:
            raise KeyError(f"fd {fd} is already registered") from None

    def modify(self, fd: int, events: int) -> None:
        """Watch a registered ``fd`` for ``events`` instead; if the selector refuses, unregister it and raise."""
        _kernel_bits(events)
        selector = self.selector
        try:
            selector.modify(fd, events)
        except KeyError:
            raise KeyError(f"fd {fd} is not registered") from None
        except BaseException:
            # The standard library's selectors drop what they failed to
            # modify; a selector that does not is made to, as the contract says.
            if fd in selector.get_map():
                try:
                    selector.unregister(fd)
                except (KeyError, ValueError, OSError):
                    pass
            raise

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``; an fd already closed is unregistered without error."""
        try:
            self.selector.unregister(fd)
        except KeyError:
            raise KeyError(f"fd {fd} is not registered") from None

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        """``select(timeout)``, as ``(fd, events)`` pairs."""
        self.waits += 1
        return [(key.fd, events) for key, events in self.selector.select(timeout)]

    def forget_closed(self, fd: int) -> None:
        """Nothing to do: a selector's ``select()`` never reports `INVALID`."""

    def fileno(self) -> int:
        """The selector's own fd (epoll, kqueue, devpoll); `RuntimeError` for one that has none."""
        fileno = getattr(self.selector, "fileno", None)
        if fileno is None:
            raise RuntimeError(
                f"{type(self.selector).__name__} has no pollable fd; embed with an "
                "EpollSelector/KqueueSelector (the default on Linux/macOS)"
            )
        return int(fileno())

    def close(self) -> None:
        """Close the selector; idempotent."""
        self.selector.close()

    def registrations(self) -> Mapping[int, int]:
        """A read-only copy of the registered fds and their events."""
        return types.MappingProxyType({key.fd: key.events for key in self.selector.get_map().values()})

    def __len__(self) -> int:
        registered = self.selector.get_map()
        return 0 if registered is None else len(registered)  # None once the selector is closed

    def statistics(self) -> dict[str, int]:
        """``fds`` registered and ``waits`` done."""
        return {"fds": len(self), "waits": self.waits}


def default_wait() -> Wait:
    """`EpollWait` where there are epoll and poll (Linux), else `SelectorWait` over `selectors.DefaultSelector`."""
    if hasattr(select, "epoll") and hasattr(select, "poll"):
        return EpollWait()
    return SelectorWait(selectors.DefaultSelector())
