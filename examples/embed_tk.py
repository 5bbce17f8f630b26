"""A reactor inside a Tk window's main loop (Unix).

`reactor.embed.attach_tkinter` registers the reactor's fd with Tk's
``createfilehandler`` and arms an ``after`` timer for its next deadline, so
the reactor runs in the GUI thread without a thread of its own and without
polling.  The window shows an uptime label driven by ``call_every``, the
number of requests a `RequestServer` on ``localhost:0`` has answered (its
address is printed: try ``python -c "import reactor;
print(reactor.do_request('ADDRESS', 'hi'))"``), and a button that sends a
request through `Reactor.request` and shows the reply.  Handlers and
callbacks run in the Tk thread, so they may touch widgets directly.

Run: ``python examples/embed_tk.py``.  Headless, for a test: under Xvfb,
``python examples/embed_tk.py --click-after 0.2 --quit-after 2``.
"""

from __future__ import annotations

import argparse
import tkinter as tk

from reactor import Future, Reactor, RequestServer
from reactor.embed import attach_tkinter


class CountingServer(RequestServer):
    """Answers ``echo #N: request`` and tells the window how many it has served."""

    served = 0
    label: tk.StringVar | None = None

    def handle_request(self, request: str) -> str:
        self.served += 1
        if self.label is not None:
            self.label.set(f"served {self.served} requests")
        return f"echo #{self.served}: {request}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quit-after", type=float, metavar="SECONDS", help="close the window after SECONDS")
    parser.add_argument("--click-after", type=float, metavar="SECONDS", help="press the button once after SECONDS")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = tk.Tk()
    root.title("reactor in Tk")
    root.protocol("WM_DELETE_WINDOW", root.quit)

    with Reactor() as reactor:
        server = CountingServer("localhost:0", reactor=reactor)
        print(f"serving on {server.address}", flush=True)

        uptime = tk.StringVar(root, "uptime 0.0 s")
        server.label = tk.StringVar(root, "served 0 requests")
        reply = tk.StringVar(root, "no reply yet")
        clicks = 0

        def show(future: Future[str]) -> None:
            try:
                text = f"reply: {future.result()}"
            except Exception as exc:  # refused, timed out, failed: show it, keep the window up
                text = f"request failed: {exc!r}"
            reply.set(text)
            print(text, flush=True)

        def send() -> None:
            nonlocal clicks
            clicks += 1
            reactor.request(server.address, f"click {clicks}", timeout=5).add_done_callback(show)

        tk.Label(root, textvariable=uptime).pack(padx=12, pady=4)
        tk.Label(root, textvariable=server.label).pack(padx=12, pady=4)
        button = tk.Button(root, text="Send a request", command=send)
        button.pack(padx=12, pady=4)
        tk.Label(root, textvariable=reply).pack(padx=12, pady=4)

        start = reactor.time()
        ticker = reactor.call_every(0.1, lambda: uptime.set(f"uptime {reactor.time() - start:.1f} s"))
        driver = attach_tkinter(reactor, root)
        if args.click_after is not None:
            root.after(round(args.click_after * 1000), button.invoke)
        if args.quit_after is not None:
            root.after(round(args.quit_after * 1000), root.quit)
        try:
            root.mainloop()
        finally:
            ticker.cancel()
            driver.close()
            server.close()
            root.destroy()
        print(f"served {server.served} requests", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
