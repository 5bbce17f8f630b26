"""One background thread per reactor, shared by every server that `start()`s on it.

The core never starts a thread.  The server layers (`RequestServer.start`,
`reactor.easy` endpoints' ``start``) offer "serve in the background", and
they must agree: however many servers of one reactor are started, one thread
runs that reactor.  This module is the one registry they share.
"""

from __future__ import annotations

import threading

from .core import Reactor

__all__ = ["start_background", "background_thread", "join_background"]

_threads: dict[Reactor, threading.Thread] = {}
_lock = threading.Lock()


def _serve(reactor: Reactor) -> None:
    try:
        reactor.run()
    finally:
        with _lock:
            if _threads.get(reactor) is threading.current_thread():
                del _threads[reactor]


def start_background(reactor: Reactor, name: str = "reactor") -> threading.Thread | None:
    """Run ``reactor`` in a daemon thread unless one already does; return that thread.

    Returns None when the reactor is already run by someone's ``run()`` in
    the foreground (it is being served; there is nothing to start).
    """
    with _lock:
        thread = _threads.get(reactor)
        if thread is not None and thread.is_alive():
            return thread
        if reactor.is_running():
            return None
        thread = threading.Thread(target=_serve, args=(reactor,), name=name, daemon=True)
        _threads[reactor] = thread
        thread.start()
        return thread


def background_thread(reactor: Reactor) -> threading.Thread | None:
    """The live background thread of ``reactor``, if any."""
    with _lock:
        thread = _threads.get(reactor)
    return thread if thread is not None and thread.is_alive() else None


def join_background(reactor: Reactor, timeout: float | None = None) -> bool:
    """Wait for the background thread of ``reactor`` to end; True if none is left running."""
    thread = background_thread(reactor)
    if thread is None or thread is threading.current_thread():
        return thread is None
    thread.join(timeout)
    return not thread.is_alive()
