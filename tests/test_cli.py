"""The command line: loading ``--handler`` from the current directory, exit statuses, failures on stderr.

Most tests call `reactor.cli.main` in this process; the ones about how the
program is started run it in a subprocess, as the ``reactor`` console script
does.  Servers are on loopback port 0.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import addr, end_process

from reactor import RequestServer, cli, do_request
from reactor.addresses import port_hash


@pytest.fixture
def echo_server() -> Iterator[RequestServer]:
    """An echo RequestServer served by a background thread of its own reactor."""
    from reactor import Reactor

    reactor = Reactor()
    server = RequestServer("localhost:0", reactor=reactor)
    server.start()
    yield server
    server.close()
    reactor.close()


def free_port() -> int:
    s = socket.socket()  # socket-ok: find a port nobody listens on
    s.bind(("127.0.0.1", 0))  # socket-ok
    port: int = s.getsockname()[1]
    s.close()
    return port


HANDLER_MODULE = (
    "from reactor import RequestServer\n"
    "class Shout(RequestServer):\n"
    "    def handle_request(self, request):\n"
    "        return request.upper() + '!'\n"
)

# What pip writes for the ``reactor = "reactor.__main__:main"`` entry point.  Run
# as a file from another directory, Python puts *that* directory on sys.path,
# not the current one -- unlike ``python -m reactor``.
CONSOLE_SCRIPT = (
    "import re\n"
    "import sys\n"
    "from reactor.__main__ import main\n"
    "if __name__ == '__main__':\n"
    "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
    "    sys.exit(main())\n"
)


def console_script(tmp_path: pathlib.Path) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "reactor"
    script.write_text(CONSOLE_SCRIPT)
    return [sys.executable, str(script)]


def test_console_script_loads_a_handler_from_the_current_directory(tmp_path: pathlib.Path) -> None:
    """The console entry point finds ``--handler module:Class`` in the current directory, as ``-m`` does."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "shouting.py").write_text(HANDLER_MODULE)
    command = console_script(tmp_path)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    proc = subprocess.Popen(
        [*command, "serve", "localhost:0", "--handler", "shouting:Shout"],
        cwd=app, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving Shout on "), line + (proc.stderr.read() if proc.stderr else "")
        assert do_request(line.split()[-1], "hey", 5) == "HEY!"
    finally:
        assert end_process(proc, signal.SIGINT) == 0


def test_handler_loading_puts_the_current_directory_on_the_path_once(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a handler adds the current directory to sys.path (first), and only if it is not there."""
    (tmp_path / "shouting_inproc.py").write_text(HANDLER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "shouting_inproc", raising=False)
    cls = cli._load_handler("shouting_inproc:Shout")
    assert cls.__name__ == "Shout" and sys.path[0] == str(tmp_path)
    cli._load_handler("shouting_inproc:Shout")
    assert sys.path.count(str(tmp_path)) == 1


def test_help_documents_exit_statuses_and_the_handler_path(capsys: pytest.CaptureFixture[str]) -> None:
    """--help lists every exit status; serve --help says where --handler modules are looked up."""
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for status in ("0 ", "1 ", "2 ", "130"):
        assert f"\n  {status}" in out
    assert "usage error" in out and "interrupted" in out
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # help text is wrapped to the terminal
    assert "current directory first" in out and "exit status" in out
    with pytest.raises(SystemExit):
        cli.main(["request", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "0 waits as long as it takes" in out and "exit status" in out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nocolon", "is not of the form module:Class"),
        ("mod:", "is not of the form module:Class"),
        ("no_such_module_rough:Thing", "cannot import 'no_such_module_rough'"),
        ("os:NoSuchThing", "module 'os' has no 'NoSuchThing'"),
        ("os:sep", "sep is not a RequestServer subclass"),
    ],
)
def test_bad_handler_is_a_usage_error(spec: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --handler exits 2 with a message quoting it and saying what is expected."""
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "127.0.0.1:0", "--handler", spec])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: reactor serve") and expected in err and repr(spec) in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Argparse's errors, a malformed address and options that need each other all exit 2."""
    for argv in (
        ["request"],  # argparse: missing arguments
        ["request", "http://localhost:80", "x"],
        ["serve", "nocolon"],
        ["serve", "127.0.0.1:0", "--keyfile", "k.pem"],
        ["serve", "127.0.0.1:0", "--reuse-port"],
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2, argv
        assert "error:" in capsys.readouterr().err


def test_serve_cannot_listen_exits_1(listener: socket.socket, capsys: pytest.CaptureFixture[str]) -> None:
    """An address in use is a failure at run time: exit 1 with the reason."""
    assert cli.main(["serve", addr(listener)]) == 1
    assert "cannot listen on" in capsys.readouterr().err


def test_request_reply_exits_0(echo_server: RequestServer, capsys: pytest.CaptureFixture[str]) -> None:
    """A reply is printed on stdout, exit 0, nothing on stderr."""
    assert cli.main(["request", echo_server.address, "hi"]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("Requested: hi\n", "")


def test_request_to_a_server_that_closes_without_replying_exits_1(
    listener: socket.socket, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that reads the request and closes without a reply: exit 1, the reason on stderr, no empty line."""

    def read_then_close() -> None:
        conn, _ = listener.accept()  # socket-ok
        with conn:
            conn.settimeout(10)  # socket-ok
            while conn.recv(1024):  # socket-ok: read up to the client's half-close
                pass

    server = threading.Thread(target=read_then_close)
    server.start()
    try:
        assert cli.main(["request", addr(listener), "hi", "--timeout", "10"]) == 1
    finally:
        server.join(10)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "closed the connection without replying" in captured.err and captured.err.count("\n") == 1


def test_request_timeout_and_refused_exit_1(listener: socket.socket, capsys: pytest.CaptureFixture[str]) -> None:
    """No reply within --timeout, or nothing listening: exit 1 with one line on stderr."""
    assert cli.main(["request", addr(listener), "hi", "--timeout", "0.05"]) == 1
    assert "no reply" in capsys.readouterr().err
    assert cli.main(["request", f"127.0.0.1:{free_port()}", "hi"]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and err.count("\n") == 1


def test_request_interrupted_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during a request exits 130."""

    def interrupted(*args: Any, **kwargs: Any) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "do_request", interrupted)
    assert cli.main(["request", "127.0.0.1:9", "hi"]) == 130


def test_request_timeout_zero_waits(monkeypatch: pytest.MonkeyPatch, echo_server: RequestServer) -> None:
    """--timeout 0 reaches do_request as 0, which means no timeout there (and gets the reply)."""
    seen: list[Any] = []
    real = cli.do_request

    def spy(address: str, text: str, timeout: Any, **kwargs: Any) -> str | None:
        seen.append(timeout)
        return real(address, text, timeout, **kwargs)

    monkeypatch.setattr(cli, "do_request", spy)
    assert cli.main(["request", echo_server.address, "hi", "--timeout", "0"]) == 0
    assert seen == [0.0]


def test_port_names_show_their_port(
    listener: socket.socket, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`request` with a port name says on stderr which port it stands for; the reply stays alone on stdout."""
    name = "8o00cli"
    assert cli.main(["request", f"127.0.0.1:{name}", "hi", "--timeout", "0.05"]) == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{name} (port name -> port {port_hash(name)})" in err


def test_serve_prints_the_port_of_a_port_name() -> None:
    """`serve localhost:NAME` prints the port the name stands for, and keeps the bound address last."""
    # A name whose port (64591) lies above the kernel's ephemeral range
    # (32768-60999 by default), so no client connection of another test, in
    # TIME_WAIT, holds it.
    name = "cli-name-8"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor", "serve", f"localhost:{name}", "localhost:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        named, plain = proc.stdout.readline(), proc.stdout.readline()
        if not named.startswith("serving"):  # the hashed port happens to be taken on this machine
            pytest.skip(f"port {port_hash(name)} is in use: {named.strip()}")
        port = port_hash(name)
        assert f"on localhost:{name} (port name -> port {port}) at 127.0.0.1:{port}\n" in named
        assert "port name" not in plain and plain.startswith("serving RequestServer on 127.0.0.1:")
        assert do_request(named.split()[-1], "n", 5) == "Requested: n"
    finally:
        end_process(proc, signal.SIGINT)
