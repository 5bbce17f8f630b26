"""The command line: ``python -m reactor`` (also installed as ``reactor``).

``serve [ADDRESS ...] [--handler module:Class] [--certfile F --keyfile K] [--workers N]``
    Serve every address from one reactor in one thread (over TLS with a
    certificate chain and its key).  On Ctrl-C or SIGTERM: stop accepting,
    finish the requests in flight (at most ``--grace`` seconds), exit 0.
    With ``--workers N`` (0: one per usable CPU): N processes, each with its
    own reactor, under a supervisor (`reactor.workers`); SIGHUP restarts
    them (each new worker imports the handler anew, so an edited handler
    file is deployed), and the summed counters are printed on exit.  Behind a load
    balancer, ``--proxy-protocol [--trusted-proxy ADDR ...]`` reads the
    client's address from its PROXY header (``docs/deploy.md``).
    ``--handler`` modules are looked up in the current directory first.
``serve ... --control PATH --metrics HOST:PORT``
    Also report the connection table on a Unix socket (mode 0600) that
    ``top`` reads, and serve ``GET /metrics`` (Prometheus text); with
    ``--workers``, for every worker (`reactor.control`).
``top PATH [--once [--json]]``
    The connection table of a serving process, live (`reactor.top`).
``request ADDRESS TEXT [--timeout S] [--cafile F] [--tls] [--server-hostname NAME]``
    Print the reply (over TLS with ``--cafile``, trusting that CA, or with
    ``--tls``, trusting the system's CAs).  ``--timeout 0`` waits as long as
    it takes, as ``do_request`` does; a negative or ``nan`` timeout is a
    usage error.
``demo``
    Two servers on two ports in one thread, answered by ``request``; ends
    on its own.
``--version``
    Print the version and exit.
``bench``
    Moved: the benchmark is not installed with the package.  It prints
    where it went (``python -m benchmarks`` from the root of a checkout,
    ``docs/performance.md``) and exits 2.

Exit status, the same for every command (`EXIT_STATUS` is the text of
``--help``): 0 success; 1 a failure at run time (no reply: a timeout or a
server that closed without replying; a refused or failed connection, an
unresolvable host, a TLS failure; an address ``serve`` cannot listen on; a
graceful shutdown that failed); 2 a usage error (argparse's own, an option
out of range, a malformed address, a ``--handler`` that is not
``module:Class`` or cannot be loaded, unusable certificate files, options
that need each other), found before anything is served; 3 ``serve
--workers`` gave up because no worker could boot; 130 interrupted by Ctrl-C
(``serve`` instead finishes the requests in flight and exits 0; a second
Ctrl-C or SIGTERM during that drain exits at once, 128 + the signal).  A port with a letter in it is
a port name (hashed as yoton does): ``serve`` and ``request`` show the port
it stands for.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import signal
import ssl
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from .addresses import Address, parse_address
from .client import RequestError, do_request
from .core import Reactor
from .framing import MessageTooLarge
from .reqrep import RequestServer, stop_when_drained

__all__ = ["main", "UsageError", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_WORKER_BOOT", "EXIT_INTERRUPTED"]

logger = logging.getLogger("reactor.cli")

#: Success.
EXIT_OK = 0
#: A failure at run time: no reply, a failed connection, an address that cannot be served.
EXIT_FAILURE = 1
#: A usage error (what argparse uses too).
EXIT_USAGE = 2
#: ``serve --workers``: no worker could boot (gunicorn's "Worker failed to boot" status).
EXIT_WORKER_BOOT = 3
#: Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: The exit statuses, as ``--help`` shows them.
#: What ``python -m reactor bench`` prints: the benchmark is a development tool of the repository, not installed.
BENCH_MOVED = (
    "reactor: the benchmark is not part of the installed package; from the root of a checkout of the "
    "repository run `python -m benchmarks [options]` (`pip install -e '.[bench]'` for its load tools; "
    "see docs/performance.md)"
)

EXIT_STATUS = """\
exit status:
  0    success (serve: stopped by Ctrl-C or SIGTERM after finishing the requests in flight)
  1    failure at run time: no reply (timeout, or the server closed without replying),
       connection refused or failed, host not resolved, TLS failure; serve: cannot listen
       (address in use, permission denied)
  2    usage error: bad arguments (a negative, nan or infinite number of seconds), a
       malformed ADDRESS, a --handler that is not module:Class or cannot be loaded
       (its module raises or does not compile), unusable certificate files
  3    serve --workers: no worker could boot (its handler raises when built); the
       listening sockets are closed
  130  interrupted by Ctrl-C (serve: a second Ctrl-C during the drain)
  143  serve: a second SIGTERM during the drain (its requests in flight are closed)
"""


class UsageError(SystemExit):
    """A command-line usage error: the process exits with status 2.

    ``str()`` is the message; `main` prints it under the command's usage line
    (as argparse does for its own usage errors) before it propagates.
    """

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_USAGE)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _load_handler(spec: str) -> type[RequestServer]:
    """Import the ``module:Class`` of ``--handler``, looking in the current directory first.

    The ``reactor`` console script, unlike ``python -m reactor``, does not put
    the current directory on ``sys.path``; so that ``--handler app:Handler``
    finds ``./app.py`` either way, the directory is added (as uvicorn does),
    once, when a handler is loaded.
    """
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name or ":" in class_name:
        raise UsageError(f"--handler {spec!r} is not of the form module:Class (e.g. --handler myapp:EchoServer)")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise UsageError(f"cannot load handler {spec!r}: {_raised(exc)}") from None
        raise UsageError(
            f"cannot load handler {spec!r}: cannot import {module_name!r} ({exc}); give module:Class "
            f"with the module in the current directory ({cwd}) or on sys.path"
        ) from None
    except (Exception, SystemExit) as exc:  # whatever the module's code raises or cannot compile
        raise UsageError(f"cannot load handler {spec!r}: {_raised(exc)}") from None
    try:
        cls: Any = module
        for part in class_name.split("."):
            cls = getattr(cls, part)
    except AttributeError:
        raise UsageError(f"cannot load handler {spec!r}: module {module_name!r} has no {class_name!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, RequestServer)):
        raise UsageError(f"cannot load handler {spec!r}: {class_name} is not a RequestServer subclass")
    return cls


def _raised(exc: BaseException) -> str:
    """``'ZeroDivisionError: division by zero (raised at app.py:3)'``: one line, where it was raised."""
    where = ""
    message = str(exc)
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}:{exc.lineno}"
        message = exc.msg  # str() repeats the file and line
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen ")]
        if frames:
            where = f"{frames[-1].filename}:{frames[-1].lineno}"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"{text} (raised at {where})" if where else text


def _seconds(text: str) -> float:
    """The argparse type of ``--grace`` and ``--timeout``: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text!r}")
    return value


def _worker_option(text: str) -> int:
    """The argparse type of ``--workers``: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: one per usable CPU), got {text!r}")
    return value


def _parse_addresses(addresses: Sequence[str]) -> list[Address]:
    parsed = []
    for address in addresses:
        try:
            parsed.append(parse_address(address))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return parsed


def _port_name_note(given: str, parsed: Address) -> str:
    """``'localhost:8o00 (port name -> port 63421)'`` for a port name, else ``''``."""
    if parsed.port_name is None:
        return ""
    return f"{given} (port name -> port {parsed.port})"


def _server_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    if certfile is None:
        if keyfile is not None:
            raise UsageError("--keyfile needs --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the certificate {certfile!r}: {exc}") from None
    return context


def _proxy_options(proxy_protocol: bool, trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """The RequestServer keywords for ``--proxy-protocol``/``--trusted-proxy`` (checked here, once)."""
    if not proxy_protocol:
        if trusted_proxies:
            raise UsageError("--trusted-proxy needs --proxy-protocol")
        return {}
    from .transport.proxy import TrustedProxies

    trusted = tuple(trusted_proxies) or ("127.0.0.1", "::1")
    try:
        TrustedProxies(trusted)
    except ValueError as exc:
        raise UsageError(f"--trusted-proxy: {exc}") from None
    return {"proxy_protocol": True, "trusted_proxies": trusted}


def _serving_line(name: str, tls: bool, given: str, parsed: Address, bound: str, suffix: str = "") -> str:
    """``serving Echo on 127.0.0.1:8000``; with a port name, what it stands for before the bound address."""
    note = _port_name_note(given, parsed)
    where = f"{note} at {bound}" if note else bound
    return f"serving {name}{' over TLS' if tls else ''} on {where}{suffix}"


def serve(
    addresses: list[str],
    handler: str | None = None,
    grace: float = 10.0,
    verbose: int = 0,
    certfile: str | None = None,
    keyfile: str | None = None,
    proxy_protocol: bool = False,
    trusted_proxies: Sequence[str] = (),
    control: str | None = None,
    metrics: str | None = None,
) -> int:
    """Serve ``addresses`` in this thread until SIGINT/SIGTERM; then drain and return 0.

    Returns 1 if an address cannot be listened on; raises `UsageError` for
    a bad argument (a malformed address, ``--handler``, certificate).
    """
    cls = _load_handler(handler) if handler else RequestServer
    parsed = _parse_addresses(addresses)
    context = _server_context(certfile, keyfile)
    proxy = _proxy_options(proxy_protocol, trusted_proxies)
    with Reactor() as reactor:
        servers: list[RequestServer] = []
        observers: list[Any] = []  # the control socket and the metrics endpoint
        try:
            for address in addresses:
                try:
                    servers.append(cls(address, verbose=verbose, reactor=reactor, ssl=context, **proxy))
                except ValueError as exc:  # e.g. a Unix path too long: the argument's fault
                    raise UsageError(f"cannot listen on {address!r}: {exc}") from None
                except OSError as exc:
                    print(f"reactor serve: cannot listen on {address!r}: {exc}", file=sys.stderr)
                    return EXIT_FAILURE
            for given, parsed_address, server in zip(addresses, parsed, servers, strict=True):
                line = _serving_line(cls.__name__, context is not None, given, parsed_address, server.address)
                print(line, flush=True)
            if not _observe(reactor, observers, control, metrics):
                return EXIT_FAILURE
            status = _ShutdownOnSignals(reactor, lambda: stop_when_drained(reactor, servers, grace))
            reactor.run()
            print("stopped", flush=True)
        finally:
            for server in [*servers, *observers]:
                server.close()
    return status.exit_status


class _ShutdownOnSignals:
    """SIGINT/SIGTERM, handled in the reactor's turns: the first drains, a second exits at once.

    As uvicorn and gunicorn do, an operator who signals again does not wait
    for the drain; the exit status is then 128 + that signal.  If starting
    the drain raises, the error is logged and the reactor stops at once
    (exit 1), so no exception leaves a process that no longer answers
    signals.
    """

    def __init__(self, reactor: Reactor, drain: Callable[[], object]) -> None:
        self.reactor = reactor
        self.drain = drain
        self.draining = False
        #: What `serve` returns once the reactor stopped.
        self.exit_status = EXIT_OK
        for sig in (signal.SIGINT, signal.SIGTERM):
            reactor.add_signal_handler(sig, self.on_signal, sig)

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.draining:
            logger.warning("second %s during the drain: exiting at once, closing the requests in flight", name)
            self.exit_status = 128 + signum
            self.reactor.stop()
            return
        self.draining = True
        logger.info("%s: shutting down: no new connections; finishing requests in flight", name)
        try:
            self.drain()
        except Exception:
            logger.exception("%s: the graceful shutdown failed; exiting at once", name)
            self.exit_status = EXIT_FAILURE
            self.reactor.stop()


def _observe(reactor: Reactor, observers: list[Any], control: str | None, metrics: str | None) -> bool:
    """Serve ``--control`` and ``--metrics`` into ``observers``; False (reported) if one cannot listen."""
    from .control import ControlServer
    from .metrics import serve_metrics

    try:
        if control is not None:
            observers.append(ControlServer(reactor, control))
            print(f"control socket on {control}", flush=True)
        if metrics is not None:
            server = serve_metrics(reactor, metrics)
            observers.append(server)
            print(f"metrics on {server.url}", flush=True)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        print(f"reactor serve: cannot listen: {exc}", file=sys.stderr)
        return False
    return True


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
    control: str | None = None,
    metrics: str | None = None,
) -> int:
    """Serve ``addresses`` from ``workers`` processes under a supervisor until SIGINT/SIGTERM; print totals."""
    from .workers import WorkerBootError, run_workers, worker_count

    name = _check_handler_in_child(handler) if handler else RequestServer.__name__
    parsed = _parse_addresses(addresses)
    context = _server_context(certfile, keyfile)
    proxy = _proxy_options(proxy_protocol, trusted_proxies)
    try:
        count = worker_count(workers)
    except ValueError as exc:
        raise UsageError(f"--workers: {exc}") from None
    logging.getLogger("reactor.workers").setLevel(logging.INFO)

    def build(reactor: Reactor) -> list[Any]:
        # In each new worker: a rolling restart (SIGHUP) loads the handler as it is on disk then.
        cls = _load_handler(handler) if handler else RequestServer
        servers: list[Any] = [
            cls(address, verbose=verbose, reactor=reactor, ssl=context, **proxy) for address in addresses
        ]
        if observed is not None:
            servers.append(observed.serve_worker(reactor))
        return servers

    def listening(bound: list[str]) -> None:
        for given, parsed_address, where in zip(addresses, parsed, bound, strict=False):
            line = _serving_line(name, context is not None, given, parsed_address, where, f" with {count} workers")
            print(line, flush=True)

    observed = None
    if control is not None or metrics is not None:
        from ._workers_control import WorkerObservers

        try:
            observed = WorkerObservers(control, metrics)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            print(f"reactor serve: cannot listen: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        if control is not None:
            print(f"control socket on {control}", flush=True)
        if observed.metrics_url is not None:
            print(f"metrics on {observed.metrics_url}", flush=True)
    try:
        totals = run_workers(
            build, count, addresses=addresses, grace=grace, reuse_port=reuse_port, on_listening=listening
        )
    except WorkerBootError as exc:
        print(f"reactor serve: no worker could boot, giving up: {exc}", file=sys.stderr)
        return EXIT_WORKER_BOOT
    except ValueError as exc:
        raise UsageError(f"cannot listen: {exc}") from None
    except OSError as exc:
        print(f"reactor serve: cannot listen: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if observed is not None:
            observed.close()
    print(
        f"stopped: {totals.get('completed', 0)} requests completed, {totals.get('accepted', 0)} connections "
        f"accepted, {totals.get('errors', 0)} errors, {totals.get('timeouts', 0)} timeouts, "
        f"{totals.get('rejected', 0)} rejected; {totals['workers_started']} workers started, "
        f"{totals['workers_died']} died",
        flush=True,
    )
    return 128 + totals["second_signal"] if totals.get("second_signal") else EXIT_OK


def _check_handler_in_child(spec: str) -> str:
    """Load ``--handler`` in a child process: its class name, or the child's `UsageError`.

    With workers, the supervisor never imports the handler's module: each
    worker does as it starts, so that a rolling restart runs the code as it
    is on disk then (gunicorn without ``--preload``).  This child only checks,
    before anything is bound, that the handler loads.
    """
    from ._workers_control import exit_child

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns

        def check() -> int:
            os.close(read_fd)
            try:
                reply = "ok " + _load_handler(spec).__name__
            except UsageError as exc:
                reply = "error " + exc.message
            data = reply.encode()
            while data:
                data = data[os.write(write_fd, data) :]
            return 0

        exit_child(check)
    os.close(write_fd)
    chunks = []
    try:
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    reply = b"".join(chunks).decode(errors="replace")
    if reply.startswith("ok "):
        return reply[3:]
    if reply.startswith("error "):
        raise UsageError(reply[6:])
    raise UsageError(f"cannot load handler {spec!r}: the process that loads it {_child_status(status)}")


def _child_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def request(
    address: str,
    text: str,
    timeout: float | None,
    cafile: str | None = None,
    tls: bool = False,
    server_hostname: str | None = None,
) -> int:
    """Send one request; print the reply.  Returns 0 on a reply, 1 on any failure to get one.

    The reason of a failure is one line on stderr.  ``timeout``: seconds if
    larger than 0; 0 or None waits as long as it takes.  Raises `UsageError`
    for a malformed address or an unusable ``cafile``.
    """
    (parsed,) = _parse_addresses([address])
    note = _port_name_note(address, parsed)
    if note:
        print(f"reactor request: {note}", file=sys.stderr)
    where = address
    context = None
    if cafile is not None or tls:
        try:
            context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--cafile {cafile!r}: cannot load it: {exc}") from None
    try:
        reply = do_request(address, text, timeout, ssl=context, server_hostname=server_hostname)
    except (MessageTooLarge, UnicodeError) as exc:  # ValueErrors about the reply, not the arguments
        print(f"reactor request: {where}: unusable reply: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (OSError, RequestError) as exc:  # before ValueError: a failed TLS verification is both
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"reactor request: {where}: {reason}", file=sys.stderr)
        return EXIT_FAILURE
    except ValueError as exc:  # e.g. a Unix path too long to connect to
        raise UsageError(str(exc)) from None
    if reply is None:
        print(f"reactor request: no reply from {where} within {timeout} s", file=sys.stderr)
        return EXIT_FAILURE
    print(reply)
    return EXIT_OK


def top(
    path: str,
    once: bool = False,
    as_json: bool = False,
    sort: str = "age",
    filter_text: str = "",
    interval: float = 1.0,
) -> int:
    """Show the connection table behind the control socket ``path``; 1 if it cannot be read."""
    from .top import TopError, run_live, run_once

    if as_json and not once:
        raise UsageError("--json needs --once")
    if not interval > 0:
        raise UsageError(f"--interval must be positive, got {interval!r}")
    try:
        if once:
            print(run_once(path, as_json, sort=sort, filter_text=filter_text))
        else:
            run_live(path, interval, sort=sort, filter_text=filter_text)
    except TopError as exc:
        print(f"reactor top: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


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
    return EXIT_OK


class _VersionAction(argparse.Action):
    """``--version``: print ``reactor X.Y.Z`` and exit 0; the version is read only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from . import __version__

        sys.stdout.write(f"{parser.prog} {__version__}\n")
        parser.exit()


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The argument parser, and its subcommands' parsers by name."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="reactor",
        description="A single-threaded event reactor: request/reply servers and clients.",
        epilog=EXIT_STATUS,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version of selreactor and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser(
        "serve",
        help="serve request/reply on one or more addresses, in one thread",
        description="Serve request/reply on one or more addresses, from one reactor in one thread.",
        epilog=EXIT_STATUS,
        formatter_class=formatter,
    )
    p_serve.add_argument(
        "addresses",
        nargs="*",
        default=["localhost:8000"],
        metavar="ADDRESS",
        help="host:port, [::1]:port or unix:/path (default localhost:8000, this machine only; "
        "0.0.0.0:PORT serves every network interface).  A port with a letter is a port name, "
        "hashed to a port in 49152..65535 as yoton does; the port is shown",
    )
    p_serve.add_argument(
        "--handler",
        metavar="module:Class",
        help="a RequestServer subclass (default: echo 'Requested: ...'); the module is looked up in the "
        "current directory first, then on sys.path",
    )
    p_serve.add_argument(
        "--grace", type=_seconds, default=10.0, help="seconds to finish requests in flight on shutdown"
    )
    p_serve.add_argument("-v", "--verbose", action="count", default=0, help="log each accepted connection")
    p_serve.add_argument("--certfile", help="serve TLS with this certificate chain (PEM)")
    p_serve.add_argument("--keyfile", help="the certificate's private key (PEM; default: in --certfile)")
    p_serve.add_argument(
        "--workers",
        type=_worker_option,
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
    p_serve.add_argument(
        "--control",
        metavar="PATH",
        help="report the connection table on a Unix socket at PATH (mode 0600), for 'reactor top PATH'",
    )
    p_serve.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve GET /metrics (Prometheus text format) on HOST:PORT; times each request",
    )
    p_req = sub.add_parser(
        "request",
        help="send one request and print the reply",
        description="Send one request and print the reply on stdout; a failure is one line on stderr.",
        epilog=EXIT_STATUS,
        formatter_class=formatter,
    )
    p_req.add_argument("address", metavar="ADDRESS", help="host:port, [::1]:port or unix:/path of the server")
    p_req.add_argument("text", metavar="TEXT", help="the request")
    p_req.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        help="seconds to wait for the whole exchange (default 10; 0 waits as long as it takes, as yoton does)",
    )
    p_req.add_argument("--cafile", help="speak TLS, trusting the CA certificates in this PEM file")
    p_req.add_argument("--tls", action="store_true", help="speak TLS, trusting the system's CA certificates")
    p_req.add_argument(
        "--server-hostname", help="the name the server's certificate must carry (default: ADDRESS's host)"
    )
    p_top = sub.add_parser(
        "top",
        help="the connection table of a serving process, live (serve --control PATH)",
        description="The connection table of 'reactor serve --control PATH', live: q quits, s sorts, f filters.",
        epilog=EXIT_STATUS,
        formatter_class=formatter,
    )
    p_top.add_argument("path", metavar="PATH", help="the control socket of 'reactor serve --control PATH'")
    p_top.add_argument("--once", action="store_true", help="print one table and exit (for scripts)")
    p_top.add_argument("--json", action="store_true", help="with --once: print the snapshot as one JSON object")
    p_top.add_argument("--sort", choices=("age", "bytes", "state"), default="age", help="sort the rows by")
    p_top.add_argument("--filter", default="", metavar="TEXT", help="only rows in state TEXT or with TEXT in the peer")
    p_top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p_demo = sub.add_parser("demo", help="two servers on two ports in one thread, answered by request()")
    sub.add_parser("bench", help="moved: run `python -m benchmarks` from a checkout", add_help=False)
    return parser, {"serve": p_serve, "request": p_req, "demo": p_demo, "top": p_top}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m reactor`` and the ``reactor`` script; returns the exit status.

    Usage errors raise `SystemExit` with status 2 after printing the message
    under the usage line, as argparse does (`UsageError` for ours).
    """
    parser, commands = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        print(BENCH_MOVED, file=sys.stderr)
        return EXIT_USAGE
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", 0) else logging.WARNING, format="%(name)s: %(message)s"
    )
    command = commands[args.command]
    try:
        return _run(args, command)
    except UsageError as exc:
        command.print_usage(sys.stderr)
        print(f"{command.prog}: error: {exc}", file=sys.stderr)
        raise
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace, command: argparse.ArgumentParser) -> int:
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
            control=args.control,
            metrics=args.metrics,
        )
    if args.command == "serve":
        if args.reuse_port:
            command.error("--reuse-port needs --workers")
        return serve(
            args.addresses,
            args.handler,
            args.grace,
            args.verbose,
            args.certfile,
            args.keyfile,
            proxy_protocol=args.proxy_protocol,
            trusted_proxies=args.trusted_proxy,
            control=args.control,
            metrics=args.metrics,
        )
    if args.command == "top":
        return top(args.path, args.once, args.json, args.sort, args.filter, args.interval)
    if args.command == "request":
        return request(args.address, args.text, args.timeout, args.cafile, args.tls, args.server_hostname)
    return demo()
