"""``python -m benchmarks --soak SECONDS``: a bounded leak check under steady load.

Two server processes, both pinned to the server CPU: ``reactor``
(`RequestServer`) takes one-shot requests at a TIME_WAIT-safe rate (400 new
connections a second by default), and ``reactor-lines`` (``create_server`` +
``LineProtocol``) takes a handful of persistent connections, each sending a
line every few milliseconds.  Separate processes, so a leak is pinned on
the API that has it, and each one is exactly the server the other workloads
measure.  The built-in generator drives both from one process
(``python -m benchmarks.loadgen --mode soak``) on the generator CPUs and
prints a ``soak-progress`` line every ``--soak-interval`` seconds; on each
line the runner samples every server's VmRSS (``/proc/<pid>/status``),
open descriptors (``/proc/<pid>/fd``) and CPU time.

The report gives, per server: requests served, errors (failures and wrong
replies, by kind), server CPU, RSS and descriptor counts first and last, and
their least-squares slopes per minute, over all samples and over the second
half of the run (after warm-up: a leak keeps its slope there, a cache that
fills up does not).  Flat is the target.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from . import child_environment
from .loadgen import ERROR_KINDS, parse_line
from .processes import (
    SRC_IPS,
    ServerProcess,
    cpu_plan,
    machine_description,
    markdown_table,
    open_fd_count,
    pin,
    process_cpu_seconds,
    process_rss_bytes,
)

__all__ = ["SOAK_SERVERS", "format_soak", "run_soak", "slope_per_minute"]

#: server kind -> the load it takes in a soak.
SOAK_SERVERS = {"reactor": "oneshot", "reactor-lines": "persistent"}
_LINGER = 0.5  # the generator holds its persistent connections this long after its last progress line


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of ``(seconds, value)`` points, per minute; None for fewer than two times."""
    n = len(points)
    if n < 2:
        return None
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    sxy = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return sxy / sxx * 60.0


class _Lines:
    """Lines from a child's pipe, each wait bounded (a child's buffered output is never stranded)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.eof = False

    def read(self, seconds: float) -> str:
        """The next line, or '' after ``seconds`` or at EOF."""
        import selectors

        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as sel:
            sel.register(self.fd, selectors.EVENT_READ)
            while b"\n" not in self.buffer and not self.eof:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return ""
                chunk = os.read(self.fd, 65536)
                self.eof = not chunk
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode(errors="replace")


def _sample(servers: dict[str, ServerProcess], t: float, progress: dict[str, Any]) -> dict[str, Any]:
    sample: dict[str, Any] = {"t": round(t, 3), "gen_t": progress.get("t"),
                              "oneshot_ok": progress.get("oneshot_ok", 0),
                              "persistent_ok": progress.get("persistent_ok", 0),
                              "errors": progress.get("errors", 0)}
    for kind, server in servers.items():
        sample[kind] = {"rss": process_rss_bytes(server.pid), "fds": open_fd_count(server.pid),
                        "cpu_s": process_cpu_seconds(server.pid)}
    return sample


def _server_summary(kind: str, samples: list[dict[str, Any]], generator: dict[str, Any],
                    seconds: float) -> dict[str, Any]:
    load = SOAK_SERVERS[kind]
    first, last = samples[0], samples[-1]
    half = [s for s in samples if s["t"] >= last["t"] / 2]
    wall = last["t"] - first["t"]
    requests = int(generator.get(f"{load}_ok", last[f"{load}_ok"]))
    row: dict[str, Any] = {
        "load": load,
        "requests": requests,
        "rps": requests / seconds if seconds > 0 else None,
        "errors": int(generator.get(f"{load}_errors", 0)) + int(generator.get(f"{load}_mismatches", 0)),
        "errors_by_kind": {k: int(generator.get(f"{load}_err_{k}", 0)) for k in ERROR_KINDS},
        "mismatches": int(generator.get(f"{load}_mismatches", 0)),
        "server_cpu_util": (last[kind]["cpu_s"] - first[kind]["cpu_s"]) / wall if wall > 0 else None,
    }
    for key in ("rss", "fds"):
        row[f"{key}_first"] = first[kind][key]
        row[f"{key}_last"] = last[kind][key]
        row[f"{key}_min"] = min(s[kind][key] for s in samples)
        row[f"{key}_max"] = max(s[kind][key] for s in samples)
        row[f"{key}_slope_per_min"] = slope_per_minute([(s["t"], s[kind][key]) for s in samples])
        row[f"{key}_slope_per_min_2nd_half"] = slope_per_minute([(s["t"], s[kind][key]) for s in half])
    return row


def run_soak(seconds: float, *, interval: float = 10.0, rate: float = 400.0, connections: int = 8,
             line_interval: float = 0.005, quiet: bool = False) -> dict[str, Any]:
    """Run the soak; return the JSON-able report (``soak`` holds the samples and the per-server summary)."""
    server_cpus, gen_cpus = cpu_plan()
    notes: list[str] = []
    if server_cpus is None:
        notes.append("fewer than 2 usable CPUs (or no sched_setaffinity): servers and generator share CPUs")
    started = time.monotonic()
    samples: list[dict[str, Any]] = []
    generator: dict[str, Any] = {}
    with ServerProcess("reactor", server_cpus) as oneshot, ServerProcess("reactor-lines", server_cpus) as lines:
        servers = {"reactor": oneshot, "reactor-lines": lines}
        cmd = [sys.executable, "-m", "benchmarks.loadgen", "--mode", "soak", "--port", str(oneshot.port),
               "--lines-port", str(lines.port), *SRC_IPS, "--concurrency", str(connections),
               "--duration", str(seconds), "--rate", str(rate), "--line-interval", str(line_interval),
               "--progress-interval", str(interval), "--quiet"]
        with tempfile.TemporaryFile(mode="w+") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                    env=child_environment())
            pin(proc.pid, gen_cpus)
            assert proc.stdout is not None
            reader = _Lines(proc.stdout.fileno())
            # Start-up and warm-up, the run, the drain, the linger: all bounded.
            deadline = time.monotonic() + seconds + 60.0
            t0: float | None = None
            try:
                while True:
                    line = reader.read(max(0.0, min(deadline - time.monotonic(), interval + 30.0)))
                    if not line:
                        notes.append("the generator stopped without its result line" if reader.eof else
                                     "the generator went quiet: soak cut short")
                        break
                    progress = parse_line(line, prefix="soak-progress")
                    if progress is not None:
                        now = time.monotonic()
                        t0 = now if t0 is None else t0
                        try:
                            sample = _sample(servers, now - t0, progress)
                        except OSError as exc:  # a server process has gone
                            notes.append(f"sampling failed: {exc}")
                            break
                        samples.append(sample)
                        if not quiet:
                            cells = ", ".join(f"{k} RSS {sample[k]['rss'] / 1024:,.0f} KiB fds {sample[k]['fds']}"
                                              for k in servers)
                            sys.stderr.write(f"[soak] t={sample['t']:>7.1f} s  {cells}, requests "
                                             f"{sample['oneshot_ok']:,} + {sample['persistent_ok']:,}, "
                                             f"errors {sample['errors']}\n")
                            sys.stderr.flush()
                        continue
                    result = parse_line(line)
                    if result is not None and result.get("mode") == "soak":
                        generator = result
                        break
            finally:
                if proc.poll() is None:
                    try:
                        proc.wait(_LINGER + 10.0)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                proc.stdout.close()
                err.seek(0)
                trouble = err.read().strip()
            if proc.returncode not in (0, None) and trouble:
                notes.append(f"generator: {trouble[-300:]}")
        for kind, server in servers.items():
            if server.proc.poll() is not None:
                notes.append(f"server {kind} exited ({server.proc.returncode}): {server.errors()}")
    run_seconds = float(generator.get("secs", samples[-1]["t"] if samples else 0.0))
    summary = {kind: _server_summary(kind, samples, generator, run_seconds) for kind in SOAK_SERVERS} \
        if samples else {}
    return {
        "machine": machine_description(),
        "command": None,
        "options": {
            "soak": seconds, "soak_interval": interval, "soak_rate": rate, "soak_connections": connections,
            "soak_line_interval": line_interval, "loadgen": "builtin (benchmarks.loadgen --mode soak)",
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "generator_cpus": sorted(gen_cpus) if gen_cpus else None,
        },
        "elapsed_s": round(time.monotonic() - started, 1),
        "runs": [],
        "notes": notes,
        "summary": {},
        "targets": [],
        "soak": {"seconds": run_seconds, "servers": summary, "samples": samples, "generator": generator},
    }


# ------------------------------------------------------------ output


def _kib(value: float | None) -> str:
    return "–" if value is None else f"{value / 1024:,.0f} KiB"


def _slope(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "KiB":
        return f"{value / 1024:+,.1f} KiB/min"
    return f"{value:+.2f}/min"


def _errors_cell(row: dict[str, Any]) -> str:
    kinds = [f"{k} {v}" for k, v in row["errors_by_kind"].items() if v]
    if row["mismatches"]:
        kinds.append(f"mismatches {row['mismatches']}")
    return f"{row['errors']} ({', '.join(kinds)})" if kinds else str(row["errors"])


def format_soak(report: dict[str, Any]) -> str:
    """The soak report as Markdown: the per-server summary, then the samples."""
    soak, opts, m = report["soak"], report["options"], report["machine"]
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['python']}, {m['kernel']}. Servers on CPU "
        f"{opts['server_cpus']}, generator ({opts['loadgen']}) on {opts['generator_cpus']}. "
        f"Soak of {soak['seconds']:g} s: one-shot requests started at {opts['soak_rate']:g}/s against `reactor`, "
        f"{opts['soak_connections']} persistent connections (a line {opts['soak_line_interval'] * 1000:g} ms "
        f"after each reply) against `reactor-lines`; a sample every {opts['soak_interval']:g} s.",
        "",
    ]
    rows = soak["servers"]
    if rows:
        lines += markdown_table(
            [f"soak ({soak['seconds']:g} s)", "server", "requests", "req/s", "errors", "server CPU", "RSS first",
             "RSS last", "RSS slope", "RSS slope, 2nd half", "fds first", "fds last", "fds slope",
             "fds slope, 2nd half"],
            "llrrlrrrrrrrrr",
            ([
                row["load"], server, f"{row['requests']:,}", "–" if row["rps"] is None else f"{row['rps']:,.0f}",
                _errors_cell(row),
                "–" if row["server_cpu_util"] is None else f"{row['server_cpu_util'] * 100:.1f} %",
                _kib(row["rss_first"]), _kib(row["rss_last"]), _slope(row["rss_slope_per_min"], "KiB"),
                _slope(row["rss_slope_per_min_2nd_half"], "KiB"), str(row["fds_first"]), str(row["fds_last"]),
                _slope(row["fds_slope_per_min"], ""), _slope(row["fds_slope_per_min_2nd_half"], ""),
            ] for server, row in rows.items()),
        )
        lines += ["Slopes: least squares over the samples, per minute; *2nd half*: over the samples of the run's "
                  "second half, after warm-up. Flat is the target.", ""]
    samples = soak["samples"]
    if samples:
        kinds = [k for k in SOAK_SERVERS if k in samples[0]]
        header = ["t s"]
        for kind in kinds:
            header += [f"{kind} RSS", f"{kind} fds"]
        header += ["one-shot requests", "persistent requests", "errors"]
        lines += markdown_table(header, "r" * len(header), ([
            f"{s['t']:.1f}", *[cell for k in kinds for cell in (_kib(s[k]["rss"]), str(s[k]["fds"]))],
            f"{s['oneshot_ok']:,}", f"{s['persistent_ok']:,}", str(s["errors"]),
        ] for s in samples))
    for note in report["notes"]:
        lines.append(f"- note: {note}")
    return "\n".join(lines).rstrip() + "\n"
