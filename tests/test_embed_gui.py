"""The GUI drivers on real hosts: Tk under a private Xvfb, Qt (PySide6, PyQt6) offscreen, and their examples.

Tk needs an X server: a session fixture starts ``Xvfb -displayfd`` (it picks
a free display itself and writes its number once it accepts connections) and
stops it at the end.  Qt runs with ``QT_QPA_PLATFORM=offscreen``.  One
process can hold only one QApplication, so the first installed binding runs
in this process and the other in a subprocess (``tests/embed_hosts.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from embed_hosts import QtHost, TkHost, make_qt_app, serve_in_host

from reactor import Reactor, do_request
from reactor.embed import QT_BINDINGS, attach_qt

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
INSTALLED_QT = [name for name in QT_BINDINGS if importlib.util.find_spec(name) is not None]
NO_QT = "neither PySide6 nor PyQt6 is installed (pip install PySide6 PyQt6)"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def xvfb_display() -> Iterator[str]:
    """A private X server for the session: its DISPLAY string (``:N``)."""
    pytest.importorskip("tkinter", reason="tkinter is not available in this Python")
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_end), "-nolisten", "tcp", "-screen", "0", "800x600x24"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    number = b""
    try:
        deadline = time.monotonic() + 15
        while not number.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([read_end], [], [], remaining)[0]:
                raise RuntimeError("Xvfb did not report its display within 15 s")
            chunk = os.read(read_end, 16)
            if not chunk:
                raise RuntimeError(f"Xvfb exited before reporting its display (status {proc.wait(5)})")
            number += chunk
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    finally:
        os.close(read_end)
    try:
        yield f":{number.decode().strip()}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def tk_root(xvfb_display: str) -> Iterator[Any]:
    """A Tk root on the session's Xvfb, destroyed after the test."""
    import tkinter

    root = tkinter.Tk(screenName=xvfb_display)
    # Tcl opens its notifier's pipe the first time it waits: before the test's fd count.
    root.after(1, root.quit)
    root.mainloop()
    yield root
    root.destroy()


@pytest.fixture(scope="session")
def qt_app() -> Any:
    """The session's QApplication (offscreen) of the first installed Qt binding."""
    if not INSTALLED_QT:
        pytest.skip(NO_QT)
    return make_qt_app(INSTALLED_QT[0])


# ------------------------------------------------------------------------ Tk


def test_tk_host_serves_requests_ticks_on_time_and_sleeps_when_idle(tk_root: Any, real_reactor: Reactor) -> None:
    """A real Tk mainloop drives a RequestServer: 50 threaded requests, call_every on time, no idle polling."""
    serve_in_host(TkHost(tk_root), real_reactor)


def test_tk_update_inside_a_reactor_callback_returns(tk_root: Any, real_reactor: Reactor) -> None:
    """A callback that runs Tk's nested update() while reactor I/O is pending returns; the I/O is served after."""
    import socket

    host = TkHost(tk_root)
    driver = host.attach(real_reactor)
    a, b = socket.socketpair()  # socket-ok: reactor I/O that is ready while update() runs
    got: list[bytes] = []
    order: list[str] = []
    real_reactor.add_reader(a, lambda: got.append(a.recv(10)))

    def nested() -> None:
        b.send(b"x")  # now the reactor's fd is readable inside this turn
        tk_root.update()  # spins forever if the driver still watched its fd here
        order.append("update returned")

    try:
        real_reactor.call_soon(nested)
        host.run_until(lambda: got == [b"x"], limit=5)
        assert order == ["update returned"]
    finally:
        real_reactor.remove_reader(a)
        driver.close()
        a.close()
        b.close()


def test_tk_driver_closed_never_turns_again(tk_root: Any, real_reactor: Reactor) -> None:
    """After close(), work scheduled on the reactor no longer wakes the Tk driver."""
    host = TkHost(tk_root)
    driver = host.attach(real_reactor)
    real_reactor.call_soon(lambda: None)
    host.run_until(lambda: driver.statistics()["turns"] >= 1, limit=5)
    driver.close()
    turns = driver.statistics()["turns"]
    real_reactor.call_soon(lambda: None)
    real_reactor.call_later(0.01, lambda: None)
    host.run_for(0.1)
    assert driver.statistics()["turns"] == turns
    real_reactor.run_once(0)


def gather_tasks_in_host(host: Any, reactor: Reactor) -> None:
    """Tasks run inside the host's loop through its driver: a gather of sleeping tasks, no asyncio loop."""
    import asyncio

    from reactor import gather, sleep

    async def after(delay: float, value: str) -> str:
        await sleep(delay)
        return value

    async def main() -> list[str]:
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()  # no asyncio loop underneath
        return await gather(after(0.05, "a"), after(0.02, "b"))

    driver = host.attach(reactor)
    try:
        task = reactor.create_task(main())
        host.run_until(task.done, limit=5)
        assert task.result() == ["a", "b"]
    finally:
        driver.close()


def test_tk_mainloop_runs_reactor_tasks(tk_root: Any, real_reactor: Reactor) -> None:
    """Reactor tasks run inside Tk's mainloop through the driver, with no asyncio loop."""
    gather_tasks_in_host(TkHost(tk_root), real_reactor)


def test_tk_example_runs_headless(xvfb_display: str) -> None:
    """examples/embed_tk.py serves a request from outside and its own button's request, then exits 0."""
    run_example([str(EXAMPLES / "embed_tk.py")], {"DISPLAY": xvfb_display})


def test_async_tk_button_gathers_both_replies(tk_root: Any, real_reactor: Reactor) -> None:
    """examples/async_tk.py: a click starts a task that asks two servers at once; both replies show in the window."""
    async_tk = _import_example("async_tk")
    host = TkHost(tk_root)
    driver = host.attach(real_reactor)
    app = async_tk.App(tk_root, real_reactor)
    app.reverse.delay = 0.05
    try:
        app.text.set("abc")
        app.button.invoke()
        assert app.task is not None
        host.run_until(lambda: app.status.get() == "done", limit=5)
        assert [var.get() for var in app.replies] == ["ABC", "cba"]
        app.text.set("xyz")
        app.button.invoke()
        first = app.task
        app.button.invoke()  # a second click cancels the first task
        assert app.status.get() == "asking..."
        host.run_until(lambda: app.status.get() == "done", limit=5)
        assert first is not None and first.cancelled()
        assert [var.get() for var in app.replies] == ["XYZ", "zyx"]
    finally:
        app.close()
        driver.close()
    host.run_until(lambda: not real_reactor.connections, limit=5)


def test_async_tk_example_runs_headless(xvfb_display: str) -> None:
    """examples/async_tk.py run as a program: the scheduled click prints both replies, then it exits 0."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "async_tk.py"), "--click-after", "0.2", "--quit-after", "1.5"],
        capture_output=True, text=True, timeout=30, env={**os.environ, "DISPLAY": xvfb_display},
    )
    assert result.returncode == 0, result.stderr
    assert "replies: HELLO | olleh" in result.stdout


def _import_example(name: str) -> Any:
    """Import ``examples/<name>.py`` as a module."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


# ------------------------------------------------------------------------ Qt


def test_qt_host_serves_requests_ticks_on_time_and_sleeps_when_idle(qt_app: Any, real_reactor: Reactor) -> None:
    """A real Qt event loop drives a RequestServer: 50 threaded requests, call_every on time, no idle polling."""
    serve_in_host(QtHost(qt_app), real_reactor)


@pytest.mark.skipif(len(INSTALLED_QT) < 2, reason="the second Qt binding (PySide6 and PyQt6 both) is not installed")
def test_qt_second_binding_in_a_subprocess() -> None:
    """The same host scenario with the other Qt binding, in a process of its own (one QApplication per process)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("embed_hosts.py")), "qt", INSTALLED_QT[1]],
        capture_output=True,
        text=True,
        timeout=25,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == f"ok {INSTALLED_QT[1]}"


def test_qt_exec_runs_reactor_tasks(qt_app: Any, real_reactor: Reactor) -> None:
    """Reactor tasks run inside Qt's exec() through the driver, with no asyncio loop."""
    gather_tasks_in_host(QtHost(qt_app), real_reactor)


def test_qt_close_disables_and_deletes_the_notifier(qt_app: Any, real_reactor: Reactor) -> None:
    """close() disables the QSocketNotifier and stops the QTimer; both are deleted once the loop runs."""
    host = QtHost(qt_app)
    real_reactor.call_later(10, lambda: None)
    driver = attach_qt(real_reactor)  # the running application, found by itself
    assert driver.binding == host.binding
    notifier, timer = driver._notifier, driver._timer
    assert notifier.isEnabled() and timer.isActive()
    destroyed: list[str] = []
    notifier.destroyed.connect(lambda *_: destroyed.append("notifier"))
    timer.destroyed.connect(lambda *_: destroyed.append("timer"))
    driver.close()
    assert not notifier.isEnabled() and not timer.isActive()
    del notifier, timer
    host.run_until(lambda: len(destroyed) == 2, limit=5)
    assert sorted(destroyed) == ["notifier", "timer"]


def test_qt_driver_detaches_quietly_when_the_reactor_closes(qt_app: Any) -> None:
    """Closing the reactor under a live Qt driver: no 'Invalid socket' warning; it detaches at its next wakeup."""
    host = QtHost(qt_app)
    messages: list[str] = []
    previous = host.qtcore.qInstallMessageHandler(lambda kind, context, text: messages.append(text))
    try:
        reactor = Reactor()
        reactor.call_later(0.05, lambda: None)
        driver = attach_qt(reactor, qt_app)
        reactor.close()
        host.run_until(lambda: driver.closed, limit=5)
        host.run_for(0.05)
    finally:
        host.qtcore.qInstallMessageHandler(previous)
    assert driver.closed and driver._notifier is None
    assert not [m for m in messages if "QSocketNotifier" in m], messages


def test_qt_process_events_inside_a_reactor_callback(qt_app: Any, real_reactor: Reactor) -> None:
    """A callback that runs Qt's processEvents() runs no turn inside the turn; everything is served after."""
    host = QtHost(qt_app)
    driver = attach_qt(real_reactor, qt_app)
    order: list[str] = []

    def nested() -> None:
        real_reactor.call_soon(order.append, "next turn")
        qt_app.processEvents()
        order.append("processEvents returned")

    try:
        real_reactor.call_soon(nested)
        host.run_until(lambda: len(order) == 2, limit=5)
    finally:
        driver.close()
    assert order == ["processEvents returned", "next turn"]


def test_qt_binding_choice_is_checked(qt_app: Any, real_reactor: Reactor) -> None:
    """attach_qt rejects an unknown binding and an application object that is not Qt's."""
    with pytest.raises(ValueError, match="PySide6, PyQt6"):
        attach_qt(real_reactor, binding="PyQt5")
    with pytest.raises(TypeError, match="not a PySide6 or PyQt6 application"):
        attach_qt(real_reactor, object())


@pytest.mark.parametrize("binding", INSTALLED_QT or [pytest.param("none", marks=pytest.mark.skip(reason=NO_QT))])
def test_qt_example_runs_headless(binding: str) -> None:
    """examples/embed_qt.py serves a request from outside and its own button's request, then exits 0."""
    run_example([str(EXAMPLES / "embed_qt.py"), "--binding", binding], {"QT_QPA_PLATFORM": "offscreen"})


# ------------------------------------------------------------------ examples


def run_example(command: list[str], env: dict[str, str]) -> None:
    """Run a GUI example headless: ask its server from here, press its button, and check that it exits 0."""
    proc = subprocess.Popen(
        [sys.executable, *command, "--click-after", "0.3", "--quit-after", "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("serving on "), first
        address = first.split()[2]
        assert do_request(address, "from the test", timeout=5) == "echo #1: from the test"
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "reply: echo #2: click 1" in out, out + err
    assert out.rstrip().endswith("served 2 requests"), out + err
