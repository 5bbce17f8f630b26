"""The one error policy for user code: report to the reactor's exception handler.

A protocol callback, a request handler or a datagram handler that raises is a
bug in the application, not a fault of the peer.  Every surface reports it the
same way: `report_user_error` builds an asyncio-style context (``message``,
``exception`` and whatever identifies the connection) and hands it to
`Reactor.call_exception_handler`.  By default that logs the traceback at ERROR
on the ``reactor`` logger; `Reactor.set_exception_handler` replaces it for
every server and connection at once.  The caller then closes only the
connection concerned.
"""

from __future__ import annotations

from typing import Any

from ..core import Reactor

__all__ = ["report_user_error"]


def report_user_error(reactor: Reactor, message: str, exc: BaseException | None, **context: Any) -> None:
    """Report a failure of user code on ``reactor`` (never raises for a closed reactor)."""
    context["message"] = message
    context["exception"] = exc
    context.setdefault("callback", context.get("handler") or context.get("protocol"))
    reactor.call_exception_handler(context)
