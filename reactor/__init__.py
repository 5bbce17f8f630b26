"""reactor: a pure-Python, selectors-driven, single-threaded event reactor.

Many servers on many ports in one thread, requests that never block, and a
loop that lives inside someone else's loop (`Reactor.fileno` +
`Reactor.timeout` + ``Reactor.run_once(0)``).

The package is the top of the layer stack (see docs/design.md): it
composes the layers into the public API.  `Reactor.request`,
`Reactor.create_server` and `Reactor.create_connection` import their surface
when called, so the core itself never imports a protocol at module level.
"""

from .client import RequestError, RequestFailed, RequestRefused, do_request
from .core import Handle, ManualClock, Reactor, TimerHandle, get_default_reactor
from .futures import CancelledError, Future, InvalidStateError
from .reqrep import RequestServer
from .streams import LineProtocol, Protocol, Server, create_connection, create_server

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
    "do_request",
    "Protocol",
    "LineProtocol",
    "Server",
    "create_server",
    "create_connection",
]

__version__ = "0.1.0"
