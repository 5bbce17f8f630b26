"""``python -m benchmarks``: this reactor against what users would pick instead.

How the measurement is made, and why
------------------------------------
Each run starts a fresh server process (`benchmarks.servers`) pinned to
one CPU and a load generator pinned to the others (when the machine has two
or more).  The servers alternate, A B C A B C …, ``--repeat`` times, so drift
on a noisy machine (another job, thermal throttling, TIME_WAIT build-up)
lands on all of them alike, and the table reports medians.

Requests per second alone mislead on a small machine: the generator's core
does the client half of every TCP handshake and saturates first, after
which every fast server shows the same rate.  So each row also reports the
server's CPU time per request (utime+stime from ``/proc/<pid>/stat`` over
the run, divided by completed requests) and the generator's own CPU use; a
generator near 1.0 core per process is marked as the bottleneck.

Workloads: one-shot requests at concurrency 1, 16 and 128 (``c1``, ``c16``,
``c128``); ``streams`` (the same load against one coroutine per connection,
``reactor-streams`` on `reactor.start_server` and ``asyncio-streams`` /
``uvloop-streams`` on ``asyncio.start_server``, the same code);
``persistent`` (64 long-lived connections, each sending a line and
waiting for its reply, again and again, against the line servers:
``reactor-lines``, ``asyncio-lines``, ``uvloop-lines``, the counterparts of
the selected ``reactor``, ``asyncio`` and ``uvloop``); ``idle`` (hold 10,000
idle connections: server RSS per connection from ``/proc/<pid>/status``, and
c=16 throughput with and without them; ``reactor-lines`` joins ``reactor``);
``timers`` (1,000,000 timers scheduled and cancelled, reactor vs asyncio);
``embedded`` (the reactor driven from an asyncio loop through ``fileno()``
against the reactor alone, c=16).  ``--soak SECONDS`` runs none of these but
a bounded leak check under steady load (`benchmarks.soak`).

``asynchat``: one classic ``async_chat`` line server (`asynchat_echo`) run on
`reactor.compat` and on the ``pyasyncore``/``pyasynchat`` backports (their
``asyncore.loop(use_poll=True)``), under the persistent load at 64 and at
1,000 connections (recorded as ``asynchat-c64`` and ``asynchat-c1000``), and
at 64 busy connections beside 936 idle ones held open
(``asynchat-c64-idle936``); the two are compared by server CPU per request.

``--tls`` runs the one-shot and persistent workloads over TLS instead
(recorded as ``tls-c16``, ``tls-persistent``, …): a CA and a server
certificate for 127.0.0.1 are made at run time with ``trustme`` in a
temporary directory, every TLS server (`servers.TLS_SERVERS`) loads the same
chain and key into the same kind of context (`servers.server_context`), and
the built-in generator, trusting the CA, speaks TLS (the C one does not).
A TLS one-shot request is a full handshake, so that table also gives
handshakes per second and the server CPU per handshake.

The built-in generator is `benchmarks.loadgen`; ``--loadgen CMD`` runs an
external one that takes the same options and prints the same result line
(the C ``reqrep-load``).  Both spread their source addresses over
127.0.0.2-127.0.0.65 so TIME_WAIT sockets do not exhaust ephemeral ports.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import child_environment
from .loadgen import ERROR_KINDS, parse_line, raise_nofile_limit
from .processes import (
    SRC_IPS,
    ServerProcess,
    WorkersProcess,
    children_cpu_seconds,
    cpu_plan,
    cpus_busy_seconds,
    machine_description,
    markdown_table,
    open_fd_count,
    pin,
    read_line,
    worker_scaling,
)
from .servers import LINE_SERVERS, SERVERS, TLS_SERVERS, available, line_servers, stream_servers

__all__ = ["main", "Options", "run", "format_markdown"]

ONESHOT = {"c1": 1, "c16": 16, "c128": 128}
#: Connections held open by the persistent workload (a constant, like the peers' figures).
PERSISTENT_CONCURRENCY = 64
WORKLOADS = ("c1", "c16", "c128", "persistent", "streams", "idle", "timers", "embedded", "asynchat", "workers")
#: The workers workload: one-shot at this concurrency against ``serve --workers 1`` and ``--workers N``.
WORKERS_CONCURRENCY = 128
#: The asynchat workload: its two servers (package, backport) and its connection counts.
ASYNCHAT_SERVERS = ("asynchat", "asynchat-backport")
#: The asynchat runs: (workload, busy connections, idle connections held open beside them).
#: The third keeps 1,000 connections open of which 64 are busy, where a poll() turn's
#: cost grows with every open connection and an epoll turn's with the busy ones only.
ASYNCHAT_RUNS = (
    ("asynchat-c64", 64, 0),
    ("asynchat-c1000", 1000, 0),
    ("asynchat-c64-idle936", 64, 936),
)
#: The issue's targets: the backport's server CPU per request over ours, at least this.
ASYNCHAT_TARGETS = {"asynchat-c64": 1.0, "asynchat-c1000": 2.0}
DEFAULT_SERVERS = ("reactor", "asyncio", "uvloop", "tcpserver", "threading", "reactor-tcpserver", "reactor-threading")
#: What ``--tls`` runs: the workloads that have a TLS form, and the servers by default.
TLS_WORKLOADS = ("c1", "c16", "c128", "persistent")
TLS_DEFAULT_WORKLOADS = ("c16", "persistent")
TLS_DEFAULT_SERVERS = ("reactor", "asyncio", "uvloop")
#: Servers that serve one connection at a time: a held idle connection stops them.
SEQUENTIAL = frozenset({"tcpserver", "reactor-tcpserver"})
_STARTUP_SECONDS = 0.4  # a server process starting and stopping, for the time-left estimate


@dataclass
class Options:
    """What to run: servers, workloads, durations, repetitions, generator."""

    servers: list[str]
    workloads: list[str]
    duration: float = 5.0
    repeat: int = 3
    idle_connections: int = 10_000
    timers: int = 1_000_000
    loadgen: list[str] | None = None
    processes: int = 1
    retries: int = 2
    max_other_load: float = 0.1
    quiet: bool = False
    notes: list[str] = field(default_factory=list)
    #: ``--soak SECONDS``: run the leak check (`benchmarks.soak`) instead of the comparison.
    soak: float | None = None
    soak_interval: float = 10.0
    soak_rate: float = 400.0
    soak_connections: int = 8
    soak_line_interval: float = 0.005
    #: ``--tls``: the one-shot and persistent workloads over TLS (certificates made by trustme).
    tls: bool = False


@dataclass
class TLSFiles:
    """The run's certificates: the CA the generator trusts, the server's chain and key (PEM files)."""

    ca: str
    chain: str
    key: str

    def server_args(self) -> list[str]:
        """The server command-line options that make it serve TLS with these files."""
        return ["--certfile", self.chain, "--keyfile", self.key]


@contextmanager
def tls_files() -> Iterator[TLSFiles]:
    """A CA and a server certificate (127.0.0.1, localhost) made by trustme, in a temporary directory.

    Nothing is kept: the directory goes when the run ends.
    """
    try:
        import trustme
    except ImportError:
        raise SystemExit("--tls makes its certificates with trustme: pip install 'selreactor[bench]'") from None
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    with tempfile.TemporaryDirectory(prefix="reactor-bench-tls-") as tmp:
        files = TLSFiles(os.path.join(tmp, "ca.pem"), os.path.join(tmp, "chain.pem"), os.path.join(tmp, "key.pem"))
        ca.cert_pem.write_to_path(files.ca)
        with open(files.chain, "wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())
        cert.private_key_pem.write_to_path(files.key)
        yield files


def tls_description(files: TLSFiles) -> str:
    """What the server and generator contexts negotiate (one in-memory handshake): version, cipher, key."""
    import ssl

    from .loadgen import client_context
    from .servers import server_context

    bios = [ssl.MemoryBIO() for _ in range(4)]  # client in, client out, server in, server out
    server = server_context(files.chain, files.key).wrap_bio(bios[2], bios[3], server_side=True)
    client = client_context(files.ca).wrap_bio(bios[0], bios[1], server_hostname="127.0.0.1")
    for _ in range(10):
        done = 0
        for me, outgoing, incoming in ((client, bios[1], bios[2]), (server, bios[3], bios[0])):
            try:
                me.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
            incoming.write(outgoing.read())
        if done == 2:
            break
    cipher = server.cipher()
    key = "trustme's default"
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        with open(files.key, "rb") as f:
            private = load_pem_private_key(f.read(), None)
        if isinstance(private, ec.EllipticCurvePrivateKey):
            key = f"ECDSA {private.curve.name}"
    except ImportError:
        pass
    return f"{server.version()}, {cipher[0] if cipher else '?'}, {key} certificate (trustme), no session resumption"


class Runner:
    """Runs generators against servers and keeps every measurement."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.server_cpus, self.gen_cpus = cpu_plan()
        self.tls: TLSFiles | None = None
        self.runs: list[dict[str, Any]] = []
        self._planned = 0.0
        self._done = 0.0
        self._count = 0
        self._total = 0
        self._started = time.monotonic()

    # -------------------------------------------------------- progress

    def plan(self, seconds: float, runs: int) -> None:
        """Add work to the time-left estimate."""
        self._planned += seconds
        self._total += runs

    def progress(self, what: str, seconds: float) -> None:
        """Announce the next run on stderr, with the time left."""
        self._count += 1
        elapsed = time.monotonic() - self._started
        left = max(0.0, self._planned - self._done)
        if self._done > 0:
            left *= elapsed / self._done  # calibrate the estimate as we go
        if not self.options.quiet:
            sys.stderr.write(f"[{self._count:>3}/{self._total}] {what:<40} ~{_duration(left)} left\n")
            sys.stderr.flush()
        self._done += seconds

    # -------------------------------------------------------- generator

    def generator(self, port: int, *extra: str) -> list[str]:
        """The generator command line for ``port``."""
        if self.options.loadgen:
            base = list(self.options.loadgen)
        else:
            base = [sys.executable, "-m", "benchmarks.loadgen", "--processes", str(self.options.processes)]
        tls = ["--tls-ca", self.tls.ca] if self.tls is not None else []
        return base + ["--port", str(port), *SRC_IPS, "--quiet", *tls, *extra]

    def server(self, kind: str) -> ServerProcess:
        """Start the server ``kind`` (over TLS in a ``--tls`` run), pinned to the server CPU."""
        return ServerProcess(kind, self.server_cpus, self.tls.server_args() if self.tls is not None else ())

    def load(self, server: ServerProcess, concurrency: int, duration: float, mode: str = "oneshot") -> dict[str, Any]:
        """One timed run (``mode`` oneshot or persistent) against ``server``; generator fields plus server CPU."""
        cmd = self.generator(server.port, "--mode", mode, "--concurrency", str(concurrency),
                             "--duration", str(duration))
        if mode == "persistent":
            cmd.append("--check")  # replies pair with requests by position only: verify them
        watched = self.server_cpus | self.gen_cpus if self.server_cpus and self.gen_cpus else None
        busy0, gen0, cpu0 = cpus_busy_seconds(watched), children_cpu_seconds(), server.cpu()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=child_environment())
        pin(proc.pid, self.gen_cpus)
        try:
            out, err = proc.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        wall = time.monotonic() - t0
        cpu = server.cpu() - cpu0
        gen_cpu = children_cpu_seconds() - gen0
        others = cpus_busy_seconds(watched) - busy0 - cpu - gen_cpu
        fields = parse_line(out)
        if fields is None:
            raise RuntimeError(f"the load generator printed no result line: {err.strip()[-500:] or out[-500:]}")
        ok = int(fields.get("ok", 0))
        fields["server_cpu_s"] = cpu
        fields["server_cpu_us_per_req"] = cpu * 1e6 / ok if ok else None
        fields["server_cpu_util"] = cpu / wall if wall > 0 else 0.0
        # CPU that other processes took from the benchmark's CPUs, in cores.
        fields["other_load"] = max(0.0, others / wall) if wall > 0 else 0.0
        return fields

    # -------------------------------------------------------- workloads

    def run_load(self, workload: str, servers: list[str]) -> None:
        """Alternate ``servers`` under the workload's load (one-shot, or persistent) at its concurrency.

        In a ``--tls`` run the workload is recorded as ``tls-<workload>``.
        """
        mode = "persistent" if workload in ("persistent", "streams") else "oneshot"
        concurrency = PERSISTENT_CONCURRENCY if mode == "persistent" else ONESHOT.get(workload, 16)
        if self.tls is not None:
            workload = "tls-" + workload
        duration = self.options.duration
        for rep in range(self.options.repeat):
            for kind in servers:
                self.progress(f"{workload} {kind} (rep {rep + 1}/{self.options.repeat})", duration + _STARTUP_SECONDS)

                def attempt(kind: str = kind) -> dict[str, Any]:
                    with self.server(kind) as server:
                        return self.load(server, concurrency, duration, mode)

                self._measure(workload, kind, rep, attempt)

    def run_asynchat(self, servers: list[str]) -> None:
        """The persistent load on the async_chat servers for each of `ASYNCHAT_RUNS`, alternating."""
        duration = self.options.duration
        for workload, concurrency, idle in ASYNCHAT_RUNS:
            for rep in range(self.options.repeat):
                for kind in servers:
                    self.progress(f"{workload} {kind} (rep {rep + 1}/{self.options.repeat})",
                                  duration + _STARTUP_SECONDS + (5.0 if idle else 0.0))

                    def attempt(kind: str = kind, concurrency: int = concurrency, idle: int = idle) -> dict[str, Any]:
                        with ServerProcess(kind, self.server_cpus) as server:
                            if not idle:
                                return self.load(server, concurrency, duration, "persistent")
                            with self._holding_idle(server, idle) as held:
                                record = self.load(server, concurrency, duration, "persistent")
                            return {**record, "idle_accepted": held["accepted"]}

                    self._measure(workload, kind, rep, attempt)

    def run_idle(self, servers: list[str]) -> None:
        """Per server: c=16 one-shot, then hold N idle connections, measure RSS, c=16 again."""
        n = self.options.idle_connections
        duration = self.options.duration
        for rep in range(self.options.repeat):
            for kind in servers:
                self.progress(f"idle {kind} (rep {rep + 1}/{self.options.repeat})", self._idle_seconds())

                def attempt(kind: str = kind) -> dict[str, Any]:
                    with ServerProcess(kind, self.server_cpus) as server:
                        return self._idle_once(server, n, duration)

                self._measure("idle", kind, rep, attempt)

    def run_workers(self) -> None:
        """One-shot c=128 against ``serve --workers 1`` and ``--workers N``, alternating."""
        duration = self.options.duration
        for rep in range(self.options.repeat):
            for workers in worker_scaling():
                kind = f"workers-{workers}"
                self.progress(f"workers {kind} (rep {rep + 1}/{self.options.repeat})", duration + _STARTUP_SECONDS)

                def attempt(workers: int = workers) -> dict[str, Any]:
                    with WorkersProcess(workers) as server:
                        return self.load(server, WORKERS_CONCURRENCY, duration)

                self._measure("workers", kind, rep, attempt)

    def _measure(self, workload: str, kind: str, rep: int, attempt: Callable[[], dict[str, Any]]) -> None:
        """Run ``attempt``; while other processes took CPU from the run, retry; keep the least disturbed."""
        best: dict[str, Any] | None = None
        for tries in range(1 + self.options.retries):
            try:
                record = attempt()
            except RuntimeError as exc:
                self._failed(workload, kind, rep, exc)
                return
            record["attempts"] = tries + 1
            if best is None or record["other_load"] < best["other_load"]:
                best = record
            if record["other_load"] <= self.options.max_other_load:
                break
            if not self.options.quiet and tries < self.options.retries:
                sys.stderr.write(f"      other processes used {record['other_load']:.2f} cores: again\n")
        assert best is not None
        self.runs.append({"workload": workload, "server": kind, "rep": rep, **best})

    def _idle_seconds(self) -> float:
        return 2 * self.options.duration + _STARTUP_SECONDS + self.options.idle_connections / 8000

    @contextmanager
    def _holding_idle(self, server: ServerProcess, n: int) -> Iterator[dict[str, Any]]:
        """Hold ``n`` idle connections to ``server`` (a generator in idle mode) until the block ends.

        Yields ``established``, ``accepted`` (the server's new descriptors, once
        it has accepted them all or after 30 s) and ``idle_failed``; after the
        block, ``peer_closed`` (connections the server closed) is added.
        """
        fds0 = open_fd_count(server.pid)
        cmd = self.generator(server.port, "--mode", "idle", "--connections", str(n), "--concurrency", "256",
                             "--hold", "3600")
        holder = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=child_environment())
        pin(holder.pid, self.gen_cpus)
        held: dict[str, Any] = {}
        try:
            assert holder.stdout is not None
            ready = parse_line(read_line(holder.stdout, 120.0), prefix="idle-ready") or {}
            established = int(ready.get("established", 0))
            # A connect completes in the kernel's backlog; wait (bounded) until
            # the server has accepted them all.
            deadline = time.monotonic() + 30.0
            while open_fd_count(server.pid) < fds0 + established and time.monotonic() < deadline:
                time.sleep(0.05)
            held.update(established=established, accepted=open_fd_count(server.pid) - fds0,
                        idle_failed=int(ready.get("failed", 0)))
            yield held
        finally:
            if holder.poll() is None:
                holder.send_signal(signal.SIGTERM)
            try:
                out, _ = holder.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                holder.kill()
                out, _ = holder.communicate()
            held["peer_closed"] = (parse_line(out) or {}).get("peer_closed")

    def _idle_once(self, server: ServerProcess, n: int, duration: float) -> dict[str, Any]:
        base = self.load(server, 16, duration)
        rss0 = server.rss()
        with self._holding_idle(server, n) as held:
            time.sleep(0.2)
            rss1 = server.rss()
            loaded = self.load(server, 16, duration)
        accepted = held["accepted"]
        return {
            "connections": n,
            "established": held["established"],
            "accepted": accepted,
            "idle_failed": held["idle_failed"],
            "peer_closed": held["peer_closed"],
            "rss_before": rss0,
            "rss_after": rss1,
            "rss_per_conn": (rss1 - rss0) / accepted if accepted > 0 else None,
            "rps_base": base.get("rps"),
            "rps": loaded.get("rps"),
            "rps_ratio": loaded["rps"] / base["rps"] if base.get("rps") else None,
            "p50_us": loaded.get("p50_us"),
            "p99_us": loaded.get("p99_us"),
            "server_cpu_us_per_req": loaded.get("server_cpu_us_per_req"),
            "server_cpu_us_per_req_base": base.get("server_cpu_us_per_req"),
            "gen_cpu": loaded.get("gen_cpu"),
            "other_load": max(base["other_load"], loaded["other_load"]),
            "errors": int(base.get("errors", 0)) + int(loaded.get("errors", 0)),
            **{f"err_{k}": int(base.get(f"err_{k}", 0)) + int(loaded.get(f"err_{k}", 0)) for k in ERROR_KINDS},
        }

    def run_timers(self) -> None:
        """1,000,000 timers scheduled and cancelled in a pinned subprocess."""
        n = self.options.timers
        repeat = max(1, self.options.repeat)
        self.progress(f"timers ({n:,} scheduled+cancelled)", self._timer_seconds())
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.timers", "--timers", str(n),
                                 "--repeat", str(repeat)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=child_environment())
        pin(proc.pid, self.server_cpus)
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            self._failed("timers", "reactor", 0, RuntimeError(err.strip()[-500:]))
            return
        self.runs.append({"workload": "timers", "server": "reactor/asyncio", "rep": 0, **json.loads(out)})

    def _timer_seconds(self) -> float:
        return self.options.timers / 1e6 * (3.5 * max(1, self.options.repeat) + 6)

    def _failed(self, workload: str, kind: str, rep: int, exc: Exception) -> None:
        message = f"{workload} {kind} rep {rep + 1}: {exc}"
        self.options.notes.append(message)
        sys.stderr.write(f"      failed: {message}\n")
        self.runs.append({"workload": workload, "server": kind, "rep": rep, "failed": str(exc)})


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# ------------------------------------------------------------ orchestration


def run(options: Options) -> dict[str, Any]:
    """Run every selected workload (or, with ``soak`` set, the soak alone); return the JSON-able report."""
    if options.soak is not None:
        from .soak import run_soak

        soak = run_soak(options.soak, interval=options.soak_interval, rate=options.soak_rate,
                        connections=options.soak_connections, line_interval=options.soak_line_interval,
                        quiet=options.quiet)
        soak["notes"] = options.notes + soak["notes"]
        return soak
    if options.tls:
        with tls_files() as files:
            runner = Runner(options)
            runner.tls = files
            description = tls_description(files)
            report = _run(options, runner)
            report["tls"] = description
            return report
    return _run(options, Runner(options))


def _run(options: Options, runner: Runner) -> dict[str, Any]:
    servers = []
    for kind in options.servers:
        reason = available(kind)
        if reason is None and options.tls and kind not in TLS_SERVERS:
            reason = "it has no TLS form (TLS servers: reactor, asyncio, uvloop and their -lines kinds)"
        if reason is None:
            servers.append(kind)
        else:
            options.notes.append(f"{kind} skipped: {reason}")
    oneshot_servers = [k for k in servers if k != "embedded"] if "embedded" not in options.servers else servers
    idle_servers = [k for k in oneshot_servers if k not in SEQUENTIAL]
    if "reactor" in idle_servers and "reactor-lines" not in idle_servers and available("reactor-lines") is None:
        # The stream API's server beside RequestServer: its memory per idle connection is a target too.
        idle_servers.insert(idle_servers.index("reactor") + 1, "reactor-lines")
    persistent_servers: list[str] = []
    if "persistent" in options.workloads:
        for kind in line_servers(servers):
            reason = available(kind)
            if reason is None:
                persistent_servers.append(kind)
            else:
                options.notes.append(f"persistent: {kind} skipped: {reason}")
        if not persistent_servers:
            options.notes.append("persistent: no line server among --servers (reactor, asyncio, uvloop or their "
                                 "-lines kinds)")
    streams_servers: list[str] = []
    if "streams" in options.workloads:
        for kind in stream_servers(servers):
            reason = available(kind)
            if reason is None:
                streams_servers.append(kind)
            else:
                options.notes.append(f"streams: {kind} skipped: {reason}")
        if not streams_servers:
            options.notes.append("streams: no stream server among --servers (reactor, asyncio, uvloop or their "
                                 "-streams kinds)")
    skipped_idle = [k for k in oneshot_servers if k in SEQUENTIAL]
    if "idle" in options.workloads and skipped_idle:
        options.notes.append(f"idle: {', '.join(skipped_idle)} skipped (one connection at a time: "
                             "a held idle connection blocks every other client)")
    embedded_servers = [k for k in ("reactor", "embedded") if available(k) is None]
    asynchat_servers: list[str] = []
    if "asynchat" in options.workloads:
        for kind in ASYNCHAT_SERVERS:
            reason = available(kind)
            if reason is None:
                asynchat_servers.append(kind)
            else:
                options.notes.append(f"asynchat: {kind} skipped: {reason}")
        # The server process inherits this limit: 1,000 connections need more than the usual 1,024 soft limit.
        want = max(busy + idle for _, busy, idle in ASYNCHAT_RUNS) + 256
        if raise_nofile_limit(want) < want:
            options.notes.append(f"asynchat: RLIMIT_NOFILE is below {want}: the 1,000-connection runs may fail")
    if "idle" in options.workloads:
        want = options.idle_connections + 256
        soft = raise_nofile_limit(want)
        if soft < want:
            options.idle_connections = max(100, soft - 256)
            options.notes.append(f"RLIMIT_NOFILE allows {soft} descriptors: idle workload scaled down to "
                                 f"{options.idle_connections} connections")
    if runner.server_cpus is None:
        options.notes.append("fewer than 2 usable CPUs (or no sched_setaffinity): server and generator share CPUs")
    for workload in options.workloads:
        if workload in ONESHOT:
            runner.plan((options.duration + _STARTUP_SECONDS) * len(oneshot_servers) * options.repeat,
                        len(oneshot_servers) * options.repeat)
        elif workload == "persistent":
            runner.plan((options.duration + _STARTUP_SECONDS) * len(persistent_servers) * options.repeat,
                        len(persistent_servers) * options.repeat)
        elif workload == "streams":
            runner.plan((options.duration + _STARTUP_SECONDS) * len(streams_servers) * options.repeat,
                        len(streams_servers) * options.repeat)
        elif workload == "idle":
            runner.plan(runner._idle_seconds() * len(idle_servers) * options.repeat, len(idle_servers) * options.repeat)
        elif workload == "embedded":
            runner.plan((options.duration + _STARTUP_SECONDS) * 2 * options.repeat, 2 * options.repeat)
        elif workload == "timers":
            runner.plan(runner._timer_seconds(), 1)
        elif workload == "asynchat":
            runs = len(asynchat_servers) * len(ASYNCHAT_RUNS) * options.repeat
            runner.plan((options.duration + _STARTUP_SECONDS) * runs, runs)
        elif workload == "workers":
            runner.plan((options.duration + _STARTUP_SECONDS) * 2 * options.repeat, 2 * options.repeat)
    started = time.monotonic()
    for workload in options.workloads:
        if workload in ONESHOT:
            runner.run_load(workload, oneshot_servers)
        elif workload == "persistent":
            runner.run_load(workload, persistent_servers)
        elif workload == "streams":
            runner.run_load(workload, streams_servers)
        elif workload == "idle":
            runner.run_idle(idle_servers)
        elif workload == "embedded":
            runner.run_load("embedded", embedded_servers)
        elif workload == "timers":
            runner.run_timers()
        elif workload == "asynchat":
            runner.run_asynchat(asynchat_servers)
        elif workload == "workers":
            runner.run_workers()
    report: dict[str, Any] = {
        "machine": machine_description(),
        "command": None,
        "options": {
            "servers": options.servers, "workloads": options.workloads, "duration": options.duration,
            "repeat": options.repeat, "idle_connections": options.idle_connections, "timers": options.timers,
            "loadgen": " ".join(options.loadgen) if options.loadgen else "builtin (benchmarks.loadgen)",
            "processes": options.processes,
            "tls": options.tls,
            "server_cpus": sorted(runner.server_cpus) if runner.server_cpus else None,
            "generator_cpus": sorted(runner.gen_cpus) if runner.gen_cpus else None,
        },
        "elapsed_s": round(time.monotonic() - started, 1),
        "runs": runner.runs,
        "notes": options.notes,
    }
    report["summary"] = summarize(runner.runs)
    report["targets"] = targets(report["summary"])
    return report


def _median(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Medians per workload and server: {workload: {server: {field: median}}}."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in runs:
        if "failed" in record:
            continue
        groups.setdefault((record["workload"], record["server"]), []).append(record)
    for (workload, server), records in groups.items():
        if workload == "timers":
            summary[workload] = {server: records[0]}
            continue
        keys = ["rps", "p50_us", "p99_us", "server_cpu_us_per_req", "server_cpu_util", "gen_cpu", "other_load"]
        if workload == "idle":
            keys += ["rss_per_conn", "rps_base", "rps_ratio", "established", "accepted", "server_cpu_us_per_req_base"]
        row: dict[str, Any] = {key: _median([r.get(key) for r in records]) for key in keys}
        row["errors"] = sum(int(r.get("errors", 0)) for r in records)
        row["mismatches"] = sum(int(r.get("mismatches", 0)) for r in records)
        row["errors_by_kind"] = {k: sum(int(r.get(f"err_{k}", 0)) for r in records) for k in ERROR_KINDS}
        row["runs"] = len(records)
        summary.setdefault(workload, {})[server] = row
    return summary


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if a is not None and b else None


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with its measured value and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: float, higher_is_better: bool, detail: str) -> None:
        met = None if value is None else (value >= goal if higher_is_better else value <= goal)
        out.append({"target": name, "value": value, "goal": goal, "met": met, "detail": detail})

    def versus(name: str, mine: dict[str, Any], theirs: dict[str, Any], other: str, goal: float) -> None:
        # When the generator's core saturates, both servers run at the rate it
        # sets and req/s cannot rank them; what one server core can do is then
        # read from server CPU per request (requests per server-CPU-second),
        # the measure the project's performance method prescribes for this case.
        rps = _ratio(mine.get("rps"), theirs.get("rps"))
        cpu = _ratio(theirs.get("server_cpu_us_per_req"), mine.get("server_cpu_us_per_req"))
        saturated = max(mine.get("gen_cpu") or 0, theirs.get("gen_cpu") or 0) >= 0.9
        if saturated and cpu is not None:
            detail = (f"generator saturated (req/s ratio {rps:.3f}x is its rate, not the servers'): "
                      f"judged by server capacity, {other} CPU µs/req / reactor CPU µs/req = {cpu:.2f}x")
            add(name, cpu, goal, True, detail)
        else:
            detail = f"server CPU per request: {other} / reactor = {cpu:.2f}x" if cpu is not None else ""
            add(name, rps, goal, True, detail)

    tls_persistent = summary.get("tls-persistent", {})
    if tls_persistent or any(w.startswith("tls-") for w in summary):
        # Over TLS the built-in generator does the client half of every
        # handshake and record in Python and saturates first: the servers are
        # judged by CPU per request, what one server core can do.
        mine = tls_persistent.get("reactor-lines", {}).get("server_cpu_us_per_req")
        theirs = tls_persistent.get("asyncio-lines", {}).get("server_cpu_us_per_req")
        add("persistent TLS ≥ 1.3× asyncio (server CPU per request)", _ratio(theirs, mine), 1.3, True,
            f"asyncio-lines {_num(theirs, 1)} µs/req / reactor-lines {_num(mine, 1)} µs/req")
        if all(w.startswith("tls-") for w in summary):
            return out
    c16 = summary.get("c16", {})
    for other, goal in (("asyncio", 1.5), ("uvloop", 1.0)):
        versus(f"one-shot c=16 ≥ {goal}× {other}", c16.get("reactor", {}), c16.get(other, {}), other, goal)
    persistent = summary.get("persistent", {})
    for other, goal in (("asyncio", 1.3), ("uvloop", 1.0)):
        versus(f"persistent ≥ {goal}× {other}", persistent.get("reactor-lines", {}),
               persistent.get(f"{other}-lines", {}), other, goal)
    streams = summary.get("streams", {})
    for other, goal in (("asyncio", 1.3), ("uvloop", 1.0)):
        mine = streams.get("reactor-streams", {}).get("server_cpu_us_per_req")
        theirs = streams.get(f"{other}-streams", {}).get("server_cpu_us_per_req")
        add(f"streams ≥ {goal}× {other} (server CPU per request)", _ratio(theirs, mine), goal, True,
            f"{other}-streams {_num(theirs, 1)} µs/req / reactor-streams {_num(mine, 1)} µs/req")
    c1 = summary.get("c1", {})
    add("one-shot c=1 p50 latency ≤ 0.6× asyncio",
        _ratio(c1.get("reactor", {}).get("p50_us"), c1.get("asyncio", {}).get("p50_us")), 0.6, False, "")
    idle = summary.get("idle", {})
    mine, theirs = idle.get("reactor", {}).get("rss_per_conn"), idle.get("asyncio", {}).get("rss_per_conn")
    add("idle: server memory per connection ≤ asyncio's", _ratio(mine, theirs), 1.0, False,
        f"reactor {_bytes(mine)} vs asyncio {_bytes(theirs)} per connection")
    add("idle: one-shot req/s with idle connections ≥ 0.9× idle-free", idle.get("reactor", {}).get("rps_ratio"),
        0.9, True, "")
    lines = idle.get("reactor-lines", {}).get("rss_per_conn")
    add("idle: create_server memory per connection ≤ 1 KiB", _ratio(lines, 1024), 1.0, False,
        f"reactor-lines {_bytes(lines)} per connection")
    embedded = summary.get("embedded", {})
    cpu = _ratio(embedded.get("reactor", {}).get("server_cpu_us_per_req"),
                 embedded.get("embedded", {}).get("server_cpu_us_per_req"))
    add("embedded in asyncio ≥ 0.9× the reactor alone",
        _ratio(embedded.get("embedded", {}).get("rps"), embedded.get("reactor", {}).get("rps")), 0.9, True,
        f"server CPU per request: alone / embedded = {cpu:.2f}x" if cpu is not None else "")
    for workload, concurrency, _ in ASYNCHAT_RUNS:
        target = ASYNCHAT_TARGETS.get(workload)
        if target is None:
            continue
        rows = summary.get(workload, {})
        mine = rows.get("asynchat", {}).get("server_cpu_us_per_req")
        theirs = rows.get("asynchat-backport", {}).get("server_cpu_us_per_req")
        add(f"asynchat c={concurrency} ≥ {target:g}× the backport (server CPU per request)", _ratio(theirs, mine),
            target, True, f"backport {_num(theirs, 1)} µs/req / reactor.compat {_num(mine, 1)} µs/req")
    return out


# ------------------------------------------------------------ output


def _bytes(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) >= 2**20:
        return f"{value / 2**20:,.1f} MiB"
    return f"{value / 1024:,.1f} KiB" if abs(value) >= 1024 else f"{value:,.0f} B"


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _gen(value: Any, procs: int) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" + (" ⚠" if value >= 0.9 * procs else "")


def _errors(row: dict[str, Any]) -> str:
    """Failed requests and wrong replies, with their kinds: ``3 (reset 2, mismatches 1)``."""
    kinds = [f"{k} {v}" for k, v in row.get("errors_by_kind", {}).items() if v]
    if row.get("mismatches"):
        kinds.append(f"mismatches {row['mismatches']}")
    total = int(row.get("errors") or 0) + int(row.get("mismatches") or 0)
    if not total:
        return "0"
    return f"{total} ({', '.join(kinds)})" if kinds else str(total)


def _load_rows(label: str, rows: dict[str, dict[str, Any]], base: Any, procs: int) -> list[list[str]]:
    """Table cells for a load workload's servers; ``base`` is the req/s the × column divides by."""
    return [[
        label, server, _num(row["rps"]),
        f"{_num(_ratio(row['rps'], base), 2)}{'×' if base and row['rps'] else ''}",
        _num(row["p50_us"]), _num(row["p99_us"]), _num(row["server_cpu_us_per_req"], 1),
        f"{_num((row['server_cpu_util'] or 0) * 100)} %", _gen(row["gen_cpu"], procs),
        _num(row["other_load"], 2), _errors(row),
    ] for server, row in rows.items()]


def _handshake_table(summary: dict[str, Any], workloads: list[str], procs: int) -> list[str]:
    """Handshakes per second, measured and per server core, from the TLS one-shot rows (one handshake each)."""
    cells = []
    for workload in workloads:
        rows = summary[workload]
        base = rows.get("asyncio", {}).get("server_cpu_us_per_req")
        for server, row in rows.items():
            cpu = row["server_cpu_us_per_req"]
            cells.append([
                workload.replace("tls-c", "TLS one-shot c="), server, _num(row["rps"]), _num(cpu, 1),
                _num(1e6 / cpu if cpu else None), f"{_num(_ratio(base, cpu), 2)}{'×' if base and cpu else ''}",
                _gen(row["gen_cpu"], procs), _errors(row),
            ])
    header = ["handshakes", "server", "handshakes/s", "server CPU µs/handshake", "handshakes/s on one core",
              "× asyncio (per core)", "gen CPU", "errors"]
    lines = markdown_table(header, "llrrrrrl", cells)
    lines += ["handshakes/s: every TLS one-shot request is one full handshake, so it is the req/s above; "
              "*on one core*: 1,000,000 / server CPU µs per handshake (request included), what the server's one "
              "core would do if the generator kept up.", ""]
    return lines


_ASYNCHAT_HEADER = ["workload", "server", "req/s", "p50 µs", "p99 µs", "server CPU µs/req", "× backport",
                    "server CPU", "gen CPU", "others", "errors"]


def _asynchat_rows(workload: str, rows: dict[str, dict[str, Any]], procs: int) -> list[list[str]]:
    """Table cells for one asynchat workload: each server, and its CPU per request against the backport's."""
    base = rows.get("asynchat-backport", {}).get("server_cpu_us_per_req")
    return [[
        workload.replace("asynchat-c", "asynchat c=").replace("-idle", " +idle "), server, _num(row["rps"]),
        _num(row["p50_us"]),
        _num(row["p99_us"]), _num(row["server_cpu_us_per_req"], 1),
        f"{_num(_ratio(base, row['server_cpu_us_per_req']), 2)}{'×' if base and row['server_cpu_us_per_req'] else ''}",
        f"{_num((row['server_cpu_util'] or 0) * 100)} %", _gen(row["gen_cpu"], procs), _num(row["other_load"], 2),
        _errors(row),
    ] for server, row in rows.items()]


_LOAD_HEADER = ["workload", "server", "req/s", "× asyncio", "p50 µs", "p99 µs", "server CPU µs/req", "server CPU",
                "gen CPU", "others", "errors"]
_SATURATION_NOTE = ("⚠: the generator used ≥ 90 % of its CPU, so it, not the server, set the pace; "
                    "compare server CPU µs/req. *others*: CPU (in cores) that other processes took from the "
                    "benchmark's CPUs during the run.")


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables, one per workload, then the targets (a soak report: `format_soak`)."""
    if "soak" in report:
        from .soak import format_soak

        return format_soak(report)
    summary = report["summary"]
    opts = report["options"]
    procs = int(opts.get("processes") or 1) if opts["loadgen"].startswith("builtin") else 1
    lines: list[str] = []
    m = report["machine"]
    lines.append(f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['python']}, {m['kernel']}. "
                 f"Generator: {opts['loadgen']}. Server on CPU {opts['server_cpus']}, generator on "
                 f"{opts['generator_cpus']}. Medians of {opts['repeat']} alternating runs of {opts['duration']:g} s.")
    lines.append("")
    oneshot = [w for w in ("c1", "c16", "c128") if w in summary]
    if oneshot:
        cells = []
        for workload in oneshot:
            base = summary[workload].get("asyncio", {}).get("rps")
            cells += _load_rows(workload.replace("c", "one-shot c="), summary[workload], base, procs)
        lines += markdown_table(_LOAD_HEADER, "llrrrrrrrrl", cells)
        lines += [_SATURATION_NOTE, ""]
    if "workers" in summary:
        rows = summary["workers"]
        base = rows.get("workers-1", {}).get("rps")
        lines += markdown_table(_LOAD_HEADER, "llrrrrrrrrl", _load_rows("workers c=128", rows, base, procs))
        lines += ["workers: `serve --workers N`, unpinned; × is against one worker; server CPU is the "
                  "supervisor's and its workers' together.", ""]
    if report.get("tls"):
        lines.append(f"TLS: {report['tls']}.")
        lines.append("")
    tls_oneshot = [w for w in ("tls-c1", "tls-c16", "tls-c128") if w in summary]
    if tls_oneshot:
        cells = []
        for workload in tls_oneshot:
            base = summary[workload].get("asyncio", {}).get("rps")
            cells += _load_rows(workload.replace("tls-c", "TLS one-shot c="), summary[workload], base, procs)
        lines += markdown_table(_LOAD_HEADER, "llrrrrrrrrl", cells)
        lines += ["TLS one-shot: connect, full handshake (no session resumption), send the line, read the reply "
                  "to CRLF, close (no half-close over TLS). " + _SATURATION_NOTE, ""]
        lines += _handshake_table(summary, tls_oneshot, procs)
    if "tls-persistent" in summary:
        rows = summary["tls-persistent"]
        base = rows.get("asyncio-lines", {}).get("rps")
        lines += markdown_table(_LOAD_HEADER, "llrrrrrrrrl",
                        _load_rows(f"TLS persistent c={PERSISTENT_CONCURRENCY}", rows, base, procs))
        lines += [f"TLS persistent: {PERSISTENT_CONCURRENCY} connections, each handshakes once, then sends a line "
                  "and waits for its reply, again and again; × asyncio is against asyncio-lines."
                  + ("" if tls_oneshot else " " + _SATURATION_NOTE), ""]
    if "persistent" in summary:
        rows = summary["persistent"]
        base = rows.get("asyncio-lines", {}).get("rps")
        lines += markdown_table(_LOAD_HEADER, "llrrrrrrrrl",
                        _load_rows(f"persistent c={PERSISTENT_CONCURRENCY}", rows, base, procs))
        lines += [f"persistent: {PERSISTENT_CONCURRENCY} connections each send a line and wait for its reply, "
                  "again and again; × asyncio is against asyncio-lines." + ("" if oneshot else " " + _SATURATION_NOTE),
                  ""]
    if "streams" in summary:
        rows = summary["streams"]
        base = rows.get("asyncio-streams", {}).get("rps")
        lines += markdown_table(_LOAD_HEADER, "llrrrrrrrrl",
                        _load_rows(f"streams c={PERSISTENT_CONCURRENCY}", rows, base, procs))
        lines += [f"streams: {PERSISTENT_CONCURRENCY} connections, each served by one coroutine that reads a line "
                  "and writes its reply (the same code on reactor.start_server and asyncio.start_server); "
                  "× asyncio is against asyncio-streams.", ""]
    if "idle" in summary:
        rows = summary["idle"]
        base = rows.get("asyncio", {}).get("rss_per_conn")
        lines += markdown_table(
            [f"idle ({opts['idle_connections']:,} connections)", "server", "accepted", "RSS per connection",
             "× asyncio", "c=16 req/s idle-free", "c=16 req/s with idle", "ratio", "others", "errors"],
            "llrrrrrrrl",
            ([
                "idle", server, _num(row["accepted"]), _bytes(row["rss_per_conn"]),
                _num(_ratio(row["rss_per_conn"], base), 2), _num(row["rps_base"]), _num(row["rps"]),
                _num(row["rps_ratio"], 2), _num(row["other_load"], 2), _errors(row),
            ] for server, row in rows.items()),
        )
    if "embedded" in summary:
        rows = summary["embedded"]
        base = rows.get("reactor", {}).get("rps")
        lines += markdown_table(
            ["embedded (c=16)", "server", "req/s", "× reactor alone", "p50 µs", "server CPU µs/req", "gen CPU",
             "others", "errors"],
            "llrrrrrrl",
            ([
                "embedded", "reactor in asyncio (fileno)" if server == "embedded" else "reactor alone",
                _num(row["rps"]), _num(_ratio(row["rps"], base), 2), _num(row["p50_us"]),
                _num(row["server_cpu_us_per_req"], 1), _gen(row["gen_cpu"], procs), _num(row["other_load"], 2),
                _errors(row),
            ] for server, row in rows.items()),
        )
    if "timers" in summary:
        result = next(iter(summary["timers"].values()))
        secs, peak = result["seconds"], result["peak_bytes"]
        lines += markdown_table(
            [f"timers ({result['timers']:,} scheduled+cancelled)", "reactor", "asyncio", "reactor / asyncio"], "lrrr",
            [["time", f"{secs['reactor']:.2f} s", f"{secs['asyncio']:.2f} s",
              f"{secs['reactor'] / secs['asyncio']:.2f}"],
             ["peak memory (tracemalloc)", _bytes(peak["reactor"]), _bytes(peak["asyncio"]),
              _num(_ratio(peak["reactor"], peak["asyncio"]), 3)]],
        )
    asynchat = [w for w, _, _ in ASYNCHAT_RUNS if w in summary]
    if asynchat:
        lines += markdown_table(_ASYNCHAT_HEADER, "llrrrrrrrrl",
                        [cell for w in asynchat for cell in _asynchat_rows(w, summary[w], procs)])
        lines += ["asynchat: the same async_chat line server on reactor.compat and on the pyasyncore/pyasynchat "
                  "backports (asyncore.loop(use_poll=True)), persistent load; × backport is the backport's server "
                  "CPU per request over this one's (higher is better).", ""]
    if report["targets"]:
        cells = []
        for t in report["targets"]:
            value = "–" if t["value"] is None else f"{t['value']:.3f}×"
            met = "not measured" if t["met"] is None else ("yes" if t["met"] else "**no**")
            detail = f" ({t['detail']})" if t["detail"] and t["value"] is not None else ""
            cells.append([t["target"], value, met + detail])
        lines += markdown_table(["target", "measured", "met"], "lrl", cells)
    for note in report["notes"]:
        lines.append(f"- note: {note}")
    return "\n".join(lines).rstrip() + "\n"


def plot(report: dict[str, Any], path: str) -> None:
    """Draw the comparison to ``path`` (PNG) with matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'selreactor[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    oneshot = [w for w in ("c1", "c16", "c128", "persistent") if w in summary]
    # The persistent rows are the line servers: drawn in the colour of the server they stand for.
    base_kind = {line: kind for kind, line in LINE_SERVERS.items()}
    servers: list[str] = []
    for w in oneshot:
        names = [base_kind.get(s, s) if w == "persistent" else s for s in summary[w]]
        servers += [s for s in names if s not in servers]

    def cell(workload: str, server: str) -> dict[str, Any]:
        rows = summary[workload]
        if workload == "persistent":
            return dict(rows.get(LINE_SERVERS.get(server, server), {}))
        return dict(rows.get(server, {}))
    panels = [p for p in ("rps", "cpu", "latency", "idle") if p != "idle" or "idle" in summary]
    columns = 2 if len(panels) > 1 else 1
    rows_ = (len(panels) + 1) // 2
    fig, grid = plt.subplots(rows_, columns, figsize=(6 * columns, 4.2 * rows_), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for unused in axes[len(panels):]:
        unused.remove()
    axes = axes[: len(panels)]
    width = 0.8 / max(1, len(servers))
    for ax, panel in zip(axes, panels, strict=True):
        if panel in ("rps", "cpu", "latency"):
            key = {"rps": "rps", "cpu": "server_cpu_us_per_req", "latency": "p50_us"}[panel]
            for i, server in enumerate(servers):
                values = [cell(w, server).get(key) or 0 for w in oneshot]
                ax.bar([x + i * width for x in range(len(oneshot))], values, width, label=server)
            ax.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(oneshot))])
            ax.set_xticklabels([f"persistent c={PERSISTENT_CONCURRENCY}" if w == "persistent" else
                                w.replace("c", "c=") for w in oneshot])
            ax.set_title({"rps": "requests/s (higher is better)",
                          "cpu": "server CPU µs per request (lower is better)",
                          "latency": "p50 latency µs (lower is better)"}[panel], fontsize=10)
            if panel == "latency":
                ax.set_yscale("log")
        else:
            rows = summary["idle"]
            names = list(rows)
            ax.bar(names, [(rows[s].get("rss_per_conn") or 0) / 1024 for s in names],
                   color=[f"C{servers.index(s) if s in servers else i}" for i, s in enumerate(names)])
            ax.set_title("RSS per idle connection, KiB (lower is better)", fontsize=10)
            ax.set_yscale("log")
            ax.tick_params(axis="x", labelrotation=30)
    axes[0].legend(fontsize=8)
    m = report["machine"]
    fig.suptitle(f"python -m benchmarks — {m['nproc']} CPUs, {m['python']}, generator: "
                 f"{report['options']['loadgen'].split('/')[-1]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------ command line


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    """Options from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Compare this reactor's RequestServer with asyncio, uvloop and the stdlib socketserver.",
        epilog="workloads: " + ", ".join(WORKLOADS) + " (oneshot = c1,c16,c128; persistent: "
        f"{PERSISTENT_CONCURRENCY} long-lived connections against the line servers); "
        "`python -m benchmarks core [...]` runs the core micro-benchmark, "
        "`python -m benchmarks wait [...]` the epoll/poll wait micro-benchmark.",
    )
    parser.add_argument("--servers", default=None,
                        help=f"comma-separated, from: {', '.join(SERVERS)} (default: all but embedded and the "
                        "-lines kinds; persistent runs the -lines kind of each selected reactor, asyncio, uvloop; "
                        "with --tls: reactor,asyncio,uvloop)")
    parser.add_argument("--workloads", default=None,
                        help=f"comma-separated (default: all; with --tls: {','.join(TLS_DEFAULT_WORKLOADS)})")
    parser.add_argument("--tls", action="store_true",
                        help=f"run {', '.join(TLS_WORKLOADS)} over TLS (certificates made at run time with trustme; "
                        "the built-in generator; reactor, asyncio, uvloop and their -lines servers)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per run (default 5; quick 1)")
    parser.add_argument("--repeat", type=int, default=None, help="alternating repetitions (default 3; quick 1)")
    parser.add_argument("--idle-connections", type=int, default=None, help="default 10000 (quick 2000)")
    parser.add_argument("--timers", type=int, default=None, help="default 1000000 (quick 100000)")
    parser.add_argument("--loadgen", metavar="CMD", help="external generator command (e.g. the C reqrep-load)")
    parser.add_argument("--processes", type=int, default=1, help="built-in generator processes (default 1)")
    parser.add_argument("--retries", type=int, default=None,
                        help="repeat a run disturbed by other processes up to N times (default 2; quick 0)")
    parser.add_argument("--max-other-load", type=float, default=0.1, metavar="CORES",
                        help="CPU other processes may take from the benchmark's CPUs before a run counts as "
                        "disturbed (default 0.1)")
    parser.add_argument("--quick", action="store_true", help="short runs, one repetition: under a minute")
    parser.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the comparison (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--from-json", metavar="FILE", help="print (and --plot) a saved --json report; run nothing")
    soak = parser.add_argument_group(
        "soak", "--soak SECONDS runs a leak check instead of the comparison: one-shot load on `reactor` and "
        "persistent load on `reactor-lines`, sampling each server's RSS and open descriptors")
    soak.add_argument("--soak", type=float, metavar="SECONDS", help="run the soak for SECONDS (e.g. 600)")
    soak.add_argument("--soak-interval", type=float, default=10.0, metavar="SECONDS",
                      help="seconds between samples (default 10)")
    soak.add_argument("--soak-rate", type=float, default=400.0, metavar="N",
                      help="one-shot connections started per second (default 400: TIME_WAIT-safe)")
    soak.add_argument("--soak-connections", type=int, default=8, metavar="N",
                      help="persistent connections (default 8)")
    soak.add_argument("--soak-line-interval", type=float, default=0.005, metavar="SECONDS",
                      help="pause of each persistent connection between a reply and its next line (default 0.005)")
    args = parser.parse_args(argv)
    if args.tls and args.loadgen:
        parser.error("--tls needs the built-in generator (the C reqrep-load does not speak TLS): drop --loadgen")
    if args.tls and args.soak is not None:
        parser.error("--tls and --soak do not go together: the soak has no TLS form")
    if args.workloads is None:
        args.workloads = ",".join(TLS_DEFAULT_WORKLOADS if args.tls else WORKLOADS)
    if args.servers is None:
        args.servers = ",".join(TLS_DEFAULT_SERVERS if args.tls else DEFAULT_SERVERS)
    workloads: list[str] = []
    for name in args.workloads.split(","):
        name = name.strip()
        names = list(ONESHOT) if name == "oneshot" else [name]
        for w in names:
            if w not in WORKLOADS:
                parser.error(f"unknown workload {w!r}; choose from {', '.join(WORKLOADS)}, oneshot")
            if args.tls and w not in TLS_WORKLOADS:
                parser.error(f"workload {w!r} has no TLS form; with --tls choose from {', '.join(TLS_WORKLOADS)}, "
                             "oneshot")
            if w not in workloads:
                workloads.append(w)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in SERVERS:
            parser.error(f"unknown server {s!r}; choose from {', '.join(SERVERS)}")
    quick = args.quick
    options = Options(
        servers=servers,
        workloads=workloads,
        duration=args.duration if args.duration is not None else (1.0 if quick else 5.0),
        repeat=args.repeat if args.repeat is not None else (1 if quick else 3),
        idle_connections=args.idle_connections if args.idle_connections is not None else (2000 if quick else 10_000),
        timers=args.timers if args.timers is not None else (100_000 if quick else 1_000_000),
        loadgen=shlex.split(args.loadgen) if args.loadgen else None,
        processes=max(1, args.processes),
        retries=max(0, args.retries if args.retries is not None else (0 if quick else 2)),
        max_other_load=args.max_other_load,
        quiet=args.quiet,
        tls=args.tls,
    )
    if options.duration <= 0 or options.repeat < 1:
        parser.error("--duration must be positive and --repeat at least 1")
    if args.soak is not None:
        if args.soak <= 0 or args.soak_interval <= 0 or args.soak_rate < 0 or args.soak_connections < 0 \
                or args.soak_line_interval < 0:
            parser.error("--soak and --soak-interval must be positive; rate, connections and line interval ≥ 0")
        if args.plot:
            parser.error("--plot draws the comparison; a soak has none")
        options.soak = args.soak
        options.soak_interval = args.soak_interval
        options.soak_rate = args.soak_rate
        options.soak_connections = args.soak_connections
        options.soak_line_interval = args.soak_line_interval
        if options.loadgen:
            options.notes.append("--loadgen ignored: the soak uses the built-in generator's soak mode")
    return options, args


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks [options]``; ``core [...]`` and ``wait [...]`` run the micro-benchmarks."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "core":
        from .core import main as core_main

        return core_main(argv[1:])
    if argv and argv[0] == "wait":
        from .wait import main as wait_main

        return wait_main(argv[1:])
    options, args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            report = json.load(f)
        if "soak" not in report:
            report["summary"] = summarize(report["runs"])
            report["targets"] = targets(report["summary"])
    else:
        report = run(options)
        report["command"] = "python -m benchmarks " + " ".join(shlex.quote(a) for a in argv)
    sys.stdout.write(format_markdown(report))
    sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.plot and "soak" not in report:
        plot(report, args.plot)
    return 0
