"""Tables on the terminal and as CSV, for the commands and a sweep's summary; text cut to a
width; how far a long step has got."""

from __future__ import annotations

import csv
import io
import os
from typing import Sequence


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> None:
    """Columns padded to their widest cell; the last one left ragged. Cells come from run
    files, folder names and configs that anyone may have written: control characters are
    shown as escapes, never sent to the terminal."""
    table = [[visible(str(c)) for c in row] for row in [header, *rows]]
    widths = [max(columns(r[i]) for r in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [c + " " * (w - columns(c)) for c, w in zip(row, widths)] + [row[-1]]
        print(indent + "  ".join(cells).rstrip())


def columns(text: str) -> int:
    """How many columns ``text`` takes on a terminal: Chinese, Japanese and Korean characters
    (and emoji) two, combining accents none, so that a column of class names 猫 and 狗 stays
    aligned with the others."""
    import unicodedata

    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


# Control characters (C0, DEL, C1): a terminal would act on them (move the cursor, clear the
# screen, set the window's title) rather than show them. Unicode's invisible format characters
# too: a right-to-left override shows a run named "r\u202egnp.txt" as "rtxt.png", and
# zero-width ones make two different names look alike. The joiners (U+200C, U+200D) stay:
# Persian, Hindi and emoji sequences need them.
CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))} | {
    code: f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    for first, last in (
        (0x061C, 0x061C), (0x180E, 0x180E), (0x200B, 0x200B), (0x200E, 0x200F), (0x2028, 0x202E),
        (0x2060, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0xE0000, 0xE007F),
    )
    for code in range(first, last + 1)
}


def visible(text: str) -> str:
    """``text`` for a terminal, its control and invisible format characters as escapes (``\\x1b``, ``\\u202e``)."""
    return text.translate(CONTROL)


# Text meant to span lines (generated samples) keeps its line breaks and tabs.
TEXT_CONTROL = {code: escape for code, escape in CONTROL.items() if chr(code) not in "\n\t"}


def visible_text(text: str) -> str:
    """Multi-line ``text`` for a terminal: as :func:`visible`, line breaks and tabs kept."""
    return text.translate(TEXT_CONTROL)


def metric_text(value: float) -> str:
    """A metric's value as the tables show it: four decimals, or four digits and an exponent
    where that would be dozens of digits (a run's 1e308 had printed 309 of them)."""
    return f"{value:.4f}" if abs(value) < 1e9 or value != value else f"{value:.4e}"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([header, *rows])
    return buffer.getvalue()


def printable(name) -> str:
    """A file name as text: bytes that are not UTF-8 (which Python keeps as lone surrogates,
    refused by UTF-8 files, JSON, fonts and TensorFlow) shown as escapes, ``caf\\xe9``."""
    return os.fsencode(str(name)).decode("utf-8", "backslashreplace")


def shorten(text: str, width: int = 80) -> str:
    """``text`` cut to ``width`` characters: an argument quoted in an error line, a label in
    a legend that would be clipped at both ends of its figure."""
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def redrawn_in_place(stream) -> bool:
    """Whether ``stream`` is a terminal that can rewrite a line (a carriage return, then erase
    to its end): not a file or pipe, nor a terminal that says it is ``TERM=dumb`` (Emacs'
    shell and compile buffers), where the escapes showed as ``^[[K`` between copies of a bar."""
    import os

    return stream.isatty() and os.environ.get("TERM", "") != "dumb"


def show_status(line: str, terminal: bool) -> None:
    """A status line on stderr: on a terminal, rewritten in place; elsewhere (a log) one more line."""
    import sys

    print(f"\r\x1b[2K{line}" if terminal else line, end="" if terminal else "\n", file=sys.stderr, flush=True)


def clear_status(terminal: bool) -> None:
    """The terminal's status line taken away before what follows is printed."""
    import sys

    if terminal:
        print("\r\x1b[2K", end="", file=sys.stderr, flush=True)


class Progress:
    """How far a long step over the user's data has got, on stderr: nothing for its first
    ``quiet_s`` seconds (most steps are over by then), then the count, rewritten in place on a
    terminal and a line a minute elsewhere (a log, a batch job's output). Checking a folder of
    a million images had kept the terminal silent for a quarter of an hour, like a hang."""

    def __init__(self, what: str, total: int, quiet_s: float = 10.0):
        import sys
        import time

        self.what, self.total, self.done = what, total, 0
        self.clock = time.monotonic
        self.started, self.said = self.clock(), 0.0
        self.terminal = redrawn_in_place(sys.stderr)
        self.quiet_s, self.every_s = quiet_s, 1.0 if self.terminal else 60.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = self.clock()
        if now - self.started >= self.quiet_s and now - self.said >= self.every_s:
            self.said = now
            line = visible(f"{self.what}: {self.done:,} of {self.total:,} ({self.done / max(self.total, 1):.0%})")  # a folder's name never drives the terminal
            show_status(line, self.terminal)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.said:
            clear_status(self.terminal)
