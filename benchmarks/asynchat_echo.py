"""The ``asynchat`` benchmark servers: one async_chat line server, on two asyncore implementations.

The server code (`serve_lines`) is written once, the classic way: an
``asyncore.dispatcher`` that listens and makes an ``asynchat.async_chat``
channel per accepted connection; the channel splits its input at ``\\r\\n``
and pushes ``Requested: <line>\\r\\n`` for every line (a last line without a
terminator is answered at EOF).  It is run twice, and only the modules it is
given differ:

- ``asynchat`` kind: `reactor.compat.asyncore` and `reactor.compat.asynchat`;
- ``asynchat-backport`` kind: the ``pyasyncore`` and ``pyasynchat``
  backports (the standard library's 3.11 modules, republished for 3.12+),
  loaded from their installed files by path, so that on 3.11 the standard
  library's copies, which come first on ``sys.path``, are not picked instead.

Both call ``asyncore.loop(use_poll=True)``: ``poll()`` is the backport's best
(``select()`` fails above descriptor 1,023 and costs more per turn); on this
package ``use_poll`` keeps only its meaning and the reactor's selector
(epoll) is used either way.  SIGTERM and SIGINT raise ``ExitNow`` out of the
loop.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import sys
from importlib import metadata
from types import ModuleType
from typing import Any

__all__ = ["backport_modules", "backport_unavailable", "serve_backport", "serve_compat", "serve_lines"]

#: (distribution, module) of the backports, asyncore first: asynchat imports it by name.
BACKPORTS = (("pyasyncore", "asyncore"), ("pyasynchat", "asynchat"))


def backport_unavailable() -> str | None:
    """None when both backports are installed, else why the backport server cannot run."""
    for dist, _module in BACKPORTS:
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            return f"{dist} is not installed (pip install pyasyncore pyasynchat, or 'selreactor[bench]')"
    return None


def backport_modules() -> tuple[ModuleType, ModuleType]:
    """The backports' ``asyncore`` and ``asynchat``, loaded from the installed distributions' files.

    They are bound as ``sys.modules['asyncore']`` and ``['asynchat']`` (the
    backport's asynchat does ``import asyncore``); meant for a server process.
    """
    loaded: list[ModuleType] = []
    for dist, name in BACKPORTS:
        path = metadata.distribution(dist).locate_file(f"{name}/__init__.py")
        spec = importlib.util.spec_from_file_location(name, str(path))
        if spec is None or spec.loader is None:
            raise SystemExit(f"cannot load {name} from {dist} ({path})")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        loaded.append(module)
    return loaded[0], loaded[1]


def serve_lines(asyncore: Any, asynchat: Any, port: int, ready: Any) -> None:
    """Serve the line protocol on 127.0.0.1:``port`` with these asyncore/asynchat modules until a signal.

    ``ready(port)`` is called once the server listens.
    """

    class LineChannel(asynchat.async_chat):  # type: ignore[misc]
        ac_in_buffer: bytes

        def __init__(self, sock: socket.socket) -> None:
            asynchat.async_chat.__init__(self, sock)
            self.closing = False
            self.set_terminator(b"\r\n")

        def collect_incoming_data(self, data: bytes) -> None:
            self.incoming.append(data)

        def found_terminator(self) -> None:
            self.push(b"Requested: " + self._get_data() + b"\r\n")

        def readable(self) -> bool:
            return not self.closing

        def handle_close(self) -> None:
            # The peer half-closed: answer a last unterminated line, then
            # close once everything queued is sent.
            if self.closing:
                self.close()
                return
            self.closing = True
            tail = self._get_data() + self.ac_in_buffer
            self.ac_in_buffer = b""
            if tail:
                self.push(b"Requested: " + tail + b"\r\n")
            self.close_when_done()
            self.initiate_send()

    class LineServer(asyncore.dispatcher):  # type: ignore[misc]
        def __init__(self) -> None:
            asyncore.dispatcher.__init__(self)
            self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
            self.set_reuse_addr()
            self.bind(("127.0.0.1", port))
            self.listen(socket.SOMAXCONN)

        def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
            LineChannel(sock)

    class Wakeup(asyncore.dispatcher):  # type: ignore[misc]
        """The read end of the process's signal wakeup fd, so a signal always ends the poll.

        Python runs a signal's handler only when the main thread next runs
        bytecode: a signal that lands just before ``poll()`` blocks would
        wait for the next event or the loop's timeout.  The C-level handler
        writes the wakeup fd at once; reading it here lets the handler run.
        """

        def handle_read(self) -> None:
            try:
                self.socket.recv(4096)
            except BlockingIOError:
                pass

        def writable(self) -> bool:
            return False

    def stop(signum: int, frame: Any) -> None:
        raise asyncore.ExitNow()

    server = LineServer()
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    wakeup = Wakeup(wake_r)
    previous_fd = signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready(server.socket.getsockname()[1])
    try:
        asyncore.loop(timeout=30.0, use_poll=True)
    except asyncore.ExitNow:
        pass
    finally:
        signal.set_wakeup_fd(previous_fd)
        wakeup.close()
        wake_w.close()
        asyncore.close_all()


def serve_compat(port: int) -> None:
    """The line server on `reactor.compat.asyncore`/`asynchat`."""
    from reactor.compat import asynchat, asyncore

    from .servers import _ready

    serve_lines(asyncore, asynchat, port, _ready)


def serve_backport(port: int) -> None:
    """The same line server on the pyasyncore/pyasynchat backports."""
    from .servers import _ready

    asyncore, asynchat = backport_modules()
    serve_lines(asyncore, asynchat, port, _ready)
