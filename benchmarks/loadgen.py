"""A pure-Python load generator for the one-shot request/reply protocol.

It speaks the options and prints the result line of the C generator in
``shared/tools`` (``reqrep-load``), so the benchmark runner can use either:

- ``oneshot``: ``--concurrency`` slots, each doing connect, send
  ``<payload>\\r\\n``, ``shutdown(SHUT_WR)``, read until ``\\r\\n`` or EOF,
  close, and again, for ``--duration`` seconds (or ``--requests``).
- ``persistent``: ``--concurrency`` long-lived connections (``TCP_NODELAY``),
  each sending ``<payload>\\r\\n``, waiting for the reply line, and again.
  A connection that fails or that the server closes is counted and reopened
  after 1 ms.
- ``--tls-ca CA.pem``: the one-shot and persistent modes over TLS, trusting
  that CA (``tls_context`` of `run_oneshot` and `run_persistent`): every one-shot request
  is a full handshake and sends its line without half-closing; each
  persistent connection handshakes once.
- ``idle``: open ``--connections`` connections (at most ``--concurrency``
  connects in flight), print ``idle-ready ...``, hold them ``--hold`` seconds
  or until SIGTERM, close them.
- ``soak``: a steady, bounded load for leak checks (`run_soak`): one-shot
  requests to ``--port`` started at ``--rate`` per second, and
  ``--concurrency`` persistent connections to ``--lines-port``, each sending
  a line every ``--line-interval`` seconds after its last reply; a
  ``soak-progress`` line with the counts so far every
  ``--progress-interval`` seconds.

One process drives ``select.epoll`` directly (no selector object, no
per-socket registration dance: a socket is registered once, for reading,
after its request is sent; closing it removes it from the epoll set).
``--processes P`` runs P such processes and adds their results up, for
machines with spare cores.  The result line ends with ``gen_cpu``, the
generator's own CPU time over wall time (in cores): near 1.0 per process
means the generator, not the server, set the pace.

Ephemeral ports: the client closes last, so its side keeps the TIME_WAIT
sockets.  With one source address, ``connect()`` searches a port range full
of them and slows down, then fails with ``EADDRNOTAVAIL``.  ``--src-ips K``
binds sources 127.0.0.F .. 127.0.0.F+K-1 with ``IP_BIND_ADDRESS_NO_PORT``
(the port is chosen at ``connect()``, per destination, so the 4-tuple space
is used fully).  Every failure is counted by kind (``err_refused``,
``err_reset``, ``err_timeout``, ``err_addrnotavail``, ``err_eof``,
``err_overflow``, ``err_other``), never hidden and never fatal.

Result line (stdout)::

    reqrep-load: mode=oneshot conc=16 ok=... errors=... mismatches=... secs=...
    rps=... p50_us=... p90_us=... p99_us=... p999_us=... max_us=... mean_us=...
    err_refused=... ... over_1s=... gen_cpu=... procs=1
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, cast

from . import child_environment

__all__ = [
    "ERROR_KINDS",
    "aggregate",
    "format_line",
    "parse_line",
    "percentile",
    "run_idle",
    "run_oneshot",
    "run_persistent",
    "run_oneshot_tls",
    "run_persistent_tls",
    "client_context",
    "run_soak",
    "soak_fields",
    "main",
]

#: Failure kinds, in the order of the C generator's output.
ERROR_KINDS = ("refused", "reset", "timeout", "addrnotavail", "eof", "overflow", "other")

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EINPROGRESS = errno.EINPROGRESS
_STREAM_NONBLOCK = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
_MAX_REPLY = 1 << 16

_ERRNO_KIND = {
    errno.ECONNREFUSED: "refused",
    errno.ECONNRESET: "reset",
    errno.EPIPE: "reset",
    errno.ETIMEDOUT: "timeout",
    errno.EADDRNOTAVAIL: "addrnotavail",
    errno.EADDRINUSE: "addrnotavail",
}


def raise_nofile_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (at most the hard limit); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sources(src_ips: int, src_first: int) -> list[str | None]:
    """The source addresses to bind in turn; ``[None]``: leave the choice to the kernel."""
    if src_ips <= 1 and src_first == 1:
        return [None]
    return [f"127.0.0.{src_first + i}" for i in range(src_ips)]


def _error_kind(exc: OSError) -> str:
    if isinstance(exc, ConnectionResetError):
        return "reset"
    return _ERRNO_KIND.get(exc.errno or 0, "other")


def _connect(dst: tuple[str, int], source: str | None) -> socket.socket:
    """A non-blocking TCP socket whose connect to ``dst`` (from ``source``) is under way."""
    sock = socket.socket(socket.AF_INET, _STREAM_NONBLOCK)
    try:
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        err = sock.connect_ex(dst)
        if err and err != _EINPROGRESS:
            raise OSError(err, os.strerror(err))
    except OSError:
        sock.close()
        raise
    return sock


class _Stop:
    """Set by SIGTERM/SIGINT so a run ends cleanly and still prints its line."""

    flag = False

    @classmethod
    def install(cls) -> None:
        def handler(signum: int, frame: object) -> None:
            cls.flag = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


# ---------------------------------------------------------------------- TLS
#
# The one-shot and persistent workloads run over TLS when given a client
# context (``--tls-ca``).  Each socket is wrapped with
# ``SSLContext.wrap_socket(do_handshake_on_connect=False)`` once its
# non-blocking connect has completed (wrapping keeps the descriptor, so its
# epoll registration stays), and the handshake is driven from the same epoll
# loop, as one more state of a connection (reply buffer still ``None``):
# ``SSLWantReadError`` waits for EPOLLIN, ``SSLWantWriteError`` for EPOLLOUT.
# No session is resumed: every connection is a full handshake.  A one-shot
# request does not half-close over TLS (a TLS half-close is close_notify,
# which a strict TLS 1.2 peer may answer by closing): it sends the line,
# reads the reply to CRLF and closes.  TLS failures count as ``other``.
# The plain path pays only a branch on the per-run ``tls`` flag, and only
# while a connection is being set up.


def client_context(cafile: str) -> ssl.SSLContext:
    """The generator's client context: stdlib defaults, trusting ``cafile`` (host name checked)."""
    return ssl.create_default_context(cafile=cafile)


def _tls_error_kind(exc: OSError) -> str:
    return "other" if isinstance(exc, ssl.SSLError) else _error_kind(exc)


def _handshake(entry: list[Any], fd: int, ep: Any, context: ssl.SSLContext, host: str) -> bool | None:
    """Wrap (once the connect completed) and advance the handshake of ``entry``.

    ``entry[0]`` is the socket and ``entry[-1]`` the events it waits for.
    True: the handshake is done; False: it waits (the epoll mask is set);
    raises OSError (`ssl.SSLError` included) when it failed.
    """
    sock = entry[0]
    if not isinstance(sock, ssl.SSLSocket):
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        sock = entry[0] = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        if entry[-1] != _EPOLLIN:
            entry[-1] = _EPOLLIN
            ep.modify(fd, _EPOLLIN)
        return False
    except ssl.SSLWantWriteError:
        if entry[-1] != _EPOLLOUT:
            entry[-1] = _EPOLLOUT
            ep.modify(fd, _EPOLLOUT)
        return False
    if entry[-1] != _EPOLLIN:
        entry[-1] = _EPOLLIN
        ep.modify(fd, _EPOLLIN)
    return True


# ------------------------------------------------------------------ oneshot


def _result(
    mode: str,
    concurrency: int,
    ok: int,
    mismatches: int,
    errors: dict[str, int],
    latencies: list[int],
    cpu0: float,
    t0: int,
    t_measure: int,
    t_end: int,
) -> dict[str, Any]:
    """One generator process's result, as `aggregate` and `format_line` expect it."""
    return {
        "mode": mode,
        "conc": concurrency,
        "ok": ok,
        "mismatches": mismatches,
        "secs": max(0.0, (t_end - t_measure) / 1e9),
        "cpu": _cpu_seconds() - cpu0,
        "wall": (t_end - t0) / 1e9,
        "errors": {kind: errors.get(kind, 0) for kind in ERROR_KINDS},
        "histogram": dict(Counter(latencies)),
        "procs": 1,
    }


def run_oneshot(
    port: int,
    *,
    host: str = "127.0.0.1",
    concurrency: int = 16,
    duration: float = 5.0,
    requests: int = 0,
    payload_bytes: int = 16,
    check: bool = False,
    timeout: float = 5.0,
    src_ips: int = 1,
    src_first: int = 1,
    warmup: float = 0.0,
    tls_context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """Run the one-shot workload in this process; return the raw result (histogram included).

    With ``tls_context``, over TLS: connect, full handshake, send the line
    (no half-close), read the reply to CRLF, close.
    """
    raise_nofile_limit(concurrency + 64)
    sources = _sources(src_ips, src_first)
    dst = (host, port)
    ep = select.epoll()
    errors: Counter[str] = Counter()
    latencies: list[int] = []  # µs, of the requests completed after the warm-up
    ok = mismatches = issued = seq = 0
    # fd -> [sock, t_start_ns, request, reply buffer (None while connecting or handshaking), slot
    #        (, epoll mask: TLS only)]
    inflight: dict[int, list[Any]] = {}
    retry: list[tuple[int, int]] = []  # (not before ns, slot)
    pad = b"x" * payload_bytes
    perf = time.perf_counter_ns
    shut_wr = socket.SHUT_WR
    register = ep.register
    tls = tls_context is not None
    context = cast(ssl.SSLContext, tls_context)  # used only when tls
    error_kind = _tls_error_kind if tls else _error_kind
    t0 = perf()
    cpu0 = _cpu_seconds()
    t_measure = t0 + int(warmup * 1e9)
    t_deadline = t_measure + int(duration * 1e9)
    timeout_ns = int(timeout * 1e9)

    def fail(fd: int | None, slot: int, exc_or_kind: OSError | str, now: int) -> None:
        if fd is not None:
            inflight.pop(fd)[0].close()  # closing removes it from the epoll set
        what = exc_or_kind if isinstance(exc_or_kind, str) else error_kind(exc_or_kind)
        errors[what] += 1
        # EADDRNOTAVAIL: let TIME_WAIT drain a little before this slot retries.
        retry.append((now + (5_000_000 if what == "addrnotavail" else 0), slot))

    def start(slot: int) -> None:
        nonlocal issued, seq
        if requests and issued >= requests:
            return
        issued += 1
        seq += 1
        head = b"%x.%x." % (slot, seq)
        request = (head + pad)[: max(payload_bytes, len(head))] + b"\r\n"
        t_start = perf()
        try:
            sock = _connect(dst, sources[seq % len(sources)])
        except OSError as exc:
            fail(None, slot, exc, t_start)
            return
        fd = sock.fileno()
        if tls:  # the handshake waits for the connect
            inflight[fd] = [sock, t_start, request, None, slot, _EPOLLOUT]
            register(fd, _EPOLLOUT)
            return
        try:
            try:
                sock.send(request)
            except BlockingIOError:
                # Not connected yet: wait for writability, send then.
                inflight[fd] = [sock, t_start, request, None, slot]
                register(fd, _EPOLLOUT)
                return
            sock.shutdown(shut_wr)
            inflight[fd] = [sock, t_start, request, b"", slot]
            register(fd, _EPOLLIN)
        except OSError as exc:
            sock.close()
            fail(None, slot, exc, t_start)

    for slot in range(concurrency):
        start(slot)
    next_scan = perf() + 50_000_000
    poll = ep.poll
    while True:
        now = perf()
        if now >= t_deadline or _Stop.flag or not inflight and not retry:
            break
        for fd, _events in poll(0.01 if retry else 0.05):
            entry = inflight.get(fd)
            if entry is None:
                continue
            if entry[3] is None:  # connecting or handshaking: the request is still to send
                try:
                    if tls and not _handshake(entry, fd, ep, context, host):
                        continue
                    entry[0].send(entry[2])
                    if not tls:
                        entry[0].shutdown(shut_wr)
                except OSError as exc:
                    fail(fd, entry[4], exc, perf())
                    continue
                entry[3] = b""
                if not tls:  # (the handshake left the mask at EPOLLIN)
                    ep.modify(fd, _EPOLLIN)
                continue
            sock = entry[0]
            try:
                data = sock.recv(_MAX_REPLY)
            except BlockingIOError:
                continue
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue  # TLS: only records for the engine (session tickets) so far
            except ssl.SSLZeroReturnError:
                data = b""
            except OSError as exc:
                fail(fd, entry[4], exc, perf())
                continue
            buffer = entry[3] + data if entry[3] else data
            if data and not buffer.endswith(b"\r\n"):
                if len(buffer) > _MAX_REPLY:
                    fail(fd, entry[4], "overflow", perf())
                else:
                    entry[3] = buffer
                continue
            del inflight[fd]
            sock.close()
            end = perf()
            if not buffer.endswith(b"\r\n"):
                errors["eof"] += 1
            else:
                if check and buffer != b"Requested: " + entry[2]:
                    mismatches += 1
                if end >= t_measure:
                    ok += 1
                    latencies.append((end - entry[1]) // 1000)
            if end < t_deadline:
                start(entry[4])
        if retry:
            now = perf()
            due = [slot for when, slot in retry if when <= now]
            if due:
                retry[:] = [(when, slot) for when, slot in retry if when > now]
                for slot in due:
                    start(slot)
        if now >= next_scan:
            next_scan = now + 50_000_000
            for fd, entry in list(inflight.items()):
                if now - entry[1] > timeout_ns:
                    fail(fd, entry[4], "timeout", now)
    t_end = perf()
    for entry in inflight.values():
        entry[0].close()
    ep.close()
    return _result("oneshot", concurrency, ok, mismatches, errors, latencies, cpu0, t0, t_measure, t_end)


# --------------------------------------------------------------- persistent


def run_persistent(
    port: int,
    *,
    host: str = "127.0.0.1",
    concurrency: int = 64,
    duration: float = 5.0,
    requests: int = 0,
    payload_bytes: int = 16,
    check: bool = False,
    timeout: float = 5.0,
    src_ips: int = 1,
    src_first: int = 1,
    warmup: float = 0.0,
    tls_context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """Run the persistent workload in this process; return the raw result (histogram included).

    Each slot's connection carries one request at a time.  The request is
    fixed per slot (``<slot>.`` padded to ``payload_bytes``), so the
    expected reply is built once, not per request.  With ``tls_context``,
    over TLS: one handshake per connection, then lines and replies.
    """
    raise_nofile_limit(concurrency + 64)
    sources = _sources(src_ips, src_first)
    dst = (host, port)
    ep = select.epoll()
    errors: Counter[str] = Counter()
    latencies: list[int] = []  # µs, of the requests completed after the warm-up
    ok = mismatches = issued = opened = 0
    # fd -> [sock, t_start_ns, slot, reply buffer (None while connecting or handshaking), epoll mask]
    conns: dict[int, list[Any]] = {}
    retry: list[tuple[int, int]] = []  # (not before ns, slot)
    pad = b"x" * payload_bytes
    wanted = [(b"%x." % slot + pad)[: max(payload_bytes, len(b"%x." % slot))] + b"\r\n"
              for slot in range(concurrency)]
    expected = [b"Requested: " + request for request in wanted]
    perf = time.perf_counter_ns
    tls = tls_context is not None
    context = cast(ssl.SSLContext, tls_context)  # used only when tls
    error_kind = _tls_error_kind if tls else _error_kind
    t0 = perf()
    cpu0 = _cpu_seconds()
    t_measure = t0 + int(warmup * 1e9)
    t_deadline = t_measure + int(duration * 1e9)
    timeout_ns = int(timeout * 1e9)

    def fail(fd: int | None, slot: int, exc_or_kind: OSError | str, now: int) -> None:
        if fd is not None:
            conns.pop(fd)[0].close()  # closing removes it from the epoll set
        errors[exc_or_kind if isinstance(exc_or_kind, str) else error_kind(exc_or_kind)] += 1
        retry.append((now + 1_000_000, slot))

    def may_issue() -> bool:
        nonlocal issued
        if requests and issued >= requests:
            return False
        issued += 1
        return True

    def open_slot(slot: int) -> None:
        nonlocal opened
        if not may_issue():
            return
        opened += 1
        now = perf()
        try:
            sock = _connect(dst, sources[(slot + opened) % len(sources)])
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            fail(None, slot, exc, now)
            return
        fd = sock.fileno()
        conns[fd] = [sock, now, slot, None, _EPOLLOUT]
        ep.register(fd, _EPOLLOUT)

    for slot in range(concurrency):
        open_slot(slot)
    next_scan = perf() + 50_000_000
    poll = ep.poll
    while True:
        now = perf()
        if now >= t_deadline or _Stop.flag or not conns and not retry:
            break
        for fd, _events in poll(0.01 if retry else 0.05):
            entry = conns.get(fd)
            if entry is None:
                continue
            buffer = entry[3]
            if buffer is None:  # connected (or failed), or handshaking: then send the first request
                request = wanted[entry[2]]
                try:
                    if tls and not _handshake(entry, fd, ep, context, host):
                        continue
                    # A short request on an idle connection: the kernel (or one TLS record) takes it whole.
                    if entry[0].send(request) != len(request):
                        fail(fd, entry[2], "other", perf())
                        continue
                except OSError as exc:
                    fail(fd, entry[2], exc, perf())
                    continue
                entry[3] = b""
                if not tls:  # (the handshake left the mask at EPOLLIN)
                    ep.modify(fd, _EPOLLIN)
                continue
            sock = entry[0]
            try:
                data = sock.recv(_MAX_REPLY)
            except BlockingIOError:
                continue
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue  # TLS: only records for the engine (session tickets) so far
            except ssl.SSLZeroReturnError:
                data = b""
            except OSError as exc:
                fail(fd, entry[2], exc, perf())
                continue
            if not data:
                fail(fd, entry[2], "eof", perf())
                continue
            if buffer:
                data = buffer + data
            if not data.endswith(b"\r\n"):
                if len(data) > _MAX_REPLY:
                    fail(fd, entry[2], "overflow", perf())
                else:
                    entry[3] = data
                continue
            end = perf()
            slot = entry[2]
            if end >= t_measure:
                if check and data != expected[slot]:
                    mismatches += 1
                else:
                    ok += 1
                    latencies.append((end - entry[1]) // 1000)
            if end >= t_deadline:
                break
            if not may_issue():
                del conns[fd]
                sock.close()
                continue
            entry[1] = end
            entry[3] = b""
            request = wanted[slot]
            try:
                # A short request on an idle connection: the kernel (or one TLS record) takes it whole.
                if sock.send(request) != len(request):
                    fail(fd, slot, "other", end)
            except OSError as exc:
                fail(fd, slot, exc, end)
        if retry:
            now = perf()
            due = [slot for when, slot in retry if when <= now]
            if due:
                retry[:] = [(when, slot) for when, slot in retry if when > now]
                for slot in due:
                    open_slot(slot)
        if now >= next_scan:
            next_scan = now + 50_000_000
            for fd, entry in list(conns.items()):
                if now - entry[1] > timeout_ns:
                    fail(fd, entry[2], "timeout", now)
    t_end = perf()
    for entry in conns.values():
        entry[0].close()
    ep.close()
    return _result("persistent", concurrency, ok, mismatches, errors, latencies, cpu0, t0, t_measure, t_end)


def run_oneshot_tls(port: int, context: ssl.SSLContext, **options: Any) -> dict[str, Any]:
    """`run_oneshot` over TLS (kept for callers of the earlier API)."""
    return run_oneshot(port, tls_context=context, **options)


def run_persistent_tls(port: int, context: ssl.SSLContext, **options: Any) -> dict[str, Any]:
    """`run_persistent` over TLS (kept for callers of the earlier API)."""
    return run_persistent(port, tls_context=context, **options)


# --------------------------------------------------------------------- idle


def run_idle(
    port: int,
    *,
    host: str = "127.0.0.1",
    connections: int = 10_000,
    concurrency: int = 256,
    hold: float = 10.0,
    timeout: float = 30.0,
    src_ips: int = 1,
    src_first: int = 1,
    out: Any = None,
) -> dict[str, Any]:
    """Open ``connections`` idle connections, announce them, hold them, close them."""
    out = out if out is not None else sys.stdout
    raise_nofile_limit(connections + 64)
    sources = _sources(src_ips, src_first)
    ep = select.epoll()
    errors: Counter[str] = Counter()
    connecting: dict[int, socket.socket] = {}
    held: dict[int, socket.socket] = {}
    t0 = time.monotonic()
    opened = failed = peer_closed = 0
    while opened < connections and time.monotonic() - t0 < timeout and not _Stop.flag:
        while opened < connections and len(connecting) < concurrency:
            opened += 1
            try:
                sock = _connect((host, port), sources[opened % len(sources)])
            except OSError as exc:
                failed += 1
                errors[_error_kind(exc)] += 1
                continue
            connecting[sock.fileno()] = sock
            ep.register(sock.fileno(), _EPOLLOUT)
        for fd, _events in ep.poll(0.05):
            sock = connecting.pop(fd)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                ep.unregister(fd)
                sock.close()
                failed += 1
                errors[_ERRNO_KIND.get(err, "other")] += 1
                continue
            held[fd] = sock
            ep.modify(fd, _EPOLLIN)
    for sock in connecting.values():
        failed += 1
        errors["timeout"] += 1
        sock.close()
    connecting.clear()
    out.write(f"reqrep-load: idle-ready established={len(held)} failed={failed} "
              f"connect_secs={time.monotonic() - t0:.2f}\n")
    out.flush()
    t_ready = time.monotonic()
    while time.monotonic() - t_ready < hold and not _Stop.flag:
        for fd, _events in ep.poll(0.1):
            sock = held.pop(fd)
            ep.unregister(fd)
            sock.close()
            peer_closed += 1
    still = len(held)
    for sock in held.values():
        sock.close()
    ep.close()
    return {
        "mode": "idle",
        "connections": connections,
        "established": opened - failed,
        "failed": failed,
        "peer_closed": peer_closed,
        "still_open_at_end": still,
        "held_secs": time.monotonic() - t_ready,
        "errors": {kind: errors.get(kind, 0) for kind in ERROR_KINDS},
    }


# --------------------------------------------------------------------- soak


def run_soak(
    port: int,
    lines_port: int,
    *,
    host: str = "127.0.0.1",
    duration: float = 600.0,
    rate: float = 400.0,
    connections: int = 8,
    line_interval: float = 0.005,
    payload_bytes: int = 16,
    timeout: float = 5.0,
    src_ips: int = 1,
    src_first: int = 1,
    progress_interval: float = 10.0,
    linger: float = 0.5,
    out: Any = None,
) -> dict[str, Any]:
    """Steady, rate-limited load for a leak check; return the raw result.

    One-shot requests to ``port`` are *started* at ``rate`` per second (at
    most 64 in flight; a schedule that falls behind by more than a second
    drops the backlog instead of bursting), while ``connections`` persistent
    connections to ``lines_port`` each send a line, wait for its reply,
    pause ``line_interval`` seconds and again.  Every reply is checked.

    The persistent connections are opened and have answered once before the
    clock starts.  ``soak-progress`` lines (cumulative counts) go to ``out``
    at t = 0, every ``progress_interval`` seconds, and once more when the
    run has ended and its requests in flight are drained (at most
    ``timeout`` seconds); the persistent connections are then held another
    ``linger`` seconds, so a sample taken on that last line sees the same
    connections as the others, and closed.  Every wait is bounded by
    ``duration`` plus twice ``timeout`` plus ``linger``.
    """
    out = out if out is not None else sys.stdout
    raise_nofile_limit(connections + 256)
    sources = _sources(src_ips, src_first)
    oneshot_dst, lines_dst = (host, port), (host, lines_port)
    ep = select.epoll()
    perf = time.perf_counter_ns
    cpu0 = _cpu_seconds()
    t_begin = perf()
    timeout_ns = int(timeout * 1e9)
    period_ns = int(1e9 / rate) if rate > 0 else 0
    pause_ns = int(line_interval * 1e9)
    pad = b"x" * payload_bytes
    counts: dict[str, Counter[str]] = {"oneshot": Counter(), "persistent": Counter()}
    ok = {"oneshot": 0, "persistent": 0}
    mismatches = {"oneshot": 0, "persistent": 0}
    seq = 0
    # One-shot: fd -> [sock, t_start_ns, request, reply buffer (None until sent)]
    oneshots: dict[int, list[Any]] = {}
    # Persistent: slot -> [sock or None, fd, t_sent_ns (0: idle), reply buffer (None while connecting), due_ns]
    wanted = [(b"%x." % slot + pad)[: max(payload_bytes, len(b"%x." % slot))] + b"\r\n"
              for slot in range(connections)]
    expected = [b"Requested: " + request for request in wanted]
    slots: list[list[Any]] = [[None, -1, 0, None, 0] for _ in range(connections)]
    by_fd: dict[int, int] = {}  # persistent fd -> slot

    def fail(kind: str, what: OSError | str) -> None:
        counts[kind][what if isinstance(what, str) else _error_kind(what)] += 1

    def close_slot(slot: int, now: int, what: OSError | str | None) -> None:
        entry = slots[slot]
        if entry[0] is not None:
            by_fd.pop(entry[1], None)
            entry[0].close()
        if what is not None:
            fail("persistent", what)
        entry[:] = [None, -1, 0, None, now + 100_000_000]  # reopen after 100 ms

    def open_slot(slot: int, now: int) -> None:
        try:
            sock = _connect(lines_dst, sources[slot % len(sources)])
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            close_slot(slot, now, exc)
            return
        fd = sock.fileno()
        slots[slot][:] = [sock, fd, now, None, 0]  # the first line goes out once connected
        by_fd[fd] = slot
        ep.register(fd, _EPOLLOUT)

    def send_line(slot: int, now: int) -> None:
        entry = slots[slot]
        try:
            if entry[0].send(wanted[slot]) != len(wanted[slot]):
                close_slot(slot, now, "other")
                return
        except OSError as exc:
            close_slot(slot, now, exc)
            return
        entry[2], entry[3] = now, b""

    def start_oneshot(now: int) -> None:
        nonlocal seq
        seq += 1
        head = b"%x." % seq
        request = (head + pad)[: max(payload_bytes, len(head))] + b"\r\n"
        try:
            sock = _connect(oneshot_dst, sources[seq % len(sources)])
        except OSError as exc:
            fail("oneshot", exc)
            return
        fd = sock.fileno()
        try:
            try:
                sock.send(request)
            except BlockingIOError:
                oneshots[fd] = [sock, now, request, None]
                ep.register(fd, _EPOLLOUT)
                return
            sock.shutdown(socket.SHUT_WR)
            oneshots[fd] = [sock, now, request, b""]
            ep.register(fd, _EPOLLIN)
        except OSError as exc:
            oneshots.pop(fd, None)
            sock.close()
            fail("oneshot", exc)

    def on_oneshot(fd: int, entry: list[Any]) -> None:
        sock = entry[0]
        if entry[3] is None:
            try:
                sock.send(entry[2])
                sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                del oneshots[fd]
                sock.close()
                fail("oneshot", exc)
                return
            entry[3] = b""
            ep.modify(fd, _EPOLLIN)
            return
        try:
            data = sock.recv(_MAX_REPLY)
        except BlockingIOError:
            return
        except OSError as exc:
            del oneshots[fd]
            sock.close()
            fail("oneshot", exc)
            return
        buffer = entry[3] + data if entry[3] else data
        if data and not buffer.endswith(b"\r\n"):
            if len(buffer) > _MAX_REPLY:
                del oneshots[fd]
                sock.close()
                fail("oneshot", "overflow")
            else:
                entry[3] = buffer
            return
        del oneshots[fd]
        sock.close()
        if not buffer.endswith(b"\r\n"):
            fail("oneshot", "eof")
        elif buffer != b"Requested: " + entry[2]:
            mismatches["oneshot"] += 1
        else:
            ok["oneshot"] += 1

    def on_persistent(slot: int, now: int) -> None:
        entry = slots[slot]
        if entry[3] is None:  # connected (or failed): send the first line
            ep.modify(entry[1], _EPOLLIN)
            send_line(slot, now)
            return
        try:
            data = entry[0].recv(_MAX_REPLY)
        except BlockingIOError:
            return
        except OSError as exc:
            close_slot(slot, now, exc)
            return
        if not data:
            close_slot(slot, now, "eof")
            return
        buffer = entry[3] + data if entry[3] else data
        if not buffer.endswith(b"\r\n"):
            if len(buffer) > _MAX_REPLY:
                close_slot(slot, now, "overflow")
            else:
                entry[3] = buffer
            return
        if buffer != expected[slot]:
            mismatches["persistent"] += 1
        else:
            ok["persistent"] += 1
        entry[2], entry[3], entry[4] = 0, b"", now + pause_ns

    def progress(t_start: int) -> None:
        out.write(f"reqrep-load: soak-progress t={(perf() - t_start) / 1e9:.2f} oneshot_ok={ok['oneshot']} "
                  f"persistent_ok={ok['persistent']} "
                  f"errors={sum(sum(c.values()) for c in counts.values()) + sum(mismatches.values())}\n")
        out.flush()

    def turn(now: int, running: bool, wait_ns: int) -> None:
        """One poll and its events; then timeouts, reopened and due persistent connections."""
        for fd, _events in ep.poll(max(0, min(wait_ns, 50_000_000)) / 1e9):
            entry = oneshots.get(fd)
            if entry is not None:
                on_oneshot(fd, entry)
                continue
            slot = by_fd.get(fd)
            if slot is not None:
                on_persistent(slot, perf())
        now = perf()
        for fd, entry in list(oneshots.items()):
            if now - entry[1] > timeout_ns:
                del oneshots[fd]
                entry[0].close()
                fail("oneshot", "timeout")
        for slot, entry in enumerate(slots):
            if entry[0] is None:
                if running and now >= entry[4]:
                    open_slot(slot, now)
            elif entry[2] and now - entry[2] > timeout_ns:
                close_slot(slot, now, "timeout")
            elif running and entry[3] is not None and not entry[2] and now >= entry[4]:
                send_line(slot, now)

    # Warm: every persistent connection opened and answered once (bounded by the timeout).
    for slot in range(connections):
        open_slot(slot, perf())
    warm_deadline = perf() + timeout_ns
    while not _Stop.flag and perf() < warm_deadline and ok["persistent"] < connections \
            and any(entry[0] is not None for entry in slots):
        turn(perf(), False, 10_000_000)
    for slot, entry in enumerate(slots):  # the warm-up's connections all start idle
        if entry[0] is not None and entry[2]:
            close_slot(slot, perf(), "timeout")
        entry[4] = 0
    t0 = perf()
    t_deadline = t0 + int(duration * 1e9)
    next_progress = t0 + int(progress_interval * 1e9)
    next_oneshot = t0
    progress(t0)
    while not _Stop.flag:
        now = perf()
        if now >= t_deadline:
            break
        if now >= next_progress:
            progress(t0)
            next_progress += int(progress_interval * 1e9)
        if period_ns:
            if now - next_oneshot > 1_000_000_000:
                next_oneshot = now  # fell behind: drop the backlog rather than burst
            while next_oneshot <= now and len(oneshots) < 64:
                start_oneshot(now)
                next_oneshot += period_ns
        due = [entry[4] for entry in slots if entry[0] is None or not entry[2]]
        wake = min([next_oneshot if period_ns and len(oneshots) < 64 else t_deadline, next_progress, t_deadline,
                    *due])
        turn(now, True, wake - now)
    # Drain: no new requests; those in flight finish or time out.
    drain_deadline = perf() + timeout_ns
    while (oneshots or any(entry[2] for entry in slots)) and perf() < drain_deadline and not _Stop.flag:
        turn(perf(), False, 10_000_000)
    for entry in oneshots.values():
        entry[0].close()
        fail("oneshot", "timeout")
    oneshots.clear()
    for slot, entry in enumerate(slots):
        if entry[0] is not None and entry[2]:
            close_slot(slot, perf(), "timeout")
    t_end = perf()
    progress(t0)
    hold_until = time.monotonic() + linger
    while not _Stop.flag and time.monotonic() < hold_until:
        time.sleep(min(0.05, max(0.0, hold_until - time.monotonic())))
    for slot in range(connections):
        if slots[slot][0] is not None:
            close_slot(slot, perf(), None)
    ep.close()
    return {
        "mode": "soak",
        "secs": (t_end - t0) / 1e9,
        "cpu": _cpu_seconds() - cpu0,
        "wall": (perf() - t_begin) / 1e9,
        "ok": dict(ok),
        "mismatches": dict(mismatches),
        "errors": {kind: {k: counts[kind].get(k, 0) for k in ERROR_KINDS} for kind in counts},
    }


def soak_fields(result: dict[str, Any]) -> dict[str, Any]:
    """The flat key=value fields of a raw soak result (what ``--mode soak`` prints)."""
    fields: dict[str, Any] = {"mode": "soak", "secs": round(result["secs"], 2)}
    for kind in ("oneshot", "persistent"):
        errors = result["errors"][kind]
        fields[f"{kind}_ok"] = result["ok"][kind]
        fields[f"{kind}_errors"] = sum(errors.values())
        fields[f"{kind}_mismatches"] = result["mismatches"][kind]
        for what in ERROR_KINDS:
            fields[f"{kind}_err_{what}"] = errors[what]
    fields["gen_cpu"] = round(result["cpu"] / result["wall"], 2) if result["wall"] > 0 else 0.0
    return fields


# ---------------------------------------------------------- result handling


def percentile(histogram: dict[int, int], fraction: float) -> float:
    """The ``fraction`` quantile of a {value: count} histogram (0.0 when empty)."""
    total = sum(histogram.values())
    if not total:
        return 0.0
    rank = max(1, int(fraction * total + 0.999999))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return float(max(histogram))


def aggregate(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Add up the raw one-shot or persistent results of several generator processes."""
    results = list(results)
    histogram: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    for result in results:
        histogram.update({int(k): v for k, v in result["histogram"].items()})
        errors.update(result["errors"])
    return {
        "mode": results[0]["mode"] if results else "oneshot",
        "conc": sum(r["conc"] for r in results),
        "ok": sum(r["ok"] for r in results),
        "mismatches": sum(r["mismatches"] for r in results),
        "secs": max((r["secs"] for r in results), default=0.0),
        "cpu": sum(r["cpu"] for r in results),
        "wall": max((r["wall"] for r in results), default=0.0),
        "errors": {kind: errors.get(kind, 0) for kind in ERROR_KINDS},
        "histogram": dict(histogram),
        "procs": sum(r.get("procs", 1) for r in results),
    }


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The flat key=value fields of a raw one-shot or persistent result (what `format_line` prints)."""
    histogram = {int(k): v for k, v in result["histogram"].items()}
    total = sum(histogram.values())
    mean = sum(k * v for k, v in histogram.items()) / total if total else 0.0
    errors = result["errors"]
    secs = result["secs"]
    fields: dict[str, Any] = {
        "mode": result["mode"],
        "conc": result["conc"],
        "ok": result["ok"],
        "errors": sum(errors.values()),
        "mismatches": result["mismatches"],
        "secs": round(secs, 2),
        "rps": round(result["ok"] / secs) if secs > 0 else 0,
        "p50_us": percentile(histogram, 0.50),
        "p90_us": percentile(histogram, 0.90),
        "p99_us": percentile(histogram, 0.99),
        "p999_us": percentile(histogram, 0.999),
        "max_us": float(max(histogram, default=0)),
        "mean_us": round(mean, 1),
    }
    for kind in ERROR_KINDS:
        fields[f"err_{kind}"] = errors.get(kind, 0)
    fields["over_1s"] = sum(v for k, v in histogram.items() if k >= 1_000_000)
    fields["gen_cpu"] = round(result["cpu"] / result["wall"], 2) if result["wall"] > 0 else 0.0
    fields["procs"] = result.get("procs", 1)
    return fields


def format_line(fields: dict[str, Any]) -> str:
    """``reqrep-load: key=value ...``, the C generator's result line."""
    return "reqrep-load: " + " ".join(f"{key}={value}" for key, value in fields.items())


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def parse_line(output: str, *, prefix: str = "mode=") -> dict[str, Any] | None:
    """The fields of the last result line in ``output`` (a generator's stdout), or None.

    ``prefix`` picks the kind of line: ``"mode="`` for results,
    ``"idle-ready"`` for the idle generator's ready announcement.
    """
    for line in reversed(output.splitlines()):
        body = line.split("reqrep-load:", 1)[-1].strip()
        if not body.startswith(prefix):
            continue
        fields: dict[str, Any] = {}
        for token in body.split():
            key, sep, value = token.partition("=")
            if sep:
                fields[key] = _number(value)
        return fields
    return None


# -------------------------------------------------------------- processes


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _run_processes(args: argparse.Namespace) -> dict[str, Any]:
    shares = [c for c in _split(args.concurrency, args.processes) if c > 0]
    requests = _split(args.requests, len(shares)) if args.requests else [0] * len(shares)
    children = []
    for i, (conc, reqs) in enumerate(zip(shares, requests, strict=True)):
        cmd = [sys.executable, "-m", "benchmarks.loadgen", "--raw-json", "--mode", args.mode,
               "--port", str(args.port), "--host", args.host, "--concurrency", str(conc),
               "--duration", str(args.duration), "--requests", str(reqs),
               "--payload-bytes", str(args.payload_bytes), "--timeout", str(args.timeout),
               "--src-ips", str(args.src_ips), "--src-ip-first", str(args.src_ip_first),
               "--warmup", str(args.warmup), "--worker-index", str(i)]
        if args.check:
            cmd.append("--check")
        if args.tls_ca:
            cmd += ["--tls-ca", args.tls_ca]
        children.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=child_environment()))
    results = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode == 0 and out.strip():
            results.append(json.loads(out.strip().splitlines()[-1]))
    if not results:
        raise SystemExit("reqrep-load: every generator process failed")
    return aggregate(results)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; the options are those of the C ``reqrep-load``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--port", "-p", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--concurrency", "-c", type=int, default=64)
    parser.add_argument("--duration", "-d", type=float, default=5.0)
    parser.add_argument("--requests", "-n", type=int, default=0)
    parser.add_argument("--mode", "-m", choices=["oneshot", "persistent", "idle", "soak"], default="oneshot")
    parser.add_argument("--payload-bytes", "-b", type=int, default=16)
    parser.add_argument("--check", "-k", action="store_true", help="verify every reply")
    parser.add_argument("--timeout", "-t", type=float, default=5.0)
    parser.add_argument("--connections", "-C", type=int, default=10_000)
    parser.add_argument("--hold", "-H", type=float, default=10.0)
    parser.add_argument("--src-ips", "-s", type=int, default=1)
    parser.add_argument("--src-ip-first", type=int, default=1)
    parser.add_argument("--warmup", "-w", type=float, default=0.0)
    parser.add_argument("--quiet", "-q", action="store_true")
    parser.add_argument("--processes", "-P", type=int, default=1,
                        help="generator processes (one-shot and persistent modes)")
    parser.add_argument("--lines-port", type=int, default=0,
                        help="soak: the line server's port, for the --concurrency persistent connections")
    parser.add_argument("--rate", type=float, default=400.0, help="soak: one-shot requests started per second")
    parser.add_argument("--line-interval", type=float, default=0.005,
                        help="soak: pause of each persistent connection between a reply and its next line")
    parser.add_argument("--progress-interval", type=float, default=10.0,
                        help="soak: seconds between soak-progress lines")
    parser.add_argument("--tls-ca", metavar="CA.pem",
                        help="oneshot and persistent over TLS, trusting this CA (the C generator has no TLS)")
    parser.add_argument("--raw-json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536 or args.concurrency < 1 or args.src_ips < 1 or args.src_ip_first < 1 \
            or args.src_ip_first + args.src_ips > 255:
        parser.error("bad --port, --concurrency, --src-ips or --src-ip-first")
    if args.tls_ca and args.mode not in ("oneshot", "persistent"):
        parser.error("--tls-ca goes with --mode oneshot or persistent")
    _Stop.install()
    if args.mode == "soak":
        if not 0 < args.lines_port < 65536 or args.rate < 0 or args.progress_interval <= 0:
            parser.error("soak needs --lines-port, a --rate ≥ 0 and a positive --progress-interval")
        result = run_soak(args.port, args.lines_port, host=args.host, duration=args.duration, rate=args.rate,
                          connections=args.concurrency, line_interval=args.line_interval,
                          payload_bytes=args.payload_bytes, timeout=args.timeout, src_ips=args.src_ips,
                          src_first=args.src_ip_first, progress_interval=args.progress_interval)
        print(format_line(soak_fields(result)), flush=True)
        return 0
    if args.mode == "idle":
        result = run_idle(args.port, host=args.host, connections=args.connections,
                          concurrency=args.concurrency,
                          hold=args.hold, timeout=max(args.timeout, 30.0),
                          src_ips=args.src_ips, src_first=args.src_ip_first)
        fields = {key: value for key, value in result.items() if key != "errors"}
        fields["held_secs"] = round(fields["held_secs"], 2)
        for kind in ERROR_KINDS:
            fields[f"err_{kind}"] = result["errors"][kind]
        print(format_line(fields), flush=True)
        return 0
    if args.processes > 1 and not args.raw_json:
        result = _run_processes(args)
    else:
        run = run_persistent if args.mode == "persistent" else run_oneshot
        result = run(args.port, host=args.host, concurrency=args.concurrency, duration=args.duration,
                     requests=args.requests, payload_bytes=args.payload_bytes, check=args.check,
                     timeout=args.timeout, src_ips=args.src_ips, src_first=args.src_ip_first, warmup=args.warmup,
                     tls_context=client_context(args.tls_ca) if args.tls_ca else None)
    if args.raw_json:
        print(json.dumps(result), flush=True)
    else:
        print(format_line(summarize(result)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
