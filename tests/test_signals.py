"""`Reactor.add_signal_handler` / `remove_signal_handler`: real signals to this process, in the main thread."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator

import pytest
from conftest import run_until

from reactor import Reactor

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs POSIX signals")

SIG = getattr(signal, "SIGUSR1", 10)
SIG2 = getattr(signal, "SIGUSR2", 12)


@pytest.fixture(autouse=True)
def _signals_restored() -> Iterator[None]:
    """Each test leaves the process's handlers of SIGUSR1/2 and its wakeup fd as it found them."""
    before = {sig: signal.getsignal(sig) for sig in (SIG, SIG2)}
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    yield
    after_fd = signal.set_wakeup_fd(fd)
    for sig, handler in before.items():
        signal.signal(sig, handler)
    assert after_fd == fd, "the wakeup fd was not restored"


def wakeup_fd() -> int:
    """The process's current wakeup fd (read by setting it back)."""
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


def test_the_callback_runs_in_a_turn_with_its_arguments(reactor: Reactor) -> None:
    """A signal queues the callback; it runs in the next turn with its arguments, once per signal."""
    calls: list[tuple[str, bool]] = []
    reactor.add_signal_handler(SIG, lambda tag: calls.append((tag, reactor._in_turn)), "usr1")
    signal.raise_signal(SIG)
    os.kill(os.getpid(), SIG)
    assert calls == []  # not in the signal handler
    run_until(reactor, lambda: len(calls) == 2, timeout=0)
    assert calls == [("usr1", True), ("usr1", True)]
    assert reactor.remove_signal_handler(SIG)


def test_a_signal_wakes_a_reactor_blocked_without_timeout(real_reactor: Reactor) -> None:
    """A signal sent while the reactor waits with no timeout wakes it, and the callback runs."""
    got: list[int] = []
    real_reactor.add_signal_handler(SIG, got.append, 7)
    sender = threading.Thread(target=os.kill, args=(os.getpid(), SIG))
    sender.start()
    try:
        run_until(real_reactor, lambda: got == [7], turns=10, timeout=None)  # type: ignore[arg-type]
    finally:
        sender.join(5)
    real_reactor.remove_signal_handler(SIG)


def test_replace_remove_and_restore_the_previous_handler_and_wakeup_fd(reactor: Reactor) -> None:
    """A second add replaces the callback; remove restores the Python handler and wakeup fd there before."""
    seen: list[str] = []

    def previous(signum: int, frame: object) -> None:
        seen.append("previous")

    signal.signal(SIG, previous)
    a, b = socket.socketpair()
    a.setblocking(False)
    old_fd = signal.set_wakeup_fd(a.fileno())
    try:
        reactor.add_signal_handler(SIG, seen.append, "first")
        reactor.add_signal_handler(SIG, seen.append, "second")
        reactor.add_signal_handler(SIG2, seen.append, "other")
        assert wakeup_fd() == reactor._wake_w.fileno()
        signal.raise_signal(SIG)
        run_until(reactor, lambda: bool(seen), timeout=0)
        assert seen == ["second"]
        assert reactor.remove_signal_handler(SIG) is True
        assert reactor.remove_signal_handler(SIG) is False
        assert signal.getsignal(SIG) is previous
        assert wakeup_fd() == reactor._wake_w.fileno()  # SIGUSR2 still needs it
        assert reactor.remove_signal_handler(SIG2) is True
        assert wakeup_fd() == a.fileno()
        signal.raise_signal(SIG)
        assert seen == ["second", "previous"]
    finally:
        signal.set_wakeup_fd(old_fd)
        a.close()
        b.close()


def test_close_restores_the_handlers_and_the_wakeup_fd() -> None:
    """close() of a reactor that handles signals restores SIG_DFL/previous handlers and the wakeup fd."""
    signal.signal(SIG, signal.SIG_IGN)
    signal.signal(SIG2, signal.SIG_DFL)
    before = wakeup_fd()
    r = Reactor()
    r.add_signal_handler(SIG, print)
    r.add_signal_handler(SIG2, print)
    assert wakeup_fd() != before
    r.close()
    assert (signal.getsignal(SIG), signal.getsignal(SIG2)) == (signal.SIG_IGN, signal.SIG_DFL)
    assert wakeup_fd() == before
    assert r.remove_signal_handler(SIG) is False


def test_a_removed_handler_is_not_called_for_a_signal_already_received(reactor: Reactor) -> None:
    """A signal received, then its handler removed before the turn: nothing runs."""
    calls: list[int] = []
    reactor.add_signal_handler(SIG, calls.append, 1)
    reactor.add_signal_handler(SIG2, calls.append, 2)
    signal.raise_signal(SIG)
    reactor.remove_signal_handler(SIG)
    signal.raise_signal(SIG2)
    run_until(reactor, lambda: calls == [2], timeout=0)
    for _ in range(3):
        reactor.run_once(0)
    assert calls == [2]
    reactor.remove_signal_handler(SIG2)


def test_a_handler_that_raises_is_reported_and_the_loop_goes_on(reactor: Reactor) -> None:
    """An exception in a signal callback goes to the exception handler; the next signal is still handled."""
    errors: list[BaseException] = []
    reactor.set_exception_handler(lambda r, context: errors.append(context["exception"]))
    reactor.add_signal_handler(SIG, lambda: 1 / 0)
    signal.raise_signal(SIG)
    signal.raise_signal(SIG)
    run_until(reactor, lambda: len(errors) == 2, timeout=0)
    assert all(isinstance(exc, ZeroDivisionError) for exc in errors)
    reactor.remove_signal_handler(SIG)


def test_the_wakeup_fd_follows_a_repaired_wakeup_pair(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    """When the wakeup socketpair breaks and is recreated, signals reach the new pair."""
    calls: list[str] = []
    reactor.add_signal_handler(SIG, calls.append, "after repair")
    old_w = reactor._wake_w
    old_w.shutdown(socket.SHUT_WR)  # broken behind the reactor's back: its read end sees EOF
    run_until(reactor, lambda: reactor._wake_w is not old_w, timeout=0)
    assert "recreated it" in caplog.text
    assert wakeup_fd() == reactor._wake_w.fileno()
    signal.raise_signal(SIG)
    run_until(reactor, lambda: calls == ["after repair"], timeout=0)
    reactor.remove_signal_handler(SIG)


def test_bad_arguments_fail_clearly_and_change_nothing(reactor: Reactor) -> None:
    """Not a signal, uncatchable, a coroutine function, not callable: clear errors, nothing installed."""
    before = wakeup_fd()

    async def coroutine_function() -> None:
        pass

    with pytest.raises(ValueError, match="not a signal number"):
        reactor.add_signal_handler(0, print)
    with pytest.raises(ValueError, match="not a signal number"):
        reactor.add_signal_handler(10_000, print)
    with pytest.raises(TypeError, match="signal number"):
        reactor.add_signal_handler("SIGUSR1", print)  # type: ignore[arg-type]
    for uncatchable in (signal.SIGKILL, signal.SIGSTOP):
        with pytest.raises(RuntimeError, match="cannot be caught"):
            reactor.add_signal_handler(uncatchable, print)
    with pytest.raises(TypeError, match="coroutine function"):
        reactor.add_signal_handler(SIG, coroutine_function)
    with pytest.raises(TypeError, match="callable"):
        reactor.add_signal_handler(SIG, None)  # type: ignore[arg-type]
    assert reactor._signal_handlers == {} and wakeup_fd() == before
    assert reactor.remove_signal_handler(SIG) is False
    with pytest.raises(ValueError):
        reactor.remove_signal_handler(-1)


def test_only_the_main_thread_may_add_or_remove_handlers(reactor: Reactor) -> None:
    """From another thread add and remove fail with RuntimeError; so does close() of a reactor with handlers."""
    reactor.add_signal_handler(SIG, print)
    errors: list[BaseException] = []

    def elsewhere() -> None:
        for call in (
            lambda: reactor.add_signal_handler(SIG2, print),
            lambda: reactor.remove_signal_handler(SIG),
            reactor.close,
        ):
            try:
                call()
            except BaseException as exc:
                errors.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(5)
    assert [type(exc) for exc in errors] == [RuntimeError] * 3
    assert "main thread" in str(errors[0]) and "main thread" in str(errors[2])
    assert not reactor.is_closed() and list(reactor._signal_handlers) == [SIG]
    assert reactor.remove_signal_handler(SIG)


def test_a_closed_reactor_refuses_handlers() -> None:
    """add_signal_handler on a closed reactor raises, as every scheduling method does."""
    r = Reactor()
    r.close()
    with pytest.raises(RuntimeError, match="closed"):
        r.add_signal_handler(SIG, print)
