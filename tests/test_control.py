"""Observability (`reactor.control`): the snapshot, the control socket, /metrics and the request timing."""

from __future__ import annotations

import json
import os
import socket
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_until

from reactor import ManualClock, Reactor, RequestServer
from reactor.client import do_request
from reactor.control import ControlServer, merge_snapshots, serve_control, snapshot
from reactor.metrics import metrics_text, serve_metrics
from reactor.transport.listener import RequestDurations, ServerStatistics, listeners_of


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path (Unix socket paths are limited to 107 bytes)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rc-") as name:
        yield Path(name)


def ask(reactor: Reactor, path: str, command: str = "snapshot") -> dict[str, Any]:
    """The control socket's answer to ``command``, driving ``reactor`` until it arrives."""
    fut = reactor.request("unix:" + path, command, timeout=5)
    run_until(reactor, fut.done, turns=10_000, timeout=0.01)
    data: dict[str, Any] = json.loads(fut.result())
    return data


def raw_exchange(path: str, reactor: Reactor, data: bytes) -> bytes:
    """Send ``data`` to the control socket from a plain client, half-close, read all (the reactor serving)."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # socket-ok: the test's own client
    try:
        client.connect(path)  # socket-ok
        client.sendall(data)  # socket-ok
        client.shutdown(socket.SHUT_WR)  # socket-ok
        client.setblocking(False)
        received = b""
        done = False

        def read() -> bool:
            nonlocal received, done
            try:
                chunk = client.recv(65536)  # socket-ok
            except BlockingIOError:
                return False
            received += chunk
            done = not chunk
            return done

        run_until(reactor, read, turns=10_000, timeout=0.01)
        return received
    finally:
        client.close()


def test_control_socket_is_mode_0600_and_owned_by_the_serving_user(real_reactor: Reactor, short_tmp: Path) -> None:
    """The socket file is created 0600, belongs to this process's user, and is removed on close."""
    path = str(short_tmp / "c.sock")
    with real_reactor.serve_control(path):
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.getuid()
    assert not os.path.exists(path)


def test_garbage_gets_an_error_line_and_serving_goes_on(real_reactor: Reactor, short_tmp: Path) -> None:
    """Unknown commands and binary junk get one error line each; requests and snapshots still work."""
    path = str(short_tmp / "c.sock")
    with RequestServer("127.0.0.1:0", reactor=real_reactor) as server, ControlServer(real_reactor, path):
        reply = raw_exchange(path, real_reactor, b"garbage\n\xff\x00\xfe\nstop\nhelp\n")
        lines = reply.decode().split("\r\n")
        assert lines[0].startswith("error: unknown command 'garbage'")
        assert lines[1].startswith("error: unknown command '\\xff")
        assert lines[2].startswith("error: unknown command 'stop'")
        assert lines[3] == "commands: snapshot, summary, help"
        too_long = raw_exchange(path, real_reactor, b"x" * 10_000)
        assert too_long.startswith(b"error: a command is at most")
        flood = raw_exchange(path, real_reactor, b"snapshot\n" * 100)
        assert flood.endswith(b"error: more than 16 commands waiting; read the answers first\r\n")
        fut = real_reactor.request(server.address, "still here", timeout=5)
        real_reactor.run_until_complete(fut, timeout=5)
        assert fut.result() == "Requested: still here"
        snap = ask(real_reactor, path)
        assert snap["servers"][0]["completed"] == 1


def test_snapshot_counts_match_the_requests_made(real_reactor: Reactor, short_tmp: Path) -> None:
    """Over the control socket, the JSON has the four parts and counts exactly the requests made."""
    path = str(short_tmp / "c.sock")
    with RequestServer("127.0.0.1:0", reactor=real_reactor) as server, serve_control(real_reactor, path):
        futures = [real_reactor.request(server.address, f"r{i}", timeout=5) for i in range(7)]
        for fut in futures:
            real_reactor.run_until_complete(fut, timeout=5)
        snap = ask(real_reactor, path)
        assert set(snap) == {"reactor", "servers", "connections", "workers"}
        (entry,) = snap["servers"]
        assert entry["address"] == server.address and entry["pid"] == os.getpid()
        assert (entry["accepted"], entry["completed"], entry["errors"], entry["active"]) == (7, 7, 0, 0)
        assert entry["duration"] is None  # no metrics: nothing timed
        # The control server's side of the exchange is not reported; the asking side is a
        # row of this same reactor here (a client connection), as any outgoing connection is.
        (row,) = snap["connections"]
        assert row["peer"] == path and row["state"] == "WRITE_CLOSED"
        assert snap["workers"] == [
            {
                "pid": os.getpid(),
                "connections": 1,
                "turns": snap["reactor"]["turns"],
                "accepted": 7,
                "completed": 7,
                "errors": 0,
                "timeouts": 0,
                "rejected": 0,
                "active": 0,
            }
        ]
        summary = ask(real_reactor, path, "summary")
        assert summary["servers"][0]["completed"] == 7 and summary["connections"] == []
        assert summary["workers"][0]["connections"] == 1


def idle_clients(server: RequestServer, count: int) -> list[socket.socket]:
    """``count`` clients connected to ``server`` that send nothing."""
    host, port = server.address.rsplit(":", 1)
    return [socket.create_connection((host, int(port))) for _ in range(count)]  # socket-ok: idle test clients


@pytest.mark.parametrize("chunk", [500, 3])
def test_twenty_idle_clients_are_twenty_rows_whose_age_grows(
    reactor: Reactor, clock: ManualClock, short_tmp: Path, chunk: int
) -> None:
    """20 silent clients are 20 OPEN rows with peer, bytes and deadline; their age follows the clock."""
    path = str(short_tmp / "c.sock")
    with RequestServer("127.0.0.1:0", reactor=reactor, timeout=60) as server, serve_control(reactor, path, chunk=chunk):
        clients = idle_clients(server, 20)
        try:
            run_until(reactor, lambda: server.statistics()["accepted"] == 20)
            first = ask(reactor, path)
            clock.advance(2.5)
            second = ask(reactor, path)
            rows = {}
            for name, snap in (("first", first), ("second", second)):
                # besides the 20, one row: this reactor's own question to the control socket
                rows[name] = [row for row in snap["connections"] if row["owner"] == server.address]
                assert len(rows[name]) == 20 and len(snap["connections"]) == 21
                assert snap["reactor"]["states"] == {"OPEN": 20, "WRITE_CLOSED": 1}
            peers = {f"127.0.0.1:{c.getsockname()[1]}" for c in clients}
            assert {row["peer"] for row in rows["second"]} == peers
            for row in rows["second"]:
                assert set(row) == {
                    "fd", "state", "peer", "age", "bytes_in", "bytes_out", "pending_out", "deadline", "owner", "pid"
                }  # fmt: skip
                assert (row["state"], row["bytes_in"], row["owner"]) == ("OPEN", 0, server.address)
            ages = {row["fd"]: row["age"] for row in rows["first"]}
            for row in rows["second"]:
                assert row["age"] == pytest.approx(ages[row["fd"]] + 2.5)
                assert row["deadline"] == pytest.approx(60 - row["age"])
        finally:
            for client in clients:
                client.close()
        run_until(reactor, lambda: not reactor.connections)


def test_snapshot_library_call_is_the_same_shape(reactor: Reactor) -> None:
    """`Reactor.snapshot` returns the dict the control socket writes, for one process."""
    with RequestServer("127.0.0.1:0", reactor=reactor):
        snap = reactor.snapshot()
        assert json.loads(json.dumps(snap)) == snap
        assert [s["name"] for s in snap["servers"]] == ["RequestServer"]
        assert snap["workers"][0]["pid"] == snap["reactor"]["pid"] == os.getpid()
    assert snapshot(reactor)["servers"] == []  # a closed server is no longer listed
    assert listeners_of(reactor) == []


def test_request_timing_is_off_until_metrics_are_served(real_reactor: Reactor) -> None:
    """No histogram (so no clock read per request) until serve_metrics; then every request is counted once."""
    with RequestServer("127.0.0.1:0", reactor=real_reactor) as server:
        assert server._stats.durations is None
        assert "durations" not in server.statistics()
        with serve_metrics(real_reactor, "127.0.0.1:0"):
            durations = server._stats.durations
            assert isinstance(durations, RequestDurations)
            for i in range(3):
                real_reactor.run_until_complete(real_reactor.request(server.address, str(i), timeout=5), timeout=5)
            assert durations.count == 3 and sum(durations.counts) == 3 and durations.sum > 0
            with RequestServer("127.0.0.1:0", reactor=real_reactor) as later:
                assert isinstance(later._stats.durations, RequestDurations)  # servers made later are timed too


def test_histogram_buckets_are_le_bounds() -> None:
    """An observation on a bound falls in that bound's bucket; beyond the last, in the overflow one."""
    hist = RequestDurations((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 1.0, 7.0):
        hist.observe(seconds)
    assert hist.counts == [2, 2, 1] and hist.count == 5 and hist.sum == pytest.approx(8.65)
    with pytest.raises(ValueError, match="increasing"):
        RequestDurations((1.0, 0.5))
    assert "durations" not in ServerStatistics().as_dict()


def get(url: str) -> tuple[int, str]:
    """GET ``url``: the status and the body (4xx and 5xx included)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def families(text: str) -> dict[str, Any]:
    """The metric families of ``text``, parsed by prometheus_client's own parser."""
    parser = pytest.importorskip("prometheus_client.parser")
    return {family.name: family for family in parser.text_string_to_metric_families(text)}


def sample(family: Any, suffix: str = "", **labels: str) -> float:
    """The value of the one sample of ``family`` named with ``suffix`` whose labels include ``labels``."""
    (value,) = [
        s.value
        for s in family.samples
        if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return float(value)


def test_metrics_parse_with_prometheus_client(short_tmp: Path) -> None:
    """/metrics parses with the reference parser; the counter and the histogram's count equal the requests."""
    reactor = Reactor()
    server = RequestServer("127.0.0.1:0", reactor=reactor)
    metrics = reactor.serve_metrics("127.0.0.1:0")
    server.start()
    try:
        for i in range(5):
            assert do_request(server.address, f"m{i}", 5) == f"Requested: m{i}"
        status, text = get(metrics.url)
        assert status == 200
        found = families(text)
        assert all(name.startswith("reactor_") for name in found)
        completed = found["reactor_requests_completed"]  # the parser strips _total from a counter's family
        assert completed.type == "counter"
        assert sample(completed, "_total", server=server.address) == 5
        assert sample(found["reactor_connections_accepted"], "_total", server=server.address) == 5
        for name in ("reactor_errors", "reactor_timeouts", "reactor_requests_rejected"):
            assert sample(found[name], "_total", server=server.address) == 0
        assert found["reactor_connections_active"].type == "gauge"
        assert sample(found["reactor_connections_active"], server=server.address) == 0
        assert found["reactor_connections"].type == "gauge"
        assert sample(found["reactor_connections"], state="OPEN") == 0
        hist = found["reactor_request_duration_seconds"]
        assert hist.type == "histogram"
        assert sample(hist, "_count", server=server.address) == 5
        assert sample(hist, "_bucket", server=server.address, le="+Inf") == 5
        assert status == 200 and get(metrics.url.replace("/metrics", "/other"))[0] == 404
        bad = urllib.request.Request(metrics.url, data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(bad, timeout=5)
        assert info.value.code == 405
        info.value.close()
        assert do_request(server.address, "after", 5) == "Requested: after"
    finally:
        server.close()
        reactor.call_soon_threadsafe(metrics.close)
        server.join(5)
        metrics.close()
        reactor.close()


def worker_snapshot(pid: int, completed: int, rows: int) -> dict[str, Any]:
    """A made-up snapshot of one worker."""
    server = {"name": "S", "address": "127.0.0.1:1", "pid": pid, "accepted": completed, "completed": completed}
    counts = [completed, 0, 0]
    server["duration"] = {"bounds": [0.1, 1.0], "counts": counts, "sum": completed * 0.01, "count": completed}
    row = {"fd": 9, "state": "OPEN", "peer": "127.0.0.1:2", "age": 1.0, "bytes_in": 0, "bytes_out": 0}
    return {
        "reactor": {"pid": pid, "time": 0.0, "turns": 10, "slowest_callback": pid / 1000, "states": {"OPEN": rows}},
        "servers": [server],
        "connections": [dict(row, pid=pid) for _ in range(rows)],
        "workers": [{"pid": pid, "connections": rows, "completed": completed}],
    }


def test_merging_sums_counters_and_keeps_every_row_and_pid() -> None:
    """Counters and histograms are summed per address; rows and workers keep their pid; metrics label workers."""
    merged = merge_snapshots([worker_snapshot(11, 3, 2), worker_snapshot(12, 4, 1)], pid=10)
    assert merged["reactor"]["pid"] == 10 and merged["reactor"]["workers"] == 2
    assert merged["reactor"]["turns"] == 20 and merged["reactor"]["states"] == {"OPEN": 3}
    assert merged["reactor"]["slowest_callback"] == 0.012
    (server,) = merged["servers"]
    assert (server["completed"], server["pids"]) == (7, [11, 12])
    assert server["duration"]["counts"] == [7, 0, 0] and server["duration"]["count"] == 7
    assert sorted(row["pid"] for row in merged["connections"]) == [11, 11, 12]
    found = families(metrics_text(merged))
    assert sample(found["reactor_requests_completed"], "_total", server="127.0.0.1:1") == 7
    assert sample(found["reactor_request_duration_seconds"], "_count", server="127.0.0.1:1") == 7
    assert sample(found["reactor_worker_requests_completed"], "_total", worker="12") == 4
    assert sample(found["reactor_workers"]) == 2
