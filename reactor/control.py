"""Observability: the connection table as plain data, a control socket, and ``/metrics``.

The connection table is the one truth about the connections (docs/design.md),
so it is also what an operator sees.  Built on it here, and in `reactor.metrics`:

- `snapshot`: the table and the counters as a dict that ``json`` can write
  (``{"reactor": ..., "servers": [...], "connections": [...], "workers": [...]}``).
- `ControlServer` (`serve_control`): a Unix socket, created mode 0600, that
  answers ``snapshot`` with that dict as one JSON line.  It only reports:
  any other line gets one ``error: ...`` line back, and nothing a client
  sends reaches anything but this module's small protocol.
  ``python -m reactor top`` reads it.
- ``GET /metrics`` in the Prometheus text exposition format lives in
  `reactor.metrics`, built on the same snapshot.

The control server is a protocol on the transport layer's `Listener`, like
every other server: limits, deadlines and the accept loop are the layer's.

Observing never stalls what it observes.  A snapshot of 10,000 rows takes
longer to format than one turn should last (docs/observability.md has the
figure), so the control socket formats it `SNAPSHOT_CHUNK` rows per turn: the
rows are listed at once (one list copy), then written out chunk by chunk,
with the reactor's other callbacks and I/O in between.  A row that closes in
the meantime is left out.

With worker processes (``serve --workers N --control PATH``) each worker
serves a private control socket in a directory that only the serving user
can read, and a small process asks every worker and merges the answers
(`merge_snapshots`): rows and workers carry their ``pid``, the servers'
counters are summed.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Self

from .addresses import parse_address
from .core import Reactor
from .framing import LineParser, MessageTooLarge
from .futures import Future
from .transport.listener import Listener, listeners_of
from .transport.stream import TransportLimits
from .transport.table import State

__all__ = [
    "snapshot",
    "merge_snapshots",
    "format_peer",
    "ControlServer",
    "serve_control",
    "SNAPSHOT_CHUNK",
    "CONTROL_COMMANDS",
    "MAX_COMMAND",
    "MAX_QUEUED",
    "IDLE_TIMEOUT",
]

logger = logging.getLogger("reactor.control")

#: Rows formatted per reactor turn when the control socket writes a snapshot.
SNAPSHOT_CHUNK = 500
#: What the control socket answers; anything else gets an ``error:`` line.
CONTROL_COMMANDS = ("snapshot", "summary", "help")
#: The longest command line the control socket reads.
MAX_COMMAND = 256
#: Commands one control connection may have waiting for their answers.
MAX_QUEUED = 16
#: Seconds a control or metrics connection may stay idle.
IDLE_TIMEOUT = 30.0

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
        cut = self.pieces is not None  # an answer cut short: end its line, so the error is a line of its own
        self.pieces = None
        ending = b"\r\n" if cut else b""
        self.transport.write(ending + f"error: {reason}\r\n".encode())
        self.transport.close()

    def _command(self, line: bytes) -> None:
        if self.transport.is_closing():
            return
        raw = line.rstrip(b"\r").decode("latin-1").strip()
        text = "".join(c if c.isprintable() and c < "\x7f" else f"\\x{ord(c):02x}" for c in raw)
        if not text:
            return
        if len(self.queue) >= MAX_QUEUED:
            self._refuse(f"more than {MAX_QUEUED} commands waiting; read the answers first")
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


class _ObserverServer:
    """What the control and the metrics servers share: a `Listener` of their own, closed as a server is.

    They only report, so they add nothing to the serving totals.
    """

    _listener: Listener

    def stop_accepting(self) -> None:
        """Accept no new client (the socket stays)."""
        self._listener.stop_accepting()

    def drain(self, grace: float = 0.0) -> Future[None]:
        """Close the socket; a future that completes when the answers in flight are written (within ``grace``)."""
        return self._listener.shutdown(grace)

    def close(self) -> None:
        """Close the socket and every connection of this server (a Unix socket's file too); idempotent."""
        self._listener.close()

    def statistics(self) -> dict[str, int]:
        """Nothing: an observing server adds nothing to the serving totals."""
        return {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ControlServer(_ObserverServer):
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


def serve_control(reactor: Reactor, path: str, *, chunk: int = SNAPSHOT_CHUNK) -> ControlServer:
    """Serve ``reactor``'s `snapshot` on a Unix socket at ``path`` (mode 0600); see `ControlServer`."""
    return ControlServer(reactor, path, chunk=chunk)

