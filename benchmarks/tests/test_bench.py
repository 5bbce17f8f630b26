"""The benchmark harness: generator result lines, the servers it compares, a quick run."""

from __future__ import annotations

import io
import json
import math
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from benchmarks import REPOSITORY, loadgen
from benchmarks.runner import _errors, format_markdown, summarize, targets
from benchmarks.servers import LINE_SERVERS, SERVERS, STREAM_SERVERS, available, line_servers, stream_servers
from benchmarks.soak import slope_per_minute

C_LINE = (
    "reqrep-load: mode=oneshot conc=16 ok=120495 errors=3 mismatches=0 secs=2.00 rps=60245 "
    "p50_us=249.4 p90_us=283.7 p99_us=508.0 p999_us=1419.5 max_us=24558.0 mean_us=263.8 err_refused=1 "
    "err_reset=2 err_timeout=0 err_addrnotavail=0 err_eof=0 err_overflow=0 err_other=0 over_1s=0 "
    "gen_cpu=0.97 time_wait_end=131072 check=1"
)


def _raw(ok: int, histogram: dict[int, int], *, conc: int = 8, reset: int = 0) -> dict[str, object]:
    errors = dict.fromkeys(loadgen.ERROR_KINDS, 0)
    errors["reset"] = reset
    return {"mode": "oneshot", "conc": conc, "ok": ok, "mismatches": 0, "secs": 2.0, "cpu": 1.0, "wall": 2.0,
            "errors": errors, "histogram": histogram, "procs": 1}


@contextmanager
def bench_server(kind: str) -> Iterator[int]:
    """Run ``python -m benchmarks.servers KIND``; yield its port; stop it."""
    with subprocess.Popen([sys.executable, "-m", "benchmarks.servers", kind], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=REPOSITORY) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("port="), (line, proc.stderr.read() if proc.stderr else "")
            yield int(line.split()[0].split("=")[1])
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
    assert proc.returncode in (0, -15), proc.returncode


def ask(port: int, payload: bytes) -> bytes:
    """One one-shot exchange: send, half-close, read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------ result lines


def report_of(summary: dict[str, Any], **options: Any) -> dict[str, Any]:
    """A report as `run` makes it, around ``summary``, on a made-up machine; ``options`` override the run's."""
    opts = {"loadgen": "./reqrep-load", "processes": 1, "server_cpus": [0], "generator_cpus": [1],
            "repeat": 1, "duration": 3.0, "idle_connections": 10}
    return {"summary": summary, "targets": targets(summary), "notes": [],
            "machine": {"nproc": 2, "cpu_model": "x", "python": "CPython", "kernel": "Linux"},
            "options": {**opts, **options}}


def test_parse_line_reads_the_c_generator_line() -> None:
    """The C generator's result line parses into numbers by key."""
    fields = loadgen.parse_line("some stderr noise\n" + C_LINE + "\n")
    assert fields is not None
    assert fields["mode"] == "oneshot" and fields["ok"] == 120495 and fields["rps"] == 60245
    assert fields["p50_us"] == 249.4 and fields["err_reset"] == 2 and fields["gen_cpu"] == 0.97


def test_parse_line_picks_the_idle_ready_line() -> None:
    """The idle announcement is found by its prefix, and result lines are not confused with it."""
    out = "reqrep-load: idle-ready established=9998 failed=2 connect_secs=1.20\n"
    assert loadgen.parse_line(out, prefix="idle-ready") == {"established": 9998, "failed": 2, "connect_secs": 1.2}
    assert loadgen.parse_line(out) is None


def test_percentile_of_a_histogram() -> None:
    """Percentiles come from a {µs: count} histogram, nearest rank."""
    histogram = {10: 50, 20: 49, 1000: 1}
    assert loadgen.percentile(histogram, 0.5) == 10.0
    assert loadgen.percentile(histogram, 0.99) == 20.0
    assert loadgen.percentile(histogram, 1.0) == 1000.0
    assert loadgen.percentile({}, 0.5) == 0.0


def test_aggregate_adds_up_processes() -> None:
    """Several generator processes add their requests, errors and histograms."""
    total = loadgen.aggregate([_raw(100, {10: 100}), _raw(300, {30: 300}, reset=2)])
    assert total["ok"] == 400 and total["conc"] == 16 and total["procs"] == 2
    assert total["errors"]["reset"] == 2 and total["histogram"] == {10: 100, 30: 300}
    fields = loadgen.summarize(total)
    assert fields["rps"] == 200 and fields["p50_us"] == 30.0 and fields["errors"] == 2
    assert fields["gen_cpu"] == 1.0


def test_format_line_round_trips_through_parse_line() -> None:
    """What the built-in generator prints is what the runner parses."""
    fields = loadgen.summarize(_raw(50, {"7": 50}))  # type: ignore[dict-item]
    assert loadgen.parse_line(loadgen.format_line(fields)) == fields


def test_markdown_and_targets_from_runs() -> None:
    """Medians per server become table rows with ratios against asyncio, and targets are judged."""
    runs = []
    for rep, (mine, theirs) in enumerate([(30000, 10000), (32000, 11000), (31000, 50)]):
        runs.append({"workload": "c16", "server": "reactor", "rep": rep, "rps": mine, "p50_us": 300.0,
                     "p99_us": 500.0, "server_cpu_us_per_req": 20.0, "server_cpu_util": 0.6, "gen_cpu": 0.99,
                     "errors": 0, "other_load": 0.0})
        runs.append({"workload": "c16", "server": "asyncio", "rep": rep, "rps": theirs, "p50_us": 900.0,
                     "p99_us": 1500.0, "server_cpu_us_per_req": 45.0, "server_cpu_util": 0.9, "gen_cpu": 0.5,
                     "errors": 1, "err_reset": 1, "other_load": 0.0})
    summary = summarize(runs)
    assert summary["c16"]["reactor"]["rps"] == 31000 and summary["c16"]["asyncio"]["rps"] == 10000
    judged = {t["target"]: t for t in targets(summary)}
    versus_asyncio = judged["one-shot c=16 ≥ 1.5× asyncio"]
    assert versus_asyncio["met"] is True
    # the reactor's generator was saturated: judged by CPU per request, 45 / 20
    assert versus_asyncio["value"] == 2.25 and "capacity" in versus_asyncio["detail"]
    assert judged["one-shot c=16 ≥ 1.0× uvloop"]["met"] is None
    report = report_of(summary, loadgen="builtin", repeat=3, duration=5.0, idle_connections=10000)
    table = format_markdown(report)
    assert "| one-shot c=16 | reactor | 31,000 | 3.10× |" in table
    assert "3 (reset 3)" in table and "0.99 ⚠" in table


def _persistent_runs(reactor_row: dict[str, object], asyncio_row: dict[str, object],
                     uvloop_row: dict[str, object]) -> list[dict[str, object]]:
    base = {"workload": "persistent", "rep": 0, "p50_us": 400.0, "p99_us": 600.0, "server_cpu_util": 1.0,
            "errors": 0, "mismatches": 0, "other_load": 0.0}
    return [{**base, "server": "reactor-lines", **reactor_row}, {**base, "server": "asyncio-lines", **asyncio_row},
            {**base, "server": "uvloop-lines", **uvloop_row}]


def test_persistent_targets_follow_the_generator() -> None:
    """Persistent targets use req/s while the generator has headroom, server CPU per request once it saturates."""
    runs = _persistent_runs({"rps": 150_000, "server_cpu_us_per_req": 6.0, "gen_cpu": 0.6},
                            {"rps": 100_000, "server_cpu_us_per_req": 9.0, "gen_cpu": 0.5},
                            {"rps": 160_000, "server_cpu_us_per_req": 5.0, "gen_cpu": 0.7})
    judged = {t["target"]: t for t in targets(summarize(runs))}
    versus_asyncio, versus_uvloop = judged["persistent ≥ 1.3× asyncio"], judged["persistent ≥ 1.0× uvloop"]
    assert versus_asyncio["value"] == 1.5 and versus_asyncio["met"] is True
    assert "asyncio / reactor = 1.50x" in versus_asyncio["detail"]
    assert versus_uvloop["value"] == 150_000 / 160_000 and versus_uvloop["met"] is False
    saturated = _persistent_runs({"rps": 90_000, "server_cpu_us_per_req": 5.0, "gen_cpu": 0.97},
                                 {"rps": 80_000, "server_cpu_us_per_req": 10.0, "gen_cpu": 0.8},
                                 {"rps": 90_000, "server_cpu_us_per_req": 4.0, "gen_cpu": 0.95})
    judged = {t["target"]: t for t in targets(summarize(saturated))}
    versus_asyncio, versus_uvloop = judged["persistent ≥ 1.3× asyncio"], judged["persistent ≥ 1.0× uvloop"]
    assert versus_asyncio["value"] == 2.0 and "capacity" in versus_asyncio["detail"]
    assert versus_uvloop["value"] == 0.8 and versus_uvloop["met"] is False


def test_persistent_table_and_idle_target() -> None:
    """The persistent table compares with asyncio-lines; create_server's idle memory is judged against 1 KiB."""
    runs = _persistent_runs({"rps": 150_000, "server_cpu_us_per_req": 6.0, "gen_cpu": 0.6, "mismatches": 2},
                            {"rps": 100_000, "server_cpu_us_per_req": 9.0, "gen_cpu": 0.5},
                            {"rps": 160_000, "server_cpu_us_per_req": 5.0, "gen_cpu": 0.7})
    runs.append({"workload": "idle", "server": "reactor-lines", "rep": 0, "rss_per_conn": 800.0, "errors": 0,
                 "other_load": 0.0, "rps_base": 1.0, "rps": 1.0, "rps_ratio": 1.0, "accepted": 10})
    summary = summarize(runs)
    report = report_of(summary)
    table = format_markdown(report)
    assert "| persistent c=64 | reactor-lines | 150,000 | 1.50× | 400 | 600 | 6.0 | 100 % | 0.60 |" in table
    assert "| persistent c=64 | uvloop-lines | 160,000 | 1.60× |" in table
    assert "| 2 (mismatches 2) |" in table
    judged = {t["target"]: t for t in report["targets"]}
    idle = judged["idle: create_server memory per connection ≤ 1 KiB"]
    assert idle["met"] is True and idle["value"] == 800 / 1024 and "800 B" in idle["detail"]


def test_errors_cell_counts_mismatches() -> None:
    """The errors cell adds wrong replies to failed requests and names both."""
    assert _errors({"errors": 0, "mismatches": 0}) == "0"
    assert _errors({"errors": 3, "errors_by_kind": {"reset": 3}, "mismatches": 1}) == "4 (reset 3, mismatches 1)"


def test_line_servers_are_the_counterparts_of_the_selected_kinds() -> None:
    """The persistent workload runs the -lines kind of reactor, asyncio and uvloop, and any -lines kind named."""
    assert line_servers(["reactor", "asyncio", "uvloop", "tcpserver"]) == ["reactor-lines", "asyncio-lines",
                                                                          "uvloop-lines"]
    assert line_servers(["asyncio-lines", "asyncio", "threading"]) == ["asyncio-lines"]
    assert line_servers(["tcpserver"]) == []
    assert set(LINE_SERVERS.values()) <= set(SERVERS)


# ------------------------------------------------------------ the servers


SERVER_KINDS = [pytest.param(kind, marks=pytest.mark.skipif(available(kind) is not None, reason=str(available(kind))))
                for kind in SERVERS]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_every_server_answers_the_one_shot_protocol(kind: str) -> None:
    """Each compared server answers 'ping' with 'Requested: ping\\r\\n', terminated by CRLF or by EOF."""
    with bench_server(kind) as port:
        assert ask(port, b"ping\r\n") == b"Requested: ping\r\n"
        assert ask(port, "pïng".encode()) == "Requested: pïng\r\n".encode()


LINE_KINDS = [pytest.param(kind, marks=pytest.mark.skipif(available(kind) is not None, reason=str(available(kind))))
              for kind in [*LINE_SERVERS.values(), *STREAM_SERVERS.values()]]


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", LINE_KINDS)
def test_line_servers_answer_every_line_of_a_connection(kind: str) -> None:
    """A line server replies to each line, also to lines split over writes, and to a last line at EOF."""
    with bench_server(kind) as port, socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for sent, wanted in [(b"a\r\nbb\r\nc", b"Requested: a\r\nRequested: bb\r\n"),
                             (b"c\r", b""), (b"\n", b"Requested: cc\r\n")]:
            sock.sendall(sent)
            assert _read_exactly(sock, len(wanted)) == wanted
        sock.sendall(b"tail")
        sock.shutdown(socket.SHUT_WR)
        assert _read_exactly(sock, 17) == b"Requested: tail\r\n"
        assert sock.recv(10) == b""


@pytest.mark.timeout(60)
def test_loadgen_persistent_counts_checked_replies() -> None:
    """Persistent mode completes a bounded number of checked requests over a few long-lived connections."""
    with bench_server("reactor-lines") as port:
        result = loadgen.run_persistent(port, concurrency=4, duration=20.0, requests=300, check=True,
                                        src_ips=4, src_first=2)
    assert result["mode"] == "persistent" and result["conc"] == 4
    assert result["ok"] == 300 and result["mismatches"] == 0
    assert sum(result["errors"].values()) == 0
    assert sum(result["histogram"].values()) == 300


@pytest.mark.timeout(60)
def test_loadgen_persistent_in_two_processes(capsys: pytest.CaptureFixture[str]) -> None:
    """``--processes 2`` splits the persistent connections over two generator processes and adds them up."""
    with bench_server("asyncio-lines") as port:
        assert loadgen.main(["--port", str(port), "--mode", "persistent", "--concurrency", "4", "--requests", "200",
                             "--processes", "2", "--check", "--duration", "20"]) == 0
    fields = loadgen.parse_line(capsys.readouterr().out)
    assert fields is not None and fields["mode"] == "persistent" and fields["procs"] == 2
    assert fields["ok"] == 200 and fields["errors"] == 0 and fields["mismatches"] == 0


@pytest.mark.timeout(60)
def test_loadgen_persistent_counts_refused_connections() -> None:
    """A persistent connection that cannot be opened is counted and retried, not raised."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        result = loadgen.run_persistent(port, concurrency=2, duration=0.2)
    assert result["ok"] == 0 and result["errors"]["refused"] >= 2


@pytest.mark.timeout(60)
def test_loadgen_oneshot_counts_checked_replies() -> None:
    """The built-in generator completes a bounded number of checked requests against a real server."""
    with bench_server("reactor") as port:
        result = loadgen.run_oneshot(port, concurrency=4, duration=20.0, requests=200, check=True,
                                     src_ips=4, src_first=2)
    assert result["ok"] == 200 and result["mismatches"] == 0
    assert sum(result["errors"].values()) == 0
    assert sum(result["histogram"].values()) == 200


@pytest.mark.timeout(60)
def test_loadgen_counts_refused_connections() -> None:
    """A port nobody listens on is counted as err_refused, not raised."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        result = loadgen.run_oneshot(port, concurrency=2, duration=5.0, requests=10)
    assert result["ok"] == 0 and result["errors"]["refused"] == 10


@pytest.mark.timeout(60)
def test_loadgen_idle_holds_connections() -> None:
    """Idle mode announces how many connections it established, then closes them."""
    out = io.StringIO()
    with bench_server("reactor") as port:
        result = loadgen.run_idle(port, connections=50, concurrency=8, hold=0.0, src_ips=4, src_first=2, out=out)
    ready = loadgen.parse_line(out.getvalue(), prefix="idle-ready")
    assert ready is not None and ready["established"] == 50 and ready["failed"] == 0
    assert result["established"] == 50 and result["peer_closed"] == 0


# ------------------------------------------------------------ the command


@pytest.mark.timeout(120)
def test_quick_run_prints_a_table(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` prints a Markdown table with both servers and writes JSON."""
    report_path = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--servers", "reactor,asyncio",
         "--workloads", "c16,timers", "--duration", "0.5", "--timers", "20000", "--json", str(report_path)],
        capture_output=True, text=True, timeout=110, cwd=REPOSITORY,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| one-shot c=16 |")]
    assert {row.split("|")[2].strip() for row in rows} == {"reactor", "asyncio"}
    for row in rows:
        assert int(row.split("|")[3].strip().replace(",", "")) > 0
    assert "| time |" in proc.stdout and "c16 reactor" in proc.stderr
    report = json.loads(report_path.read_text())
    assert all(run["ok"] > 0 for run in report["runs"] if run["workload"] == "c16")


@pytest.mark.timeout(120)
def test_quick_persistent_run_prints_its_table() -> None:
    """`--workloads persistent` runs the line servers of the selected kinds and prints their table, error-free."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--servers", "reactor,asyncio",
         "--workloads", "persistent", "--duration", "0.5"],
        capture_output=True, text=True, timeout=110, cwd=REPOSITORY,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.startswith("| persistent c=64 |")]
    assert {row[2].strip() for row in rows} == {"reactor-lines", "asyncio-lines"}
    for row in rows:
        assert int(row[3].strip().replace(",", "")) > 0
        assert row[11].strip() == "0"
    assert "| persistent ≥ 1.3× asyncio |" in proc.stdout


def test_stream_servers_are_the_counterparts_of_the_selected_kinds() -> None:
    """The streams workload runs the -streams kind of reactor, asyncio and uvloop, and any -streams kind named."""
    assert stream_servers(["reactor", "asyncio", "uvloop", "threading"]) == ["reactor-streams", "asyncio-streams",
                                                                            "uvloop-streams"]
    assert stream_servers(["asyncio-streams", "asyncio"]) == ["asyncio-streams"]
    assert set(STREAM_SERVERS.values()) <= set(SERVERS)


@pytest.mark.timeout(120)
def test_quick_streams_run_prints_its_table() -> None:
    """`--workloads streams` runs one coroutine per connection on the reactor and asyncio, error-free."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--servers", "reactor,asyncio",
         "--workloads", "streams", "--duration", "0.5"],
        capture_output=True, text=True, timeout=110, cwd=REPOSITORY,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.startswith("| streams c=64 |")]
    assert {row[2].strip() for row in rows} == {"reactor-streams", "asyncio-streams"}
    for row in rows:
        assert int(row[3].strip().replace(",", "")) > 0
        assert row[11].strip() == "0"
    assert "| streams ≥ 1.3× asyncio (server CPU per request) |" in proc.stdout


# ------------------------------------------------------------ TLS


@pytest.mark.timeout(120)
def test_tls_quick_run_prints_its_tables() -> None:
    """`--tls` runs one-shot and persistent over TLS against the reactor and asyncio: tables, handshakes, 0 errors."""
    pytest.importorskip("trustme", reason="--tls makes its certificates with trustme (the test and bench extras)")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tls", "--quick", "--servers", "reactor,asyncio",
         "--workloads", "c16,persistent", "--duration", "0.5"],
        capture_output=True, text=True, timeout=110, cwd=REPOSITORY,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "TLS: TLSv1." in out
    for label, kinds in (("| TLS one-shot c=16 |", {"reactor", "asyncio"}),
                         ("| TLS persistent c=64 |", {"reactor-lines", "asyncio-lines"})):
        rows = [line.split("|") for line in out.splitlines() if line.startswith(label) and "%" in line]
        assert {row[2].strip() for row in rows} == kinds, out
        for row in rows:
            assert int(row[3].strip().replace(",", "")) > 0
            assert row[11].strip() == "0", out
    assert "| handshakes | server | handshakes/s |" in out
    assert "| persistent TLS ≥ 1.3× asyncio (server CPU per request) |" in out
    assert "| one-shot c=16 |" not in out and "| persistent c=64 |" not in out


def test_tls_refuses_an_external_generator_and_plain_only_workloads() -> None:
    """The C generator has no TLS, and idle/timers/embedded have no TLS form: both are refused up front."""
    from benchmarks.runner import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--tls", "--loadgen", "./reqrep-load"])
    with pytest.raises(SystemExit):
        parse_args(["--tls", "--workloads", "idle"])
    options, _ = parse_args(["--tls"])
    assert options.tls and options.workloads == ["c16", "persistent"]
    assert options.servers == ["reactor", "asyncio", "uvloop"]


# ------------------------------------------------------------ the soak


def test_slope_per_minute_is_the_least_squares_slope() -> None:
    """The slope of (seconds, value) points, per minute; None when there is no time span."""
    assert slope_per_minute([(0.0, 5.0), (10.0, 25.0), (20.0, 45.0)]) == pytest.approx(120.0)
    assert slope_per_minute([(0.0, 7.0), (30.0, 7.0), (60.0, 7.0)]) == 0.0
    # Noise around a line of 1 per second: least squares, not first-to-last.
    assert slope_per_minute([(0.0, 1.0), (1.0, 0.0), (2.0, 4.0), (3.0, 3.0)]) == pytest.approx(60.0)
    assert slope_per_minute([(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)]) == pytest.approx(30.0)
    assert slope_per_minute([(5.0, 1.0)]) is None and slope_per_minute([]) is None
    assert slope_per_minute([(5.0, 1.0), (5.0, 9.0)]) is None


@pytest.mark.timeout(60)
def test_loadgen_soak_is_bounded_and_counts_refused_connections() -> None:
    """With nobody listening, the soak generator counts refusals on both loads and still ends on time."""
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    out = io.StringIO()
    t0 = time.monotonic()
    result = loadgen.run_soak(ports[0], ports[1], duration=0.5, rate=100, connections=2, progress_interval=0.2,
                              timeout=0.5, linger=0.0, out=out)
    assert time.monotonic() - t0 < 5
    assert result["ok"] == {"oneshot": 0, "persistent": 0}
    assert result["errors"]["oneshot"]["refused"] > 0 and result["errors"]["persistent"]["refused"] >= 2
    progress = [line for line in out.getvalue().splitlines() if "soak-progress" in line]
    assert len(progress) >= 3
    fields = loadgen.parse_line(loadgen.format_line(loadgen.soak_fields(result)))
    assert fields is not None and fields["mode"] == "soak" and fields["oneshot_err_refused"] > 0


@pytest.mark.timeout(120)
def test_soak_run_samples_rss_and_descriptors(tmp_path: Path) -> None:
    """`python -m benchmarks --soak 3 --soak-interval 1`: both servers serve without errors, sampled, with slopes."""
    report_path = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--soak", "3", "--soak-interval", "1", "--json",
         str(report_path)],
        capture_output=True, text=True, timeout=110, cwd=REPOSITORY,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {row[2].strip(): row for row in (line.split("|") for line in proc.stdout.splitlines())
            if len(row) > 3 and row[1].strip() in ("oneshot", "persistent")}
    assert set(rows) == {"reactor", "reactor-lines"}, proc.stdout
    for row in rows.values():
        assert int(row[3].strip().replace(",", "")) > 0  # requests
        assert row[5].strip() == "0"  # errors
        assert row[9].strip().endswith("KiB/min") and row[13].strip().endswith("/min")
    assert "| t s | reactor RSS | reactor fds |" in proc.stdout and "[soak] t=" in proc.stderr
    report = json.loads(report_path.read_text())
    soak = report["soak"]
    assert len(soak["samples"]) >= 4
    assert soak["generator"]["oneshot_errors"] == 0 and soak["generator"]["persistent_errors"] == 0
    for sample in soak["samples"]:
        for kind in ("reactor", "reactor-lines"):
            assert sample[kind]["rss"] > 0 and sample[kind]["fds"] > 0
    for kind, row in soak["servers"].items():
        assert row["errors"] == 0 and row["requests"] > 0, kind
        for key in ("rss_slope_per_min", "fds_slope_per_min", "rss_slope_per_min_2nd_half",
                    "fds_slope_per_min_2nd_half"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), (kind, key)
    # ~400 one-shot requests a second: rate-limited, not flat out.
    assert 0.5 * 400 * 3 <= soak["servers"]["reactor"]["requests"] <= 1.2 * 400 * 3
    # The persistent connections stay open: one descriptor each, on every sample.
    fds = {sample["reactor-lines"]["fds"] for sample in soak["samples"]}
    assert len(fds) == 1
    again = subprocess.run([sys.executable, "-m", "benchmarks", "--from-json", str(report_path)],
                           capture_output=True, text=True, timeout=60, cwd=REPOSITORY)
    assert again.returncode == 0 and again.stdout == proc.stdout


def test_bench_core_still_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks core` runs the core micro-benchmark and prints its table."""
    from benchmarks import main

    assert main(["core", "--callbacks", "2000", "--timers", "2000", "--cancel", "2000", "--repeat", "1"]) == 0
    assert "| call_soon callbacks/s |" in capsys.readouterr().out


@pytest.mark.skipif(not (hasattr(select, "epoll") and hasattr(select, "poll")), reason="needs epoll and poll (Linux)")
def test_bench_wait_measures_both_waits(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks wait` times epoll_wait and poll for each shape and prints one row per shape."""
    from benchmarks import main
    from benchmarks.wait import SHAPES, run_wait_bench

    rows = run_wait_bench(shapes=((4, 0), (4, 12)), rounds=5)
    assert [(ready, idle) for ready, idle, _, _ in rows] == [(4, 0), (4, 12)]
    assert all(ep > 0 and po > 0 for _, _, ep, po in rows)
    assert main(["wait", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n| ") == len(SHAPES) and "| poll / epoll |" in out  # a row per shape
    with pytest.raises(SystemExit):
        main(["wait", "--rounds", "0"])


# ------------------------------------------------------------ asynchat

ASYNCHAT_KINDS = [pytest.param(kind, marks=pytest.mark.skipif(available(kind) is not None,
                                                               reason=str(available(kind))))
                  for kind in ("asynchat", "asynchat-backport")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ASYNCHAT_KINDS)
def test_asynchat_servers_answer_every_line_of_a_connection(kind: str) -> None:
    """The async_chat server, on either asyncore, replies to each line, split lines too, and a last line at EOF."""
    test_line_servers_answer_every_line_of_a_connection(kind)


def test_asynchat_table_and_targets() -> None:
    """The asynchat rows compare server CPU per request with the backport's: 64, 1,000, and 64 beside 936 idle."""
    base = {"rep": 0, "p50_us": 400.0, "p99_us": 900.0, "server_cpu_util": 1.0, "gen_cpu": 0.5, "errors": 0,
            "mismatches": 0, "other_load": 0.0}
    runs = [
        {**base, "workload": "asynchat-c64", "server": "asynchat", "rps": 50_000, "server_cpu_us_per_req": 10.0},
        {**base, "workload": "asynchat-c64", "server": "asynchat-backport", "rps": 45_000,
         "server_cpu_us_per_req": 12.0},
        {**base, "workload": "asynchat-c1000", "server": "asynchat", "rps": 50_000, "server_cpu_us_per_req": 10.0},
        {**base, "workload": "asynchat-c1000", "server": "asynchat-backport", "rps": 30_000,
         "server_cpu_us_per_req": 15.0},
        {**base, "workload": "asynchat-c64-idle936", "server": "asynchat", "rps": 50_000,
         "server_cpu_us_per_req": 8.0},
        {**base, "workload": "asynchat-c64-idle936", "server": "asynchat-backport", "rps": 20_000,
         "server_cpu_us_per_req": 20.0},
    ]
    summary = summarize(runs)
    judged = {t["target"]: t for t in targets(summary)}
    assert judged["asynchat c=64 ≥ 1× the backport (server CPU per request)"]["value"] == 1.2
    assert judged["asynchat c=64 ≥ 1× the backport (server CPU per request)"]["met"] is True
    assert judged["asynchat c=1000 ≥ 2× the backport (server CPU per request)"]["value"] == 1.5
    assert judged["asynchat c=1000 ≥ 2× the backport (server CPU per request)"]["met"] is False
    report = report_of(summary)
    table = format_markdown(report)
    assert "| asynchat c=64 | asynchat | 50,000 | 400 | 900 | 10.0 | 1.20× | 100 % | 0.50 | 0.00 | 0 |" in table
    assert "| asynchat c=1000 | asynchat-backport | 30,000 | 400 | 900 | 15.0 | 1.00× |" in table
    # 64 busy beside 936 idle: a row of its own, without a target.
    assert "| asynchat c=64 +idle 936 | asynchat | 50,000 | 400 | 900 | 8.0 | 2.50× |" in table
    assert not [t for t in judged if "936" in t]


@pytest.mark.timeout(30)
def test_a_signal_taken_by_another_thread_still_stops_a_bench_reactor() -> None:
    """SIGTERM handled in a thread other than the one blocked in the wait still stops the server.

    The C-level handler runs in the thread the signal went to; the Python
    handler only once the main thread runs bytecode again.  A plain
    ``signal.signal`` handler therefore leaves a reactor with nothing to do
    blocked in its wait (the bench servers hung so after SIGTERM); through
    the reactor's wakeup fd, the wait returns.
    """
    import signal
    import threading

    from benchmarks.servers import _stop_on_signals
    from reactor.core import Reactor

    wchan = Path(f"/proc/self/task/{threading.main_thread().native_id}/wchan")
    if not wchan.exists():
        pytest.skip("needs /proc/self/task/<tid>/wchan (Linux) to see the main thread blocked")

    def kick() -> None:
        # Once the main thread sleeps in its wait (bounded: 10 s), signal this thread.
        deadline = time.monotonic() + 10
        while "poll" not in wchan.read_text() and "epoll" not in wchan.read_text():
            assert time.monotonic() < deadline, "the main thread never blocked in its wait"
            time.sleep(0.001)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with Reactor() as reactor:
        _stop_on_signals(reactor.stop, reactor)
        kicker = threading.Thread(target=kick)
        reactor.call_soon(kicker.start)  # from a turn: the main thread then blocks in a wait with no deadline
        reactor.run()  # returns only if the signal stopped it
        kicker.join()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers
