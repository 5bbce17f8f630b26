"""``GET /metrics``: a reactor's counters in the Prometheus text exposition format.

`serve_metrics` (also `Reactor.serve_metrics`) listens on a TCP address and
answers ``GET /metrics`` with `metrics_text` of the reactor's snapshot
(`reactor.control.snapshot`, without the rows), served by the reactor
itself: no thread, no HTTP library.  The server is a protocol on the
transport layer's `Listener`; it speaks just enough HTTP/1.x for a scraper
(one request per connection, then close), answers other paths with 404 and
other methods with 405, and never reports its own connections.

Serving metrics also turns on the request-duration histogram of every server
of that reactor (`reactor.transport.listener.enable_request_timing`): one
clock read per completed request, and none while metrics are off.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from .addresses import parse_address
from .control import IDLE_TIMEOUT, _ObserverFactory, _ObserverServer, snapshot
from .core import Reactor
from .futures import Future
from .transport.listener import Listener, enable_request_timing
from .transport.stream import TransportLimits
from .transport.table import State

__all__ = ["metrics_text", "MetricsServer", "serve_metrics"]

logger = logging.getLogger("reactor.metrics")


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return str(int(value))


#: (metric, kind, help, the servers' counter it reports) for every per-server series.
_SERVER_METRICS = (
    ("reactor_connections_accepted_total", "counter", "Connections accepted.", "accepted"),
    ("reactor_requests_completed_total", "counter", "Requests (exchanges) finished in full.", "completed"),
    ("reactor_errors_total", "counter", "Handler, protocol and peer I/O errors.", "errors"),
    ("reactor_timeouts_total", "counter", "Connections closed by a deadline.", "timeouts"),
    ("reactor_requests_rejected_total", "counter", "Oversized or malformed requests rejected.", "rejected"),
    ("reactor_accept_pauses_total", "counter", "Times accepting paused (limit or out of fds).", "accept_pauses"),
    ("reactor_connections_active", "gauge", "Connections open now.", "active"),
)
#: (metric, kind, help, the reactor statistic it reports).
_REACTOR_METRICS = (
    ("reactor_turns_total", "counter", "Turns of the reactor loop.", "turns"),
    ("reactor_callbacks_total", "counter", "Callbacks run.", "callbacks"),
    ("reactor_slow_callbacks_total", "counter", "Callbacks over the slow-callback threshold.", "slow_callbacks"),
    ("reactor_timers", "gauge", "Timers scheduled.", "timers"),
)


def metrics_text(snap: dict[str, Any]) -> str:
    """A snapshot (or a merged one) in the Prometheus text exposition format (version 0.0.4).

    Every name starts with ``reactor_``.  Per server (label ``server``, its
    address): the counters (accepted, completed, errors, timeouts, rejected,
    accept pauses, active) and, while request timing is
    on, the histogram ``reactor_request_duration_seconds``.  Per state: the
    gauge ``reactor_connections`` (label ``state``).  The reactor's turns,
    callbacks, slow callbacks and timers.  A merged snapshot adds
    ``reactor_workers`` and, per worker (label ``worker``, its pid),
    ``reactor_worker_connections`` and ``reactor_worker_requests_completed_total``.
    """
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    servers = snap["servers"]
    for name, kind, help_text, key in _SERVER_METRICS:
        family(name, kind, help_text)
        for server in servers:
            lines.append(f'{name}{{server="{_escape(server["address"])}"}} {_number(server.get(key, 0))}')
    timed = [server for server in servers if server.get("duration")]
    if timed:
        name = "reactor_request_duration_seconds"
        family(name, "histogram", "Request durations, from accept to the reply sent.")
        for server in timed:
            label = f'server="{_escape(server["address"])}"'
            hist = server["duration"]
            cumulative = 0
            for bound, count in zip([*hist["bounds"], float("inf")], hist["counts"], strict=True):
                cumulative += count
                lines.append(f'{name}_bucket{{{label},le="{_number(float(bound))}"}} {cumulative}')
            lines.append(f"{name}_sum{{{label}}} {_number(float(hist['sum']))}")
            lines.append(f"{name}_count{{{label}}} {hist['count']}")
    info = snap["reactor"]
    family("reactor_connections", "gauge", "Rows of the connection table, by state.")
    states = {state: 0 for state in (State.OPEN, State.READ_CLOSED, State.WRITE_CLOSED, State.CLOSING)}
    states.update(info.get("states", {}))
    for state, count in states.items():
        lines.append(f'reactor_connections{{state="{_escape(state)}"}} {count}')
    for name, kind, help_text, key in _REACTOR_METRICS:
        if key in info:
            family(name, kind, help_text)
            lines.append(f"{name} {_number(info[key])}")
    if "workers" in info:
        family("reactor_workers", "gauge", "Worker processes that answered.")
        lines.append(f"reactor_workers {info['workers']}")
        family("reactor_worker_connections", "gauge", "Rows of each worker's connection table.")
        for worker in snap["workers"]:
            lines.append(f'reactor_worker_connections{{worker="{worker["pid"]}"}} {worker["connections"]}')
        family("reactor_worker_requests_completed_total", "counter", "Requests finished by each worker.")
        for worker in snap["workers"]:
            lines.append(f'reactor_worker_requests_completed_total{{worker="{worker["pid"]}"}} {worker["completed"]}')
    return "\n".join(lines) + "\n"



_HTTP_MAX_HEAD = 8192
_STATUS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


class _MetricsProtocol:
    """One HTTP/1.x exchange: ``GET /metrics`` and the text; anything else a 4xx; then close."""

    def __init__(self, source: Callable[[], str | Future[str]]) -> None:
        self.source = source
        self.transport: Any = None
        self.head = b""
        self.answered = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            end = self.head.find(b"\n\n")
        if end < 0:
            if len(self.head) > _HTTP_MAX_HEAD:
                self._reply(400, "request head too long\n")
            return
        self._request(self.head[:end])

    def eof_received(self) -> bool:
        if not self.answered:
            self._request(self.head)
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self.answered = True

    def pause_writing(self) -> None:
        """The reply is one write followed by close."""

    def resume_writing(self) -> None:
        """See `pause_writing`."""

    def _request(self, head: bytes) -> None:
        self.answered = True
        parts = head.split(b"\n", 1)[0].strip().split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            self._reply(400, "malformed request line\n")
            return
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            self._reply(405, "only GET\n", extra="Allow: GET, HEAD\r\n")
            return
        if target != b"/metrics":
            self._reply(404, "the metrics are at /metrics\n")
            return
        head_only = method == b"HEAD"
        try:
            body = self.source()
        except Exception as exc:  # a bug of ours must not cost the process its endpoint
            logger.exception("metrics: could not render")
            self._reply(500, f"could not render the metrics: {exc}\n")
            return
        if isinstance(body, Future):
            body.add_done_callback(lambda fut: self._rendered(fut, head_only))
        else:
            self._reply(200, body, head_only=head_only)

    def _rendered(self, fut: Future[str], head_only: bool) -> None:
        if self.transport.is_closing():
            return
        exc = fut.exception()
        if exc is not None:
            self._reply(500, f"could not collect the metrics: {exc}\n")
        else:
            self._reply(200, fut.result(), head_only=head_only)

    def _reply(self, status: int, body: str, *, extra: str = "", head_only: bool = False) -> None:
        self.answered = True
        data = body.encode("utf-8")
        kind = "text/plain; version=0.0.4; charset=utf-8" if status == 200 else "text/plain; charset=utf-8"
        head = (
            f"HTTP/1.1 {status} {_STATUS[status]}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(data)}\r\n{extra}Connection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + (b"" if head_only else data))
        self.transport.close()


class MetricsServer(_ObserverServer):
    """``GET /metrics`` over HTTP on ``address``, in the Prometheus text format (see `metrics_text`).

    Made by `serve_metrics`.  Methods: `close`, `drain`, `stop_accepting`,
    `statistics` (empty); attributes ``address`` (with the real port when 0
    was asked) and ``url``.  A context manager that closes it.
    """

    def __init__(self, reactor: Reactor, address: str, source: Callable[[], str | Future[str]]) -> None:
        parsed = parse_address(address)
        self._listener = Listener(
            reactor,
            parsed,
            _ObserverFactory(lambda: _MetricsProtocol(source)),
            max_connections=64,
            limits=TransportLimits(idle_timeout=IDLE_TIMEOUT, timeout=IDLE_TIMEOUT),
            log=logger,
            name="metrics",
        )
        self.reactor = reactor
        self.address = self._listener.address
        self.url = f"http://{self.address}/metrics"
        logger.info("metrics on %s", self.url)

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url}>"


def serve_metrics(reactor: Reactor, address: str, *, time_requests: bool = True) -> MetricsServer:
    """Serve ``GET /metrics`` for ``reactor`` on ``address`` (``'host:port'``; port 0: the OS chooses).

    With ``time_requests`` (the default) every server of the reactor, now and
    later, keeps the request-duration histogram: one clock read per
    completed request.  Without metrics nothing is timed.
    """
    if time_requests:
        enable_request_timing(reactor)
    return MetricsServer(reactor, address, lambda: metrics_text(snapshot(reactor, connections=False)))
