"""Command/response ("chat") protocols on asyncore dispatchers, driven by a reactor.

A drop-in replacement for Python 3.11's ``asynchat`` (removed in 3.12): the
same names, hooks and semantics, built on `reactor.compat.asyncore`, so an
`async_chat` channel is a row in a reactor's connection table and shares its
thread with every other server and timer of that reactor.  Existing code
changes one import line: ``from reactor.compat import asynchat``.

An `async_chat` reads its socket, splits the byte stream at a *terminator*
and hands the pieces to two methods the subclass defines:

- ``collect_incoming_data(data)``: a piece of input before the terminator
  (`_collect_incoming_data` appends it to ``self.incoming`` and `_get_data`
  joins and clears that list, for subclasses that want exactly that);
- ``found_terminator()``: the terminator was reached.

The terminator (`set_terminator`) is a byte string (input is split where it
occurs; it is not passed on), an integer (that many bytes are collected, then
the terminator is found and the count is left at 0), or None (everything is
collected, nothing is ever found).  It may be changed inside
``found_terminator()``; the rest of the buffered input is split with the new
one.  With ``use_encoding`` true, a ``str`` terminator is encoded with
``encoding`` first.

Output is a FIFO of byte strings and *producers* (objects whose ``more()``
returns the next bytes, ``b""`` when done; `simple_producer` wraps a byte
string): `push`, `push_with_producer`, and `close_when_done`, which queues a
marker that closes the channel once everything before it is sent.

Methods for the caller: ``push()``, ``push_with_producer()``,
``close_when_done()``, ``set_terminator()``, ``get_terminator()``,
``discard_buffers()``, and those of `reactor.compat.asyncore.dispatcher`.
Methods that must be overridden: ``collect_incoming_data()``,
``found_terminator()``.  Methods that may be overridden: ``handle_read()``,
``handle_write()``, ``handle_close()``, ``initiate_send()``, ``readable()``,
``writable()``.  Class attributes that may be overridden:
``ac_in_buffer_size`` (bytes asked of one ``recv``), ``ac_out_buffer_size``
(the largest piece handed to one ``send``; longer pushes are queued in pieces
of this size), ``use_encoding`` and ``encoding``.

How it differs, and why
-----------------------
*Nothing in the semantics.*  Every hook is called in the same order with the
same arguments as in 3.11, the terminator bookkeeping is the same, and one
call of `initiate_send` still hands at most one piece to ``send``.  Two
defects of 3.11 are not reproduced: ``push()`` of something that is not
bytes-like raises a `TypeError` whose message names the type (3.11 passes a
format string and its argument as two exception arguments), and with
``use_encoding`` a ``str`` arriving from a ``recv`` override is encoded with
``encoding`` (3.11 passes the ``str`` type itself to ``bytes()``, which
raises).  Importing the module warns about nothing.

*Sending right away.*  As in 3.11, `push` calls `initiate_send`, so a reply
pushed from ``found_terminator()`` is usually written before the handler
returns, and a channel asks to write only while its FIFO holds something
(`writable`).  On this package's asyncore that answer is read again after
every handler of the channel, not asked of every channel on every turn.
"""

from __future__ import annotations

from collections import deque
from typing import Any, TypeAlias

from . import asyncore

__all__ = ["async_chat", "simple_producer", "find_prefix_at_end"]

Terminator: TypeAlias = "bytes | int | None"


_append = deque.append
_appendleft = deque.appendleft
_extend = deque.extend


class _Fifo(deque[Any]):
    """``producer_fifo``: a deque that tells the driver when code outside `async_chat` queues output.

    `async_chat.writable` is asked only when output was queued (see
    `reactor.compat.asyncore`, *Asking readable()/writable() cheaply*); the
    methods of `async_chat` say so themselves and bypass these overrides.
    """

    __slots__ = ("channel",)

    def __init__(self, channel: Any) -> None:
        super().__init__()
        self.channel = channel

    def append(self, item: Any) -> None:
        _append(self, item)
        asyncore._asked_again(self.channel)

    def appendleft(self, item: Any) -> None:
        _appendleft(self, item)
        asyncore._asked_again(self.channel)

    def extend(self, items: Any) -> None:
        _extend(self, items)
        asyncore._asked_again(self.channel)

    def extendleft(self, items: Any) -> None:
        deque.extendleft(self, items)
        asyncore._asked_again(self.channel)

    def insert(self, index: int, item: Any) -> None:
        deque.insert(self, index, item)
        asyncore._asked_again(self.channel)

    def __iadd__(self, items: Any) -> _Fifo:  # type: ignore[misc]
        _extend(self, items)
        asyncore._asked_again(self.channel)
        return self


class async_chat(asyncore.dispatcher):  # noqa: N801 -- the standard library's name
    """An asyncore dispatcher that splits its input at a terminator and queues its output.

    Abstract: a subclass defines ``collect_incoming_data()`` and
    ``found_terminator()``; see the module docstring for the rest.
    """

    #: Bytes asked of one ``recv()``.
    ac_in_buffer_size = 65536
    #: The largest piece handed to one ``send()``.
    ac_out_buffer_size = 65536

    #: Off by default: a ``str`` where bytes belong is usually a bug, and
    #: encoding it silently would hide it.
    use_encoding = 0
    encoding = "latin-1"

    #: The current terminator; set it with `set_terminator` (there is no default).
    terminator: Any

    #: Whether the class keeps `initiate_send` as it is here (then `push` may
    #: send a reply with nothing queued before it at once); set per subclass.
    _plain_initiate_send = True
    #: Whether the class keeps `get_terminator` as it is here (then
    #: `handle_read` reads ``terminator`` without the call); set per subclass.
    _plain_get_terminator = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._plain_initiate_send = cls.initiate_send is async_chat.initiate_send
        cls._plain_get_terminator = cls.get_terminator is async_chat.get_terminator

    def __init__(self, sock: Any = None, map: dict[int, Any] | None = None) -> None:
        # Set before the dispatcher registers the socket: registering may
        # already ask writable(), which reads producer_fifo.
        self.ac_in_buffer = b""
        self.incoming: list[bytes] = []
        self.producer_fifo: deque[Any] = _Fifo(self)
        asyncore.dispatcher.__init__(self, sock, map)

    # ---------------------------------------------------------- input

    def collect_incoming_data(self, data: bytes) -> None:
        """Take a piece of input that precedes the terminator; a subclass must define it."""
        raise NotImplementedError("must be implemented in subclass")

    def _collect_incoming_data(self, data: bytes) -> None:
        """Keep ``data`` in ``self.incoming`` (a ready-made `collect_incoming_data`)."""
        self.incoming.append(data)

    def _get_data(self) -> bytes:
        """Everything `_collect_incoming_data` kept, joined; ``self.incoming`` is emptied."""
        data = b"".join(self.incoming)
        self.incoming.clear()
        return data

    def found_terminator(self) -> None:
        """React to the terminator having been reached; a subclass must define it."""
        raise NotImplementedError("must be implemented in subclass")

    def set_terminator(self, term: Terminator | str) -> None:
        """Set the input delimiter: a byte string of any length, a byte count, or None (no delimiter)."""
        if isinstance(term, str) and self.use_encoding:
            term = term.encode(self.encoding)
        elif isinstance(term, int) and term < 0:
            raise ValueError("the number of received bytes must be positive")
        self.terminator = term

    def get_terminator(self) -> Any:
        """The current terminator (a byte count counts down as bytes arrive)."""
        return self.terminator

    def handle_read(self) -> None:
        """Read what is there and split it at the terminator (the terminator may change on the way)."""
        try:
            data = self.recv(self.ac_in_buffer_size)  # socket-ok: asynchat's own API
        except BlockingIOError:
            return  # readiness was a hint
        except OSError:
            self.handle_error()
            return
        if self.use_encoding and isinstance(data, str):
            data = data.encode(self.encoding)
        self.ac_in_buffer = self.ac_in_buffer + data if self.ac_in_buffer else data
        # One recv can hold several pieces and terminators.  The buffer is
        # re-read from the instance after every hook (in 3.11's order),
        # because a hook may replace it (discard_buffers) or change the
        # terminator, and the rest must be split the way it says.
        plain = self._plain_get_terminator
        while self.ac_in_buffer:
            buffer = self.ac_in_buffer
            terminator = self.terminator if plain else self.get_terminator()
            if not terminator:
                # None (or a count that reached 0): everything is data.
                self.collect_incoming_data(buffer)
                self.ac_in_buffer = b""
            elif isinstance(terminator, int):
                if len(buffer) < terminator:
                    self.collect_incoming_data(buffer)
                    self.ac_in_buffer = b""
                    self.terminator = self.terminator - len(buffer)
                else:
                    self.collect_incoming_data(buffer[:terminator])
                    self.ac_in_buffer = self.ac_in_buffer[terminator:]
                    self.terminator = 0
                    self.found_terminator()
            else:
                index = buffer.find(terminator)
                if index != -1:
                    if index > 0:  # an empty piece is not reported
                        self.collect_incoming_data(buffer[:index])
                    self.ac_in_buffer = self.ac_in_buffer[index + len(terminator):]
                    self.found_terminator()
                    continue
                # No whole terminator: keep back a tail that may be its
                # beginning, so a terminator split across reads is found.
                partial = find_prefix_at_end(buffer, terminator)
                if partial:
                    if partial != len(buffer):
                        self.collect_incoming_data(buffer[:-partial])
                        self.ac_in_buffer = self.ac_in_buffer[-partial:]
                    break
                self.collect_incoming_data(buffer)
                self.ac_in_buffer = b""

    # ---------------------------------------------------------- output

    def handle_write(self) -> None:
        """The socket can take more: send the next piece."""
        self.initiate_send()

    def handle_close(self) -> None:
        """The peer closed, or `close_when_done` was reached: close the channel."""
        self.close()

    def push(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` (bytes-like) for sending, in pieces of ``ac_out_buffer_size``, and start sending."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"push() takes bytes, bytearray or memoryview, not {type(data).__name__}")
        size = self.ac_out_buffer_size
        fifo = self.producer_fifo
        if not fifo and data and len(data) <= size and self.connected and self._plain_initiate_send:
            # Nothing queued before it: what initiate_send() would do with this
            # one piece, without queueing it first (the common reply).
            try:
                sent = self.send(data)  # socket-ok: asynchat's own API
            except OSError:
                _append(fifo, data)
                asyncore._asked_again(self)
                self.handle_error()
                return
            if sent < len(data):
                _append(fifo, data[sent:] if sent else data)
                asyncore._asked_again(self)  # writable() is true: watch for writing
            return
        if len(data) > size:
            _extend(fifo, _pieces(data, size))
        else:
            _append(fifo, data)
        self.initiate_send()

    def push_with_producer(self, producer: Any) -> None:
        """Queue a producer (``more()`` returns bytes, ``b""`` when done) and start sending."""
        _append(self.producer_fifo, producer)
        self.initiate_send()

    def readable(self) -> bool:
        """Always true: input is read whatever the buffer holds (a terminator may be far off)."""
        return True

    def writable(self) -> bool:
        """True while output is queued, or while a connect is in progress."""
        return bool(self.producer_fifo) or not self.connected

    def close_when_done(self) -> None:
        """Close the channel once everything queued before this call has been sent."""
        _append(self.producer_fifo, None)
        asyncore._asked_again(self)  # writable() is true now

    def initiate_send(self) -> None:
        """Hand the next piece of the FIFO to ``send()`` (at most one ``send`` per call)."""
        try:
            fifo = self.producer_fifo
            while fifo and self.connected:
                first = fifo[0]
                if not first:
                    # An empty piece is dropped; the close_when_done marker closes.
                    fifo.popleft()
                    if first is None:
                        self.handle_close()
                        return
                size = self.ac_out_buffer_size
                try:
                    data = first[:size]
                except TypeError:
                    # Not sliceable: a producer.  Its next piece goes in front of it.
                    data = first.more()
                    if data:
                        _appendleft(fifo, data)
                    else:
                        fifo.popleft()
                    continue
                if isinstance(data, str) and self.use_encoding:
                    data = data.encode(self.encoding)
                try:
                    sent = self.send(data)  # socket-ok: asynchat's own API
                except OSError:
                    self.handle_error()
                    return
                if sent:
                    if sent < len(data) or size < len(first):
                        fifo[0] = first[sent:]
                    else:
                        fifo.popleft()
                return
        finally:
            if self.producer_fifo or not self.connected:
                asyncore._asked_again(self)  # writable() is true: watch for writing

    def discard_buffers(self) -> None:
        """Drop all buffered input and all queued output (for emergencies)."""
        self.ac_in_buffer = b""
        self.incoming.clear()
        self.producer_fifo.clear()


class simple_producer:  # noqa: N801 -- the standard library's name
    """A producer over one byte string, handing it out ``buffer_size`` bytes at a time."""

    def __init__(self, data: bytes, buffer_size: int = 512) -> None:
        self.data = data
        self.buffer_size = buffer_size

    def more(self) -> bytes:
        """The next piece, or ``b""`` when the string is used up."""
        piece, self.data = self.data[:self.buffer_size], self.data[self.buffer_size:]
        return piece


def _pieces(data: Any, size: int) -> list[Any]:
    # Not inline in `push`: a comprehension there would make every call of
    # push() create closure cells for ``data`` and ``size``.
    return [data[i:i + size] for i in range(0, len(data), size)]


def find_prefix_at_end(haystack: Any, needle: Any) -> int:
    """The length of the longest proper prefix of ``needle`` that ``haystack`` ends with (0 if none).

    ``find_prefix_at_end(b"qwerty\\r", b"\\r\\n") == 1``.  The caller has
    already checked that ``needle`` does not occur whole.
    """
    length = len(needle) - 1
    while length and not haystack.endswith(needle[:length]):
        length -= 1
    return length


asyncore._TRACKED_WRITABLE.add(async_chat.writable)
