"""A reactor inside a Qt window's event loop (PySide6 or PyQt6).

`reactor.embed.attach_qt` puts a ``QSocketNotifier`` on the reactor's fd and
a single-shot ``QTimer`` on its next deadline, so the reactor runs in the GUI
thread without a thread of its own and without polling.  The window shows an
uptime label driven by ``call_every``, the number of requests a
`RequestServer` on ``localhost:0`` has answered (its address is printed: try
``python -c "import reactor; print(reactor.do_request('ADDRESS', 'hi'))"``),
and a button that sends a request through `Reactor.request` and shows the
reply.  Handlers and callbacks run in the GUI thread, so they may touch
widgets directly.

Run: ``python examples/embed_qt.py`` (needs ``pip install PySide6`` or
``PyQt6``).  Headless, for a test: ``QT_QPA_PLATFORM=offscreen python
examples/embed_qt.py --click-after 0.2 --quit-after 2``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Any

from reactor import Future, Reactor, RequestServer
from reactor.embed import QT_BINDINGS, attach_qt


class CountingServer(RequestServer):
    """Answers ``echo #N: request`` and tells the window how many it has served."""

    served = 0
    label: Any = None

    def handle_request(self, request: str) -> str:
        self.served += 1
        if self.label is not None:
            self.label.setText(f"served {self.served} requests")
        return f"echo #{self.served}: {request}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--binding", choices=QT_BINDINGS, help="the Qt binding (default: the first installed)")
    parser.add_argument("--quit-after", type=float, metavar="SECONDS", help="close the window after SECONDS")
    parser.add_argument("--click-after", type=float, metavar="SECONDS", help="press the button once after SECONDS")
    return parser.parse_args(argv)


def first_binding() -> str:
    for name in QT_BINDINGS:
        if importlib.util.find_spec(name) is not None:
            return name
    raise SystemExit(f"this example needs one of {', '.join(QT_BINDINGS)}: pip install PySide6")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binding = args.binding or first_binding()
    qtcore: Any = importlib.import_module(f"{binding}.QtCore")
    widgets: Any = importlib.import_module(f"{binding}.QtWidgets")
    app = widgets.QApplication.instance() or widgets.QApplication(sys.argv[:1])

    with Reactor() as reactor:
        server = CountingServer("localhost:0", reactor=reactor)
        print(f"serving on {server.address} ({binding})", flush=True)

        window = widgets.QWidget()
        window.setWindowTitle("reactor in Qt")
        layout = widgets.QVBoxLayout(window)
        uptime = widgets.QLabel("uptime 0.0 s")
        server.label = widgets.QLabel("served 0 requests")
        reply = widgets.QLabel("no reply yet")
        button = widgets.QPushButton("Send a request")
        for widget in (uptime, server.label, button, reply):
            layout.addWidget(widget)

        start = reactor.time()
        ticker = reactor.call_every(0.1, lambda: uptime.setText(f"uptime {reactor.time() - start:.1f} s"))
        clicks = 0

        def show(future: Future[str]) -> None:
            try:
                text = f"reply: {future.result()}"
            except Exception as exc:  # refused, timed out, failed: show it, keep the window up
                text = f"request failed: {exc!r}"
            reply.setText(text)
            print(text, flush=True)

        def send(*_: object) -> None:
            nonlocal clicks
            clicks += 1
            reactor.request(server.address, f"click {clicks}", timeout=5).add_done_callback(show)

        button.clicked.connect(send)
        driver = attach_qt(reactor, app)
        if args.click_after is not None:
            qtcore.QTimer.singleShot(round(args.click_after * 1000), button.click)
        if args.quit_after is not None:
            qtcore.QTimer.singleShot(round(args.quit_after * 1000), app.quit)
        window.show()
        try:
            app.exec()
        finally:
            ticker.cancel()
            driver.close()
            server.close()
        print(f"served {server.served} requests", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
