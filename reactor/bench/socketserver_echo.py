"""Requests per second of a ``StreamRequestHandler`` echo, reactor vs stdlib socketserver.

Both servers are ``ThreadingTCPServer`` (or, with ``--server TCPServer``,
the synchronous ``TCPServer``) with the same handler code (read a
line, write it back) and the same listen backlog (``socket.SOMAXCONN``; the
stdlib default of 5 overflows at 16 clients and measures SYN retransmits, not
servers).  Each runs in its own process, started fresh for every round; the
rounds alternate stdlib, reactor, stdlib, reactor... and the medians are
printed, with the server's CPU time per request (user + system of the server
process between "ready" and "stop", all threads) and the reactor/stdlib
ratios.

The load: ``--clients`` threads in this process, each making ``--requests``
one-shot requests (connect, send ``ping-N\\n``, read the echo until EOF,
close) against loopback.  With two or more CPUs the server is pinned to CPU 0
and the clients to the others.  The client threads share one interpreter, so
at high rates they, not the server, can be the limit: compare CPU per
request as well as requests per second.

Run it with ``python -m reactor.bench.socketserver_echo [--clients 16]
[--requests 300] [--rounds 3] [--server TCPServer]``.  This is a measurement, not a test: nothing
here asserts.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from types import ModuleType
from typing import Any

IMPLEMENTATIONS = ("stdlib", "reactor")
HOST = "127.0.0.1"


def _module(impl: str) -> ModuleType:
    if impl == "stdlib":
        import socketserver

        return socketserver
    import reactor.socketserver

    return reactor.socketserver


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(impl: str, server_class: str) -> None:
    """The server process: print the port, serve until stdin closes, print CPU seconds used."""
    module = _module(impl)

    class Echo(module.StreamRequestHandler):  # type: ignore[name-defined,misc]
        def handle(self) -> None:
            self.wfile.write(self.rfile.readline())

    class Server(getattr(module, server_class)):  # type: ignore[misc]
        request_queue_size = socket.SOMAXCONN

    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    server: Any = Server((HOST, 0), Echo)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    started = _cpu_seconds()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    used = _cpu_seconds() - started
    server.shutdown()
    thread.join()
    server.server_close()
    print(f"{used:.6f}", flush=True)


def _client(port: int, first: int, count: int, start: threading.Barrier, errors: list[str]) -> None:
    start.wait()
    for n in range(first, first + count):
        message = b"ping-%d\n" % n
        try:
            with socket.create_connection((HOST, port), timeout=10) as sock:
                sock.sendall(message)
                reply = b""
                while chunk := sock.recv(256):
                    reply += chunk
        except OSError as exc:
            errors.append(repr(exc))
            continue
        if reply != message:
            errors.append(f"bad echo {reply!r}")


def one_round(impl: str, server_class: str, clients: int, requests: int) -> tuple[float, float, int]:
    """Start a fresh server, load it; return (requests/s, server CPU µs/request, errors)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor.bench.socketserver_echo", "--serve", impl, "--server", server_class],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        port = int(proc.stdout.readline())
        errors: list[str] = []
        barrier = threading.Barrier(clients + 1)
        threads = [
            threading.Thread(target=_client, args=(port, i * requests, requests, barrier, errors))
            for i in range(clients)
        ]
        for t in threads:
            t.start()
        barrier.wait()
        began = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
        proc.stdin.close()
        cpu = float(proc.stdout.readline())
    finally:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
    done = clients * requests - len(errors)
    if errors:
        print(f"  {impl}: {len(errors)} errors, e.g. {errors[0]}", file=sys.stderr)
    return done / elapsed, cpu / max(done, 1) * 1e6, len(errors)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (16)")
    parser.add_argument("--requests", type=int, default=300, help="requests per client per round (300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per implementation (3)")
    parser.add_argument(
        "--server", choices=("ThreadingTCPServer", "TCPServer"), default="ThreadingTCPServer",
        help="the server class (ThreadingTCPServer; TCPServer handles requests one at a time)",
    )
    parser.add_argument("--serve", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.server)
        return 0
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, cpus - {min(cpus)})
    results: dict[str, list[tuple[float, float, int]]] = {impl: [] for impl in IMPLEMENTATIONS}
    for _ in range(args.rounds):
        for impl in IMPLEMENTATIONS:
            results[impl].append(one_round(impl, args.server, args.clients, args.requests))
    print(f"{args.server} + StreamRequestHandler echo, one connection per request, loopback")
    print(f"{args.clients} client threads x {args.requests} requests, median of {args.rounds} rounds")
    medians = {}
    for impl in IMPLEMENTATIONS:
        rate = statistics.median(r[0] for r in results[impl])
        cpu = statistics.median(r[1] for r in results[impl])
        errors = sum(r[2] for r in results[impl])
        medians[impl] = (rate, cpu)
        name = "stdlib socketserver" if impl == "stdlib" else "reactor.socketserver"
        print(f"  {name:<22} {rate:>9,.0f} req/s  {cpu:>6.1f} us server CPU/req  errors={errors}")
    (std_rate, std_cpu), (our_rate, our_cpu) = medians["stdlib"], medians["reactor"]
    print(f"  reactor/stdlib: {our_rate / std_rate:.2f}x req/s, {our_cpu / std_cpu:.2f}x CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
