"""The command line: ``python -m reactor`` (also installed as ``reactor``).

``serve [ADDRESS ...] [--handler module:Class] [--certfile F --keyfile K] [--workers N]``
    Serve every address from one reactor in one thread (over TLS with a
    certificate chain and its key).  On Ctrl-C or SIGTERM: stop accepting,
    finish the requests in flight (at most ``--grace`` seconds), exit 0.
    With ``--workers N`` (0: one per usable CPU): N processes, each with its
    own reactor, under a supervisor (`reactor.workers`); SIGHUP restarts
    them, and the summed counters are printed on exit.  Behind a load
    balancer, ``--proxy-protocol [--trusted-proxy ADDR ...]`` reads the
    client's address from its PROXY header (``docs/deploy.md``).
``request ADDRESS TEXT [--timeout S] [--cafile F] [--tls] [--server-hostname NAME]``
    Print the reply (over TLS with ``--cafile``, trusting that CA, or with
    ``--tls``, trusting the system's CAs).  Exit 0 on a reply, 1 on timeout, 2 on a connection
    error, with a one-line message on stderr.
``demo``
    Two servers on two ports in one thread, answered by ``request``; ends
    on its own.
``bench ...``
    The benchmark suite (see ``python -m reactor bench --help``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from typing import Any

from .client import do_request
from .core import Reactor
from .futures import Future
from .reqrep import RequestServer

__all__ = ["main"]

logger = logging.getLogger("reactor.cli")


def _load_handler(spec: str) -> type[RequestServer]:
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise SystemExit(f"reactor serve: --handler must look like module:Class, got {spec!r}")
    try:
        cls: Any = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"reactor serve: cannot load handler {spec!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, RequestServer)):
        raise SystemExit(f"reactor serve: {spec!r} is not a RequestServer subclass")
    return cls


def _server_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    if certfile is None:
        if keyfile is not None:
            raise SystemExit("reactor serve: --keyfile needs --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(f"reactor serve: cannot load the certificate: {exc}") from None
    return context


def _proxy_options(proxy_protocol: bool, trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """The RequestServer keywords for ``--proxy-protocol``/``--trusted-proxy`` (checked here, once)."""
    if not proxy_protocol:
        if trusted_proxies:
            raise SystemExit("reactor serve: --trusted-proxy needs --proxy-protocol")
        return {}
    from .transport.proxy import TrustedProxies

    trusted = tuple(trusted_proxies) or ("127.0.0.1", "::1")
    try:
        TrustedProxies(trusted)
    except ValueError as exc:
        raise SystemExit(f"reactor serve: {exc}") from None
    return {"proxy_protocol": True, "trusted_proxies": trusted}


def serve(
    addresses: list[str],
    handler: str | None = None,
    grace: float = 10.0,
    verbose: int = 0,
    certfile: str | None = None,
    keyfile: str | None = None,
    proxy_protocol: bool = False,
    trusted_proxies: Sequence[str] = (),
) -> int:
    """Serve ``addresses`` in this thread until SIGINT/SIGTERM; then drain and return 0."""
    cls = _load_handler(handler) if handler else RequestServer
    context = _server_context(certfile, keyfile)
    proxy = _proxy_options(proxy_protocol, trusted_proxies)
    with Reactor() as reactor:
        servers: list[RequestServer] = []
        try:
            for address in addresses:
                try:
                    servers.append(cls(address, verbose=verbose, reactor=reactor, ssl=context, **proxy))
                except (OSError, ValueError) as exc:
                    print(f"reactor serve: cannot listen on {address!r}: {exc}", file=sys.stderr)
                    return 2
            for server in servers:
                print(f"serving {cls.__name__}{' over TLS' if context else ''} on {server.address}", flush=True)
            stopping = False

            def begin_shutdown() -> None:
                nonlocal stopping
                if stopping:
                    return
                stopping = True
                logger.info("shutting down: no new connections; finishing requests in flight")
                drains = [server.drain(grace) for server in servers]
                remaining = len(drains)

                def one_done(_: Future[None]) -> None:
                    nonlocal remaining
                    remaining -= 1
                    if remaining == 0:
                        reactor.stop()

                for fut in drains:
                    fut.add_done_callback(one_done)

            def on_signal(signum: int, frame: object) -> None:
                reactor.call_soon_threadsafe(begin_shutdown)

            previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                reactor.run()
            finally:
                for sig, old in previous.items():
                    signal.signal(sig, old)
            print("stopped", flush=True)
        finally:
            for server in servers:
                server.close()
    return 0


def serve_workers(
    addresses: list[str],
    workers: int,
    handler: str | None = None,
    grace: float = 10.0,
    verbose: int = 0,
    certfile: str | None = None,
    keyfile: str | None = None,
    reuse_port: bool = False,
    proxy_protocol: bool = False,
    trusted_proxies: Sequence[str] = (),
) -> int:
    """Serve ``addresses`` from ``workers`` processes under a supervisor until SIGINT/SIGTERM; print totals."""
    from .workers import run_workers, worker_count

    cls = _load_handler(handler) if handler else RequestServer
    context = _server_context(certfile, keyfile)
    proxy = _proxy_options(proxy_protocol, trusted_proxies)
    try:
        count = worker_count(workers)
    except ValueError as exc:
        raise SystemExit(f"reactor serve: {exc}") from None
    logging.getLogger("reactor.workers").setLevel(logging.INFO)

    def build(reactor: Reactor) -> list[RequestServer]:
        return [cls(address, verbose=verbose, reactor=reactor, ssl=context, **proxy) for address in addresses]

    def listening(bound: list[str]) -> None:
        tls = " over TLS" if context else ""
        for address in bound:
            print(f"serving {cls.__name__}{tls} on {address} with {count} workers", flush=True)

    try:
        totals = run_workers(
            build, count, addresses=addresses, grace=grace, reuse_port=reuse_port, on_listening=listening
        )
    except (OSError, ValueError) as exc:
        print(f"reactor serve: cannot listen: {exc}", file=sys.stderr)
        return 2
    print(
        f"stopped: {totals.get('completed', 0)} requests completed, {totals.get('accepted', 0)} connections "
        f"accepted, {totals.get('errors', 0)} errors, {totals.get('timeouts', 0)} timeouts, "
        f"{totals.get('rejected', 0)} rejected; {totals['workers_started']} workers started, "
        f"{totals['workers_died']} died",
        flush=True,
    )
    return 0


def request(
    address: str,
    text: str,
    timeout: float,
    cafile: str | None = None,
    tls: bool = False,
    server_hostname: str | None = None,
) -> int:
    """Send one request; print the reply.  Exit status 0 reply, 1 timeout, 2 connection or TLS error."""
    context = None
    if cafile is not None or tls:
        try:
            context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            print(f"reactor request: cannot load {cafile!r}: {exc}", file=sys.stderr)
            return 2
    try:
        reply = do_request(address, text, timeout, ssl=context, server_hostname=server_hostname)
    except ValueError as exc:
        print(f"reactor request: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"reactor request: {address}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if reply is None:
        print(f"reactor request: no reply from {address} within {timeout} s", file=sys.stderr)
        return 1
    print(reply)
    return 0


class _Upper(RequestServer):
    """A demo handler: answers in upper case."""

    def handle_request(self, request: str) -> str:
        return request.upper()


def demo() -> int:
    """Two servers on two ports in one thread, answered by concurrent requests; then exit."""
    with Reactor() as reactor:
        echo = RequestServer("localhost:0", reactor=reactor)
        upper = _Upper("localhost:0", reactor=reactor)
        try:
            print(f"echo server on {echo.address}, upper-case server on {upper.address}, one thread")
            futures = [reactor.request(echo.address, f"ping {i}", timeout=5) for i in range(3)]
            futures += [reactor.request(upper.address, text, timeout=5) for text in ("hello", "reactor")]
            for fut in futures:
                reactor.run_until_complete(fut, timeout=10)
                print("reply:", fut.result())
            for server in (echo, upper):
                stats = server.statistics()
                print(f"{server.address}: {stats['completed']} requests answered, {stats['active']} open")
        finally:
            echo.close()
            upper.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m reactor`` and the ``reactor`` script."""
    parser = argparse.ArgumentParser(
        prog="reactor", description="A single-threaded event reactor: request/reply servers and clients."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="serve request/reply on one or more addresses, in one thread")
    p_serve.add_argument(
        "addresses",
        nargs="*",
        default=["localhost:8000"],
        metavar="ADDRESS",
        help="host:port, [::1]:port or unix:/path (default localhost:8000)",
    )
    p_serve.add_argument(
        "--handler", metavar="module:Class", help="a RequestServer subclass (default: echo 'Requested: ...')"
    )
    p_serve.add_argument("--grace", type=float, default=10.0, help="seconds to finish requests in flight on shutdown")
    p_serve.add_argument("-v", "--verbose", action="count", default=0, help="log each accepted connection")
    p_serve.add_argument("--certfile", help="serve TLS with this certificate chain (PEM)")
    p_serve.add_argument("--keyfile", help="the certificate's private key (PEM; default: in --certfile)")
    p_serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="serve from N processes under a supervisor (0: one per usable CPU; default: this process only)",
    )
    p_serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="with --workers: each worker binds its own SO_REUSEPORT socket instead of sharing one",
    )
    p_serve.add_argument(
        "--proxy-protocol",
        action="store_true",
        help="behind a load balancer: read its PROXY protocol header (v1/v2) for the client's address",
    )
    p_serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="with --proxy-protocol: a balancer's address or network, or 'unix' (repeatable; default: loopback)",
    )
    p_req = sub.add_parser("request", help="send one request and print the reply")
    p_req.add_argument("address")
    p_req.add_argument("text")
    p_req.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    p_req.add_argument("--cafile", help="speak TLS, trusting the CA certificates in this PEM file")
    p_req.add_argument("--tls", action="store_true", help="speak TLS, trusting the system's CA certificates")
    p_req.add_argument(
        "--server-hostname", help="the name the server's certificate must carry (default: ADDRESS's host)"
    )
    sub.add_parser("demo", help="two servers on two ports in one thread, answered by request()")
    sub.add_parser("bench", help="the benchmark suite (python -m reactor bench --help)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from . import bench

        return int(bench.main(rest))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", 0) else logging.WARNING, format="%(name)s: %(message)s"
    )
    if args.command == "serve" and args.workers is not None:
        return serve_workers(
            args.addresses,
            args.workers,
            args.handler,
            args.grace,
            args.verbose,
            args.certfile,
            args.keyfile,
            args.reuse_port,
            proxy_protocol=args.proxy_protocol,
            trusted_proxies=args.trusted_proxy,
        )
    if args.command == "serve":
        if args.reuse_port:
            parser.error("--reuse-port needs --workers")
        return serve(
            args.addresses,
            args.handler,
            args.grace,
            args.verbose,
            args.certfile,
            args.keyfile,
            proxy_protocol=args.proxy_protocol,
            trusted_proxies=args.trusted_proxy,
        )
    if args.command == "request":
        return request(args.address, args.text, args.timeout, args.cafile, args.tls, args.server_hostname)
    return demo()
