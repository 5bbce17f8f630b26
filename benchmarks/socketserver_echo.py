"""Requests per second of a ``StreamRequestHandler`` line server, reactor vs stdlib socketserver.

Both servers are ``ThreadingTCPServer`` (or, with ``--server TCPServer``,
the synchronous ``TCPServer``) running the main benchmark's server processes
(`benchmarks.servers`: ``threading`` / ``reactor-threading``,
``tcpserver`` / ``reactor-tcpserver``): the same handler code (read a line,
write a reply line) and the same listen backlog (``socket.SOMAXCONN``; the
stdlib default of 5 overflows at 16 clients and measures SYN retransmits, not
servers).  Each server process is started fresh for every round; the rounds
alternate stdlib, reactor, stdlib, reactor... and the medians are printed,
with the server's CPU time per request (user + system of the server process,
all threads, read from ``/proc``) and the reactor/stdlib ratios.

The load: ``--clients`` threads in this process, each making ``--requests``
one-shot requests (connect, send ``ping-N\\r\\n``, read the reply until EOF,
close) against loopback.  With two or more CPUs the server is pinned to one
CPU and the clients to the others.  The client threads share one interpreter,
so at high rates they, not the server, can be the limit: compare CPU per
request as well as requests per second.  ``python -m benchmarks`` measures
the same servers with a separate load generator process.

Run it with ``python -m benchmarks.socketserver_echo [--clients 16]
[--requests 300] [--rounds 3] [--server TCPServer]``.  This is a measurement, not a test: nothing
here asserts.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time

from .processes import ServerProcess, cpu_plan

IMPLEMENTATIONS = ("stdlib", "reactor")
#: (implementation, server class) -> the `benchmarks.servers` kind that runs it.
KINDS = {
    ("stdlib", "ThreadingTCPServer"): "threading",
    ("reactor", "ThreadingTCPServer"): "reactor-threading",
    ("stdlib", "TCPServer"): "tcpserver",
    ("reactor", "TCPServer"): "reactor-tcpserver",
}
HOST = "127.0.0.1"


def _client(port: int, first: int, count: int, start: threading.Barrier, errors: list[str]) -> None:
    start.wait()
    for n in range(first, first + count):
        message = b"ping-%d" % n
        try:
            with socket.create_connection((HOST, port), timeout=10) as sock:
                sock.sendall(message + b"\r\n")
                reply = b""
                while chunk := sock.recv(256):
                    reply += chunk
        except OSError as exc:
            errors.append(repr(exc))
            continue
        if reply != b"Requested: " + message + b"\r\n":
            errors.append(f"bad reply {reply!r}")


def one_round(
    impl: str, server_class: str, clients: int, requests: int, cpus: set[int] | None
) -> tuple[float, float, int]:
    """Start a fresh server, load it; return (requests/s, server CPU µs/request, errors)."""
    with ServerProcess(KINDS[impl, server_class], cpus) as server:
        errors: list[str] = []
        barrier = threading.Barrier(clients + 1)
        threads = [
            threading.Thread(target=_client, args=(server.port, i * requests, requests, barrier, errors))
            for i in range(clients)
        ]
        for t in threads:
            t.start()
        cpu_before = server.cpu()
        barrier.wait()
        began = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
        cpu = server.cpu() - cpu_before
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
    args = parser.parse_args(argv)
    server_cpus, client_cpus = cpu_plan()
    if client_cpus is not None:
        os.sched_setaffinity(0, client_cpus)
    results: dict[str, list[tuple[float, float, int]]] = {impl: [] for impl in IMPLEMENTATIONS}
    for _ in range(args.rounds):
        for impl in IMPLEMENTATIONS:
            results[impl].append(one_round(impl, args.server, args.clients, args.requests, server_cpus))
    print(f"{args.server} + StreamRequestHandler line reply, one connection per request, loopback")
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
    cpu_ratio = f"{our_cpu / std_cpu:.2f}x" if std_cpu else "-"  # /proc counts CPU in clock ticks
    print(f"  reactor/stdlib: {our_rate / std_rate:.2f}x req/s, {cpu_ratio} CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
