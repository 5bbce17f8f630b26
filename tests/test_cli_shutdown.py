"""``serve``'s options checked when parsed, its shutdown on signals, and handlers that cannot be loaded.

The shutdown tests run ``python -m reactor serve`` in a subprocess and signal
it, as an operator would; every wait is bounded.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import end_process, wait_for

from reactor import cli

pytestmark = pytest.mark.timeout(60)

#: A handler whose "hang" requests are never answered (a request in flight), noted by a marker file.
SLOW_HANDLER = """\
import os
from reactor import RequestServer

class Slow(RequestServer):
    def handle_request(self, request):
        open(os.environ["SLOW_MARKER"], "x").close()
        return self.reactor.create_future()

class FailingDrain(Slow):
    def drain(self, grace=None):
        raise RuntimeError("the drain broke")
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--grace", "-1"],
        ["serve", "--grace", "nan"],
        ["serve", "--grace", "inf"],
        ["serve", "--grace", "soon"],
        ["serve", "--workers", "-1"],
        ["serve", "--workers", "two"],
        ["request", "127.0.0.1:9", "x", "--timeout", "-1"],
        ["request", "127.0.0.1:9", "x", "--timeout", "nan"],
        ["request", "127.0.0.1:9", "x", "--timeout", "inf"],
    ],
)
def test_options_out_of_range_are_usage_errors_when_parsed(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Negative, nan, infinite or unreadable numbers fail when the arguments are parsed: exit 2, one error line."""
    parser, _ = cli._parser()
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("usage: reactor") and len([line for line in err if "error:" in line]) == 1
    assert f"argument {argv[-2]}" in err[-1], err


def test_grace_zero_and_timeout_zero_are_accepted() -> None:
    """0 is a valid grace (close at once) and a valid --timeout (wait as long as it takes)."""
    parser, _ = cli._parser()
    assert parser.parse_args(["serve", "--grace", "0"]).grace == 0.0
    assert parser.parse_args(["request", "a:1", "x", "--timeout", "0"]).timeout == 0.0
    assert parser.parse_args(["serve", "--workers", "0"]).workers == 0


def test_serve_with_a_negative_grace_exits_2_before_serving() -> None:
    """``serve --grace -1`` (once accepted, then a SIGTERM that only logged ValueError) exits 2 at once."""
    proc = subprocess.run(
        [sys.executable, "-m", "reactor", "serve", "127.0.0.1:0", "--grace", "-1"],
        capture_output=True, text=True, timeout=20,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "argument --grace: must be a finite number of seconds >= 0, got '-1'" in proc.stderr


class Served:
    """``python -m reactor serve -v --handler slow:CLASS`` in a subprocess, stderr in a file."""

    def __init__(self, tmp: pathlib.Path, handler: str, grace: str = "30") -> None:
        (tmp / "slow.py").write_text(SLOW_HANDLER)
        self.marker = tmp / "in-flight"
        self.err_path = tmp / "stderr"
        env = dict(os.environ, SLOW_MARKER=str(self.marker))
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reactor", "serve", "-v", "127.0.0.1:0", "--handler", handler, "--grace", grace],
                cwd=tmp, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
            )
        self.client: socket.socket | None = None
        try:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            assert line.startswith("serving "), line + self.stderr()
            host, port = line.split()[-1].rsplit(":", 1)
            self.client = socket.create_connection((host, int(port)), timeout=10)  # socket-ok: a raw client
            self.client.sendall(b"hang\r\n")  # socket-ok
            wait_for(self.marker.exists, what="the request in flight")
        except BaseException:
            self.close()
            raise

    def stderr(self) -> str:
        return self.err_path.read_text()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        end_process(self.proc, signal.SIGKILL)


@pytest.fixture
def served(tmp_path: pathlib.Path) -> Iterator[type[Served]]:
    started: list[Served] = []

    class Tracked(Served):
        def __init__(self, handler: str, grace: str = "30") -> None:
            super().__init__(tmp_path, handler, grace)
            started.append(self)

    yield Tracked  # type: ignore[misc]
    for one in started:
        one.close()


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_second_signal_during_the_drain_exits_at_once(served: type[Served], signum: int, status: int) -> None:
    """A request in flight holds a 30 s drain; a second SIGTERM/SIGINT exits at once, 128 + signal, saying so."""
    server = served("slow:Slow")  # type: ignore[call-arg]
    server.proc.send_signal(signum)
    wait_for(lambda: "shutting down" in server.stderr(), what="the drain")
    assert server.proc.poll() is None  # the drain waits for the request in flight
    server.proc.send_signal(signum)
    assert server.proc.wait(5) == status
    name = signal.Signals(signum).name
    assert f"second {name} during the drain: exiting at once" in server.stderr()
    assert server.client is not None and server.client.recv(100) == b""  # socket-ok: the request in flight closed


def test_a_failing_drain_exits_1_instead_of_ignoring_signals(served: type[Served]) -> None:
    """A drain that raises logs the error and exits 1 at once (it left a server that ignored SIGTERM)."""
    server = served("slow:FailingDrain")  # type: ignore[call-arg]
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(5) == 1
    err = server.stderr()
    assert "the graceful shutdown failed; exiting at once" in err and "RuntimeError: the drain broke" in err


#: A module that cannot be loaded: its source, what the error line says, and the line it names.
BROKEN_MODULES = {
    "raises": ("import os\nraise LookupError('no configuration')\n", "LookupError: no configuration", 2),
    "syntax": ("import os\nclass Bad(object)\n    pass\n", "SyntaxError: expected ':'", 2),
    "exits": ("import sys\nsys.exit('cannot start here')\n", "SystemExit: cannot start here", 2),
}


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]], ids=["one-process", "workers"])
@pytest.mark.parametrize("kind", sorted(BROKEN_MODULES))
def test_a_handler_module_that_cannot_load_is_one_usage_line(
    tmp_path: pathlib.Path, kind: str, workers: list[str]
) -> None:
    """A module that raises at import, exits, or does not compile: exit 2, one line naming the error and file:line."""
    source, expected, line = BROKEN_MODULES[kind]
    (tmp_path / "broken.py").write_text(source)
    proc = subprocess.run(
        [sys.executable, "-m", "reactor", "serve", "127.0.0.1:0", "--handler", "broken:Bad", *workers],
        cwd=tmp_path, capture_output=True, text=True, timeout=20,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    *usage, error = proc.stderr.splitlines()  # argparse's usage, wrapped; then the one error line
    assert usage[0].startswith("usage: reactor serve") and all(line.startswith(" ") for line in usage[1:])
    assert error.startswith("reactor serve: error: cannot load handler 'broken:Bad': ") and expected in error
    assert re.search(rf"\(raised at {re.escape(str(tmp_path / 'broken.py'))}:{line}\)$", error), error


def test_a_missing_module_inside_the_handler_is_named(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A handler module whose own import fails names the missing module and the line, not the handler's."""
    (tmp_path / "needs_missing.py").write_text("import os\nimport no_such_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "needs_missing", raising=False)
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "127.0.0.1:0", "--handler", "needs_missing:H"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "ModuleNotFoundError: No module named 'no_such_dependency_xyz'" in err
    assert "needs_missing.py:2)" in err
