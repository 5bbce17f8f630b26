"""reactor: a pure-Python, selectors-driven, single-threaded event reactor.

Many servers on many ports in one thread, requests that never block, and a
loop that lives inside someone else's loop (`Reactor.fileno` +
`Reactor.timeout` + ``Reactor.run_once(0)``).
"""

from .core import Handle, ManualClock, Reactor, TimerHandle, get_default_reactor
from .futures import CancelledError, Future, InvalidStateError

__all__ = [
    "Reactor",
    "Future",
    "Handle",
    "TimerHandle",
    "ManualClock",
    "CancelledError",
    "InvalidStateError",
    "get_default_reactor",
]

__version__ = "0.1.0"
