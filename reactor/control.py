"""Observability: the connection table as plain data, a control socket, and ``/metrics``.

The connection table is the one truth about the connections (docs/design.md),
so it is also what an operator sees.  Three things are built on it here:

- `snapshot`: the table and the counters as a dict that ``json`` can write
  (``{"reactor": ..., "servers": [...], "connections": [...], "workers": [...]}``).
- `ControlServer` (`serve_control`): a Unix socket, created mode 0600, that
  answers ``snapshot`` with that dict as one JSON line.  It only reports:
  any other line gets one ``error: ...`` line back, and nothing a client
  sends reaches anything but this module's small protocol.
  ``python -m reactor top`` reads it.
- `MetricsServer` (`serve_metrics`): ``GET /metrics`` in the Prometheus text
  exposition format, served by the reactor itself, and the request-duration
  histogram that it turns on.

Both servers are protocols on the transport layer's `Listener`, like every
other server: limits, deadlines and the accept loop are the layer's.

Observing never stalls what it observes.  A snapshot of 10,000 rows takes
longer to format than one turn should last (docs/observability.md has the
figure), so the control socket formats it `SNAPSHOT_CHUNK` rows per turn: the
rows are listed at once (one list copy), then written out chunk by chunk,
with the reactor's other callbacks and I/O in between.  A row that closes in
the meantime is left out.

With worker processes (``serve --workers N --control PATH``) each worker
serves a private control socket in a directory that only the serving user
can read, and `start_merged_endpoints` runs a small process that asks every
worker and merges the answers (`merge_snapshots`): rows and workers carry
their ``pid``, the servers' counters are summed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .addresses import parse_address
from .core import Reactor
from .framing import LineParser, MessageTooLarge
from .futures import Future
from .transport.listener import Listener, enable_request_timing, listeners_of
from .transport.stream import TransportLimits
from .transport.table import State

__all__ = [
    "snapshot",
    "merge_snapshots",
    "metrics_text",
    "ControlServer",
    "MetricsServer",
    "serve_control",
    "serve_metrics",
    "start_merged_endpoints",
    "MergedEndpoints",
    "WorkerObservers",
    "worker_control_path",
    "SNAPSHOT_CHUNK",
    "CONTROL_COMMANDS",
]

logger = logging.getLogger("reactor.control")

#: Rows formatted per reactor turn when the control socket writes a snapshot.
SNAPSHOT_CHUNK = 500
#: What the control socket answers; anything else gets an ``error:`` line.
CONTROL_COMMANDS = ("snapshot", "summary", "help")
#: The longest command line the control socket reads.
MAX_COMMAND = 256
#: Seconds a control or metrics connection may stay idle.
IDLE_TIMEOUT = 30.0
#: Seconds the merging process waits for a worker's answer.
WORKER_TIMEOUT = 5.0

_CLOSED = State.CLOSED
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


# ------------------------------------------------------------------ the snapshot


def format_peer(peer: Any) -> str | None:
    """A row's peer address as text: ``'127.0.0.1:5000'``, ``'[::1]:5000'``, a Unix path, or None."""
    if peer is None:
        return None
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(peer, str):
        return peer or "unix"
    if isinstance(peer, bytes):
        return repr(peer)
    return str(peer)


def _owner_name(owner: Any) -> str:
    address = getattr(owner, "address", None)
    if isinstance(address, str):
        return address
    return type(owner).__name__


def _observers(reactor: Reactor) -> dict[int, str]:
    """The control and metrics listeners of ``reactor`` (their rows are left out of a snapshot), by id."""
    found = listeners_of(reactor)
    return {id(listener): "" for listener in found if isinstance(listener.protocol_factory, _ObserverFactory)}


def _rows_json(rows: Sequence[Any], now: float, pid: int, owners: dict[int, str]) -> list[dict[str, Any]]:
    """Format rows of the table as plain dicts, skipping closed ones and those of an owner named ``''``."""
    out = []
    for row in rows:
        state = row.state
        if state == _CLOSED:
            continue
        owner = row.owner
        name = owners.get(id(owner))
        if name is None:
            name = owners[id(owner)] = _owner_name(owner)
        if not name:
            continue  # the observers' own connections
        deadline = row.deadline
        out.append(
            {
                "fd": row.fd,
                "state": str(state),
                "peer": format_peer(row.peer),
                "age": round(now - row.started, 6),
                "bytes_in": row.bytes_in,
                "bytes_out": row.bytes_out,
                "pending_out": row.get_write_buffer_size(),
                "deadline": None if deadline is None else round(deadline - now, 6),
                "owner": name,
                "pid": pid,
            }
        )
    return out


def _header(reactor: Reactor, pid: int) -> dict[str, Any]:
    """The ``reactor`` and ``servers`` parts of a snapshot (no rows)."""
    stats = reactor.statistics()
    states: dict[str, int] = {}
    info: dict[str, Any] = {"pid": pid, "time": time.time(), "clock": reactor.time()}
    for key, value in stats.items():
        if key.startswith("connections_"):
            continue
        info[key] = value
    observers = _observers(reactor)
    for row in list(reactor.connections.values()):
        if id(row.owner) not in observers:
            state = str(row.state)
            states[state] = states.get(state, 0) + 1
    info["states"] = states
    servers = []
    for listener in listeners_of(reactor):
        if isinstance(listener.protocol_factory, _ObserverFactory):
            continue  # the control and metrics servers themselves
        entry: dict[str, Any] = {"name": listener.name, "address": listener.address, "pid": pid}
        entry.update(listener.statistics())
        entry["serving"] = listener.is_serving()
        durations = listener.stats.durations
        entry["duration"] = durations.as_dict() if durations is not None else None
        servers.append(entry)
    return {"reactor": info, "servers": servers}


def _worker_entry(head: dict[str, Any], connections: int) -> dict[str, Any]:
    """One process's line of ``workers``: its pid and its totals."""
    info = head["reactor"]
    entry: dict[str, Any] = {"pid": info["pid"], "connections": connections, "turns": info.get("turns", 0)}
    for key in ("accepted", "completed", "errors", "timeouts", "rejected", "active"):
        entry[key] = sum(int(server.get(key, 0)) for server in head["servers"])
    return entry


def snapshot(reactor: Reactor, *, connections: bool = True) -> dict[str, Any]:
    """The connection table and the counters of ``reactor``, as plain data (one process).

    ``{"reactor": {...}, "servers": [...], "connections": [...], "workers": [...]}``:
    ``reactor`` has the process's ``pid``, the wall-clock ``time``, the
    reactor's `Reactor.statistics` and ``states`` (rows per state);
    ``servers`` one entry per listening server (``name``, ``address``, its
    counters, ``serving`` and the ``duration`` histogram or None);
    ``connections`` one entry per row of the table (``fd``, ``state``,
    ``peer``, ``age`` and ``deadline`` in seconds from now, ``bytes_in``,
    ``bytes_out``, ``pending_out``, ``owner`` and ``pid``); ``workers`` one
    entry per process (here: this one).  ``connections=False`` leaves the
    rows out (``summary``).  Call it from the reactor's thread.
    """
    pid = os.getpid()
    head = _header(reactor, pid)
    rows: list[dict[str, Any]] = []
    if connections:
        rows = _rows_json(list(reactor.connections.values()), reactor.time(), pid, _observers(reactor))
    count = len(rows) if connections else sum(head["reactor"]["states"].values())
    return {**head, "connections": rows, "workers": [_worker_entry(head, count)]}


def _snapshot_chunks(reactor: Reactor, connections: bool, chunk: int) -> Iterator[bytes]:
    """The snapshot as JSON text in pieces, `SNAPSHOT_CHUNK` rows each; the last ends the line."""
    pid = os.getpid()
    head = _header(reactor, pid)
    rows = list(reactor.connections.values()) if connections else []
    now = reactor.time()
    encode = _JSON.encode
    text = encode(head)
    yield (text[:-1] + ',"connections":[').encode()
    owners = _observers(reactor)
    written = 0
    for start in range(0, len(rows), chunk):
        formatted = _rows_json(rows[start : start + chunk], now, pid, owners)
        if formatted:
            piece = encode(formatted)[1:-1]  # the rows of a list, without its brackets
            yield ((b"," if written else b"") + piece.encode())
            written += len(formatted)
    count = written if connections else sum(head["reactor"]["states"].values())
    yield ('],"workers":' + encode([_worker_entry(head, count)]) + "}\r\n").encode()


# ------------------------------------------------------------------ merging workers


def merge_snapshots(snapshots: Sequence[dict[str, Any]], pid: int | None = None) -> dict[str, Any]:
    """One snapshot of several processes (workers): rows joined, counters summed.

    ``reactor`` sums the numeric statistics (``slowest_callback`` is the
    largest) and ``states``, and has ``pid`` (``pid``, default this process:
    the supervisor's side) and ``workers`` (how many answered); ``servers``
    sums each address's counters and histogram over the workers and lists
    their ``pids``; ``connections`` and ``workers`` are every process's, each
    with its ``pid``.
    """
    reactor: dict[str, Any] = {"pid": os.getpid() if pid is None else pid, "time": time.time(), "states": {}}
    servers: dict[str, dict[str, Any]] = {}
    connections: list[dict[str, Any]] = []
    workers: list[dict[str, Any]] = []
    for snap in snapshots:
        for key, value in snap["reactor"].items():
            if key in ("pid", "time", "clock"):
                continue
            if key == "states":
                for state, count in value.items():
                    reactor["states"][state] = reactor["states"].get(state, 0) + count
            elif key == "slowest_callback":
                reactor[key] = max(reactor.get(key, 0.0), value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                reactor[key] = reactor.get(key, 0) + value
        for server in snap["servers"]:
            merged = servers.get(server["address"])
            if merged is None:
                merged = servers[server["address"]] = {
                    "name": server["name"],
                    "address": server["address"],
                    "pid": None,
                    "pids": [],
                    "serving": False,
                    "duration": None,
                }
            merged["pids"].append(server["pid"])
            merged["serving"] = merged["serving"] or bool(server.get("serving"))
            for key, value in server.items():
                if key in ("name", "address", "pid", "serving", "duration"):
                    continue
                if isinstance(value, int) and not isinstance(value, bool):
                    merged[key] = merged.get(key, 0) + value
            merged["duration"] = _merge_durations(merged["duration"], server.get("duration"))
        connections.extend(snap["connections"])
        workers.extend(snap["workers"])
    reactor["workers"] = len(snapshots)
    return {"reactor": reactor, "servers": list(servers.values()), "connections": connections, "workers": workers}


def _merge_durations(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    if a is None or b is None:
        return b if a is None else a
    if a["bounds"] != b["bounds"]:
        raise ValueError("cannot merge request-duration histograms with different buckets")
    return {
        "bounds": list(a["bounds"]),
        "counts": [x + y for x, y in zip(a["counts"], b["counts"], strict=True)],
        "sum": a["sum"] + b["sum"],
        "count": a["count"] + b["count"],
    }


# ------------------------------------------------------------------ the metrics text


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
    address): the counters in `_SERVER_METRICS` and, while request timing is
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


# ------------------------------------------------------------------ the servers

#: What a control answer is: JSON text in pieces (written one per turn), or a future of all of it.
Answer = Iterable[bytes] | Future[bytes]


class _ObserverFactory:
    """The protocol factory of a control or metrics server (and how `snapshot` leaves them out)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def __call__(self) -> Any:
        return self.make()


class _ControlProtocol:
    """One control connection: a command per line, one answer line per command."""

    def __init__(self, answer: Callable[[str], Answer]) -> None:
        self.answer = answer
        self.transport: Any = None
        self.parser = LineParser(MAX_COMMAND, b"\n")
        self.queue: deque[str] = deque()
        self.pieces: Iterator[bytes] | None = None
        self.busy = False
        self.eof = False
        self.paused = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            lines = self.parser.feed(data)
        except MessageTooLarge:
            self._refuse(f"a command is at most {MAX_COMMAND} bytes")
            return
        for line in lines:
            self._command(line)

    def eof_received(self) -> bool:
        try:
            last = self.parser.feed_eof()
        except MessageTooLarge:
            self._refuse(f"a command is at most {MAX_COMMAND} bytes")
            return True
        if last:
            self._command(last)
        self.eof = True
        self._next()
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self.pieces = None
        self.queue.clear()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.pieces is not None:
            self.transport.reactor.call_soon(self._write_piece)

    def _refuse(self, reason: str) -> None:
        self.queue.clear()
        self.transport.write(f"error: {reason}\r\n".encode())
        self.transport.close()

    def _command(self, line: bytes) -> None:
        if self.transport.is_closing():
            return
        raw = line.rstrip(b"\r").decode("latin-1").strip()
        text = "".join(c if c.isprintable() and c < "\x7f" else f"\\x{ord(c):02x}" for c in raw)
        if not text:
            return
        self.queue.append(text)
        self._next()

    def _next(self) -> None:
        transport = self.transport
        while not self.busy and self.queue and not transport.is_closing():
            command = self.queue.popleft()
            try:
                answer = self.answer(command)
            except ValueError as exc:
                transport.write(f"error: {exc}\r\n".encode())
                continue
            self.busy = True
            if isinstance(answer, Future):
                answer.add_done_callback(self._future_done)
            else:
                self.pieces = iter(answer)
                self._write_piece()
        if not self.busy and not self.queue and self.eof and not transport.is_closing():
            transport.close()

    def _future_done(self, fut: Future[bytes]) -> None:
        if self.transport.is_closing():
            return
        exc = fut.exception()
        if exc is not None:
            logger.warning("control: could not answer: %s", exc)
            self.transport.write(f"error: could not answer: {exc}\r\n".encode())
        else:
            self.transport.write(fut.result())
        self.busy = False
        self._next()

    def _write_piece(self) -> None:
        """Write the next piece of an answer; the rest in later turns (a big table never stalls the loop)."""
        pieces = self.pieces
        if pieces is None or self.paused or self.transport.is_closing():
            return
        piece = next(pieces, None)
        if piece is None:
            self.pieces = None
            self.busy = False
            self._next()
            return
        self.transport.write(piece)
        self.transport.reactor.call_soon(self._write_piece)


def _local_answer(reactor: Reactor, chunk: int) -> Callable[[str], Answer]:
    def answer(command: str) -> Answer:
        if command == "snapshot":
            return _snapshot_chunks(reactor, True, chunk)
        if command == "summary":
            return _snapshot_chunks(reactor, False, chunk)
        if command == "help":
            return [f"commands: {', '.join(CONTROL_COMMANDS)}\r\n".encode()]
        known = ", ".join(CONTROL_COMMANDS)
        raise ValueError(f"unknown command '{command[:40]}'; this socket only reports: {known}")

    return answer


class ControlServer:
    """A Unix socket (mode 0600) that reports a reactor's `snapshot`, one JSON line per command.

    The commands are lines: ``snapshot`` (the whole table), ``summary``
    (without the rows) and ``help``.  Anything else is answered with one
    ``error: ...`` line and changes nothing.  An answer ends with ``\\r\\n``,
    so ``python -m reactor request unix:PATH snapshot`` prints it too.

    Methods: `close`, `drain`, `stop_accepting`, `statistics` (empty: a
    control server has nothing to add to the serving totals); attributes
    ``path`` and ``address``.  A context manager that closes it.
    """

    def __init__(
        self,
        reactor: Reactor,
        path: str,
        *,
        answer: Callable[[str], Answer] | None = None,
        chunk: int = SNAPSHOT_CHUNK,
    ) -> None:
        if chunk <= 0:
            raise ValueError(f"chunk must be positive, got {chunk!r}")
        if path.startswith("unix:"):
            path = path[len("unix:") :]
        if not path:
            raise ValueError("the control socket needs a path")
        address = parse_address("unix:" + path)
        source = answer if answer is not None else _local_answer(reactor, chunk)
        # The socket file's mode comes from the umask at bind(): no moment with a wider one.
        previous = os.umask(0o177)
        try:
            self._listener = Listener(
                reactor,
                address,
                _ObserverFactory(lambda: _ControlProtocol(source)),
                max_connections=16,
                limits=TransportLimits(idle_timeout=IDLE_TIMEOUT),
                log=logger,
                name="control",
            )
        finally:
            os.umask(previous)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        self.reactor = reactor
        self.path = path
        self.address = self._listener.address
        logger.info("control socket on %s", path)

    def __repr__(self) -> str:
        return f"<ControlServer {self.path}>"

    def stop_accepting(self) -> None:
        """Accept no new client (the socket stays)."""
        self._listener.stop_accepting()

    def drain(self, grace: float = 0.0) -> Future[None]:
        """Close the socket; a future that completes when the answers in flight are written (within ``grace``)."""
        return self._listener.shutdown(grace)

    def close(self) -> None:
        """Close the socket and every control connection, and remove the socket file; idempotent."""
        self._listener.close()

    def statistics(self) -> dict[str, int]:
        """Nothing: a control server adds nothing to the serving totals."""
        return {}

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_control(reactor: Reactor, path: str, *, chunk: int = SNAPSHOT_CHUNK) -> ControlServer:
    """Serve ``reactor``'s `snapshot` on a Unix socket at ``path`` (mode 0600); see `ControlServer`."""
    return ControlServer(reactor, path, chunk=chunk)


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


class MetricsServer:
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

    def stop_accepting(self) -> None:
        """Accept no new client (the socket stays)."""
        self._listener.stop_accepting()

    def drain(self, grace: float = 0.0) -> Future[None]:
        """Close the socket; a future that completes when the replies in flight are written (within ``grace``)."""
        return self._listener.shutdown(grace)

    def close(self) -> None:
        """Close the socket and every metrics connection; idempotent."""
        self._listener.close()

    def statistics(self) -> dict[str, int]:
        """Nothing: a metrics server adds nothing to the serving totals."""
        return {}

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_metrics(reactor: Reactor, address: str, *, time_requests: bool = True) -> MetricsServer:
    """Serve ``GET /metrics`` for ``reactor`` on ``address`` (``'host:port'``; port 0: the OS chooses).

    With ``time_requests`` (the default) every server of the reactor, now and
    later, keeps the request-duration histogram: one clock read per
    completed request.  Without metrics nothing is timed.
    """
    if time_requests:
        enable_request_timing(reactor)
    return MetricsServer(reactor, address, lambda: metrics_text(snapshot(reactor, connections=False)))


# ------------------------------------------------------------------ several processes


class _WorkerCollector:
    """Asks every worker's private control socket in a directory, and merges the answers."""

    def __init__(self, reactor: Reactor, directory: str, timeout: float = WORKER_TIMEOUT) -> None:
        self.reactor = reactor
        self.directory = directory
        self.timeout = timeout

    def sockets(self) -> list[str]:
        """The workers' control sockets, by pid."""
        names = [name for name in os.listdir(self.directory) if name.endswith(".sock")]
        return [os.path.join(self.directory, name) for name in sorted(names)]

    def ask(self, command: str) -> Future[dict[str, Any]]:
        """A future of the merged answer of every worker to ``command``."""
        result: Future[dict[str, Any]] = self.reactor.create_future()
        paths = self.sockets()
        answers: list[dict[str, Any]] = []
        remaining = len(paths)
        if not paths:
            result.set_result(merge_snapshots([]))
            return result

        def one_done(path: str, fut: Future[str]) -> None:
            nonlocal remaining
            remaining -= 1
            exc = fut.exception()
            if isinstance(exc, ConnectionRefusedError | FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):  # a worker that died without removing it
                    os.unlink(path)
            elif exc is not None:
                logger.warning("control: worker socket %s did not answer: %s", path, exc)
            else:
                try:
                    answers.append(json.loads(fut.result()))
                except ValueError:
                    logger.warning("control: worker socket %s answered %r", path, fut.result()[:80])
            if remaining == 0 and not result.done():
                answers.sort(key=lambda snap: snap["reactor"]["pid"])
                result.set_result(merge_snapshots(answers))

        for path in paths:
            fut = self.reactor.request("unix:" + path, command, timeout=self.timeout)
            fut.add_done_callback(functools.partial(one_done, path))
        return result

    def answer(self, command: str) -> Answer:
        if command not in ("snapshot", "summary"):
            return _local_answer(self.reactor, SNAPSHOT_CHUNK)(command)
        merged: Future[bytes] = self.reactor.create_future()

        def done(fut: Future[dict[str, Any]]) -> None:
            if fut.exception() is not None:
                merged.set_exception(fut.exception())  # type: ignore[arg-type]
            else:
                merged.set_result((_JSON.encode(fut.result()) + "\r\n").encode())

        self.ask(command).add_done_callback(done)
        return merged

    def metrics(self) -> Future[str]:
        text: Future[str] = self.reactor.create_future()

        def done(fut: Future[dict[str, Any]]) -> None:
            if fut.exception() is not None:
                text.set_exception(fut.exception())  # type: ignore[arg-type]
            else:
                text.set_result(metrics_text(fut.result()))

        self.ask("summary").add_done_callback(done)
        return text


class MergedEndpoints:
    """The process that answers the control socket and ``/metrics`` for every worker.

    Made by `start_merged_endpoints`; ``control`` and ``metrics_url`` say
    where it listens; `close` stops it.
    """

    def __init__(self, pid: int, pipe: int, control: str | None, metrics_url: str | None) -> None:
        self.pid = pid
        self._pipe = pipe
        self.control = control
        self.metrics_url = metrics_url

    def close(self, timeout: float = 5.0) -> None:
        """Stop the process and wait for it (killed after ``timeout`` seconds); idempotent."""
        if self._pipe < 0:
            return
        os.close(self._pipe)
        self._pipe = -1
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while True:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return
            if time.monotonic() >= deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                return
            time.sleep(0.01)


def worker_control_path(directory: str, pid: int | None = None) -> str:
    """Where the worker ``pid`` (default: this process) serves its private control socket."""
    return os.path.join(directory, f"{os.getpid() if pid is None else pid}.sock")


def start_merged_endpoints(directory: str, control: str | None, metrics: str | None) -> MergedEndpoints:
    """Fork a process that serves ``control`` and ``metrics`` for the workers' sockets in ``directory``.

    It answers every command by asking each ``*.sock`` of ``directory`` (see
    `worker_control_path`) and merging the answers.  Returns once it listens;
    raises `OSError` (or `ValueError` for a malformed address) if it cannot.
    Call it before starting threads; the process ignores SIGINT and SIGHUP
    (the supervisor decides) and ends on `MergedEndpoints.close`, SIGTERM, or
    when every copy of its pipe is closed.
    """
    if metrics is not None:
        parse_address(metrics)  # a malformed address is the caller's error, raised here
    status_r, status_w = os.pipe()
    life_r, life_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(status_r)
            os.close(life_w)
            code = _merged_main(directory, control, metrics, status_w, life_r)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(status_w)
    os.close(life_r)
    with os.fdopen(status_r, "rb") as status:
        line = status.readline().decode("utf-8", "replace").strip()
    if not line.startswith("ready "):
        os.close(life_w)
        os.waitpid(pid, 0)
        raise OSError(line.partition(" ")[2] or "the control process exited")
    where = json.loads(line[len("ready ") :])
    return MergedEndpoints(pid, life_w, where["control"], where["metrics"])


def _merged_main(directory: str, control: str | None, metrics: str | None, status_w: int, life_r: int) -> int:
    """The body of the merging process; its exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with Reactor() as reactor:
        collector = _WorkerCollector(reactor, directory)
        servers: list[ControlServer | MetricsServer] = []
        try:
            try:
                if control is not None:
                    servers.append(ControlServer(reactor, control, answer=collector.answer))
                if metrics is not None:
                    servers.append(MetricsServer(reactor, metrics, collector.metrics))
            except (OSError, ValueError) as exc:
                os.write(status_w, f"error {exc}\n".encode())
                return 1
            where = {
                "control": servers[0].path if control is not None else None,  # type: ignore[union-attr]
                "metrics": servers[-1].url if metrics is not None else None,  # type: ignore[union-attr]
            }
            os.write(status_w, f"ready {json.dumps(where)}\n".encode())
            os.close(status_w)
            signal.signal(signal.SIGTERM, lambda signum, frame: reactor.call_soon_threadsafe(reactor.stop))

            def on_life() -> None:
                try:
                    data = os.read(life_r, 64)
                except BlockingIOError:
                    return
                if not data:
                    reactor.stop()

            os.set_blocking(life_r, False)
            reactor.add_reader(life_r, on_life)
            reactor.run()
            reactor.remove_reader(life_r)
        finally:
            for server in servers:
                server.close()
    return 0


class WorkerObservers:
    """``--control`` and ``--metrics`` for worker processes: one merged view of them all.

    Makes a private directory (mode 0700) for the workers' control sockets
    and starts the merging process (`start_merged_endpoints`); each worker
    calls `serve_worker` with its reactor (in ``run_workers``'s ``build``).
    `close` stops the process and removes the directory.  Create it before
    the workers start (it forks).
    """

    def __init__(self, control: str | None, metrics: str | None) -> None:
        self.directory = tempfile.mkdtemp(prefix="reactor-control-")
        self.time_requests = metrics is not None
        try:
            self._endpoints = start_merged_endpoints(self.directory, control, metrics)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.control = self._endpoints.control
        self.metrics_url = self._endpoints.metrics_url

    def serve_worker(self, reactor: Reactor) -> ControlServer:
        """In a worker: serve its private control socket (and time its requests if metrics are on)."""
        if self.time_requests:
            enable_request_timing(reactor)
        return ControlServer(reactor, worker_control_path(self.directory))

    def close(self) -> None:
        """Stop the merging process and remove the directory; idempotent."""
        self._endpoints.close()
        shutil.rmtree(self.directory, ignore_errors=True)
