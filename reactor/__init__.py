"""reactor: a pure-Python, selectors-driven, single-threaded event reactor.

Many servers on many ports in one thread, requests that never block, and a
loop that lives inside someone else's loop (`Reactor.fileno` +
`Reactor.timeout` + ``Reactor.run_once(0)``).

The package is the top of the layer stack (see docs/design.md): it
composes the layers into the public API.  `Reactor.request`,
`Reactor.create_server` and `Reactor.create_connection` import their surface
when called, so the core itself never imports a protocol at module level.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .client import ReplyTooLarge, RequestError, RequestFailed, RequestRefused, RequestReset, do_request
from .core import Handle, ManualClock, Reactor, ReactorClosedError, TimerHandle, get_default_reactor
from .futures import Future, InvalidStateError, to_asyncio, to_concurrent
from .reqrep import RequestServer
from .streams import LineProtocol, Protocol, Server, create_connection, create_server
from .streams_async import (
    IncompleteReadError,
    LimitOverrunError,
    StreamReader,
    StreamWriter,
    open_connection,
    start_server,
)
from .tasks import (
    Task,
    TaskGroup,
    create_task,
    current_task,
    gather,
    get_running_reactor,
    run,
    sleep,
    wait_for,
)

if TYPE_CHECKING:
    from asyncio import CancelledError as CancelledError

    __version__: str

# A library leaves output to the application: without this, records of WARNING
# and above would reach stderr through logging's last-resort handler in a
# program that never configured logging.
logging.getLogger("reactor").addHandler(logging.NullHandler())

__all__ = [
    "Reactor",
    "Future",
    "Handle",
    "TimerHandle",
    "ManualClock",
    "CancelledError",
    "InvalidStateError",
    "get_default_reactor",
    "RequestServer",
    "RequestError",
    "RequestRefused",
    "RequestFailed",
    "RequestReset",
    "ReplyTooLarge",
    "do_request",
    "Protocol",
    "LineProtocol",
    "Server",
    "create_server",
    "create_connection",
    # coroutine streams (reactor.streams_async)
    "start_server",
    "open_connection",
    "StreamReader",
    "StreamWriter",
    "IncompleteReadError",
    "LimitOverrunError",
    "ReactorClosedError",
    # coroutines on the reactor (reactor.tasks)
    "Task",
    "TaskGroup",
    "create_task",
    "current_task",
    "get_running_reactor",
    "sleep",
    "wait_for",
    "gather",
    "run",
]

# The bridges from reactor futures to asyncio and concurrent.futures.
__all__ += ["to_asyncio", "to_concurrent"]

# Every client-side request failure is a RequestError (reactor.client).
from .client import ReplyNotUTF8, RequestNotResolved, RequestTimeout, RequestTLSError  # noqa: E402

__all__ += ["RequestTimeout", "ReplyNotUTF8", "RequestNotResolved", "RequestTLSError"]

# The name of the installed distribution (the import name is ``reactor``).
_DISTRIBUTION = "selreactor"

# `__version__` when the distribution is not installed (a source tree on ``sys.path``).
_UNKNOWN_VERSION = "0+unknown"

# Two public names are resolved on first access (PEP 562), because what they
# need costs more import time than the rest of the package: `CancelledError`
# is asyncio's class, and `__version__` comes from importlib.metadata.
_LAZY = ("CancelledError", "__version__")


def __getattr__(name: str) -> Any:
    """Resolve `CancelledError` and `__version__` on first access."""
    if name == "CancelledError":
        from asyncio import CancelledError

        return CancelledError
    if name == "__version__":
        version = _distribution_version()
        globals()["__version__"] = version
        return version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, with the lazily resolved ones."""
    return sorted(set(globals()) | set(_LAZY))


def _distribution_version() -> str:
    """The installed distribution's version, or "0+unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_DISTRIBUTION)
    except PackageNotFoundError:
        return _UNKNOWN_VERSION
