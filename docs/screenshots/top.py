"""Capture ``python -m reactor top`` from a real terminal into docs/top.png.

Run from a checkout: ``python docs/screenshots/top.py``.  Needs tmux (the
terminal) and Pillow with the DejaVu Sans Mono font (the renderer).

It starts ``python -m reactor serve --workers 2 --control ... --metrics ...``
on loopback, keeps a few idle clients connected and sends requests
meanwhile, runs the live view in a detached tmux session of 118x26 cells,
reads the screen with ``tmux capture-pane -e`` (text and attributes), and
draws those cells with a monospace font.  What the PNG shows is what the
terminal showed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "docs" / "top.png"
COLUMNS, LINES = 118, 26
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
BACKGROUND, FOREGROUND = (24, 26, 33), (220, 223, 228)
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def cells(text: str) -> list[list[tuple[str, bool, bool]]]:
    """The captured screen as rows of (character, bold, reverse), from its SGR escapes."""
    rows = []
    for line in text.splitlines()[:LINES]:
        bold = reverse = False
        row: list[tuple[str, bool, bool]] = []
        position = 0
        for match in SGR.finditer(line):
            row += [(ch, bold, reverse) for ch in line[position : match.start()]]
            codes = [int(code) if code else 0 for code in match.group(1).split(";")]
            for code in codes:
                if code == 0:
                    bold = reverse = False
                elif code == 1:
                    bold = True
                elif code == 7:
                    reverse = True
                elif code == 22:
                    bold = False
                elif code == 27:
                    reverse = False
            position = match.end()
        row += [(ch, bold, reverse) for ch in line[position:]]
        if any(r for _, _, r in row):  # a reversed line (the footer) spans the screen
            row += [(" ", False, True)] * (COLUMNS - len(row))
        rows.append(row)
    return rows


def render(text: str, output: Path) -> None:
    """Draw the captured screen ``text`` into the PNG ``output``."""
    from PIL import Image, ImageDraw, ImageFont

    regular = ImageFont.truetype(str(FONT_DIR / "DejaVuSansMono.ttf"), 15)
    bold_font = ImageFont.truetype(str(FONT_DIR / "DejaVuSansMono-Bold.ttf"), 15)
    width = round(regular.getlength("M"))
    height = 20
    margin = 12
    image = Image.new("RGB", (COLUMNS * width + 2 * margin, LINES * height + 2 * margin), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for y, row in enumerate(cells(text)):
        for x, (ch, bold, reverse) in enumerate(row[:COLUMNS]):
            left, top = margin + x * width, margin + y * height
            fg, bg = (BACKGROUND, FOREGROUND) if reverse else (FOREGROUND, None)
            if bg is not None:
                draw.rectangle((left, top, left + width, top + height), fill=bg)
            if ch != " ":
                draw.text((left, top + 2), ch, font=bold_font if bold else regular, fill=fg)
    image.save(output)


def main() -> int:
    tmux = shutil.which("tmux")
    if tmux is None:
        print("needs tmux", file=sys.stderr)
        return 1
    env = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm-256color")
    with tempfile.TemporaryDirectory(prefix="top-shot-") as tmp:
        control = os.path.join(tmp, "c.sock")
        out = Path(tmp) / "serve.out"
        command = [sys.executable, "-m", "reactor", "serve", "127.0.0.1:0", "--workers", "2"]
        command += ["--control", control, "--metrics", "127.0.0.1:0"]
        with open(out, "w") as stdout:
            server = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL, env=env, cwd=tmp)
        stop = threading.Event()
        idle: list[socket.socket] = []
        try:
            while "serving" not in out.read_text():
                time.sleep(0.05)
            (address,) = re.findall(r"serving \S+ on (\S+)", out.read_text())

            def load() -> None:
                sys.path.insert(0, str(ROOT))
                from reactor.client import RequestError, do_request

                i = 0
                while not stop.is_set():
                    try:
                        do_request(address, f"request {i}", 5)
                    except (OSError, RequestError):
                        if stop.is_set():
                            return  # the server is shutting down
                        raise
                    i += 1
                    time.sleep(0.01)

            while not os.path.exists(control):
                time.sleep(0.05)
            for i in range(9):
                host, port = address.rsplit(":", 1)
                idle.append(socket.create_connection((host, int(port))))
                if i % 3 == 0:
                    idle[-1].sendall(b"half a request")
                time.sleep(0.3)
            thread = threading.Thread(target=load, daemon=True)
            thread.start()
            tmux_socket = os.path.join(tmp, "tmux.sock")
            top = [sys.executable, "-m", "reactor", "top", control]
            subprocess.run(
                [tmux, "-S", tmux_socket, "new-session", "-d", "-s", "top", "-x", str(COLUMNS), "-y", str(LINES)]
                + ["env", f"PYTHONPATH={ROOT}", "TERM=xterm-256color", *top],
                check=True,
            )
            time.sleep(3.5)  # a few refreshes, so the rates are measured
            screen = subprocess.run(
                [tmux, "-S", tmux_socket, "capture-pane", "-e", "-p", "-t", "top"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            subprocess.run([tmux, "-S", tmux_socket, "send-keys", "-t", "top", "q"], check=True)
            time.sleep(0.3)
            subprocess.run([tmux, "-S", tmux_socket, "kill-server"], capture_output=True)
        finally:
            stop.set()
            for client in idle:
                client.close()
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    render(screen, OUTPUT)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
