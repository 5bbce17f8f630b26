"""reactor: a pure-Python, selectors-driven, single-threaded event reactor.

Many servers on many ports in one thread, requests that never block, and a
loop that lives inside someone else's loop (`Reactor.fileno` +
`Reactor.timeout` + ``Reactor.run_once(0)``).

The package is the top of the layer stack (see docs/design.md): it
composes the layers into the public API.  In particular it installs the
request/reply client as `Reactor.request`, so that the core itself never
imports a protocol.
"""

from .client import RequestRefused, _request_method, do_request
from .core import Handle, ManualClock, Reactor, TimerHandle, get_default_reactor
from .futures import CancelledError, Future, InvalidStateError
from .reqrep import RequestServer

Reactor.request = _request_method  # type: ignore[attr-defined]

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
    "RequestRefused",
    "do_request",
]

__version__ = "0.1.0"
