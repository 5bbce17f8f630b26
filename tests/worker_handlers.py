"""Handlers for the worker-process tests (tests/test_workers.py), importable by the workers.

``pid`` answers the worker's process id; ``block S`` holds the worker's
reactor for S seconds first (work that keeps one process busy, so that
another accepts meanwhile); ``sleep S MARKER`` notes its arrival by creating
the file MARKER, then answers after S seconds without blocking (a request in
flight).
"""

from __future__ import annotations

import os
import time

from reactor import Future, RequestServer


class PidServer(RequestServer):
    """Answers with the process id of the worker that served the request."""

    def handle_request(self, request: str) -> str | Future[str]:
        """See the module docstring."""
        command, _, rest = request.partition(" ")
        if command == "block":
            time.sleep(float(rest))  # sleep-ok: a handler that blocks its worker on purpose (a request in flight)
        elif command == "sleep":
            seconds, _, marker = rest.partition(" ")
            with open(marker, "x"):
                pass
            reply: Future[str] = self.reactor.create_future()
            self.reactor.call_later(float(seconds), reply.set_result, str(os.getpid()))
            return reply
        return str(os.getpid())


class Unbootable(PidServer):
    """A handler that cannot be built: its construction raises, in every worker."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("no database here")
