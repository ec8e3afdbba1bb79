"""Errors the zoo reports to users as one line (no traceback unless asked for)."""

import re
import sys
from typing import Optional


class ZooError(Exception):
    """A problem with the user's input or environment; the message says what and how to fix it."""


class UnknownNameError(ZooError, KeyError):
    """No registered item has this name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class PluginError(ZooError):
    """A plugin failed to load or registered something invalid (fatal in strict mode)."""


class PluginWarning(UserWarning):
    """A plugin was skipped because it is broken (an error in strict mode)."""


class InputWarning(UserWarning):
    """A user's input file that was skipped (``zoo predict`` on a folder with a broken image)."""


class Interrupted(ZooError):
    """Training stopped on a signal (SIGINT, SIGTERM, SIGHUP, a closed output) after saving a
    checkpoint at the current step."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number


# Signals that end a process unless it handles them, sent by batch systems before they end a
# job (SLURM's --signal=USR1@120, SGE's -notify, LSF's warning action and CPU limit) and by
# `ulimit -t`: they had killed a training where it stood, its last minutes lost, nothing said.
# The zoo stops on them as on SIGTERM where nobody else handles them (submitit's USR2 stays its own).
NOTICE_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGXCPU")


def one_line(exc: BaseException) -> str:
    """A library's exception as text for a one-line message: its lines joined, and Keras'
    terminal styling taken out (printed escaped, ``\\x1b[1m`` had stood around the words that
    mattered) along with the arguments it lists after them."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())
    called = re.fullmatch(r"Exception encountered when calling (\S+?)\.? (.*?)(?: Arguments received by .*)?", text)
    return f"{called.group(1)}: {called.group(2)}" if called else text


def long_number(text: str) -> Optional[tuple[int, int]]:
    """Where the first run of digits in ``text`` longer than Python turns into a whole number
    starts (its ``int_max_str_digits``: 4,300 unless set otherwise; 0 means no limit), and
    how many digits it has; None if there is none."""
    limit = sys.get_int_max_str_digits()
    number = re.search(rf"[0-9][0-9_]{{{limit},}}", text) if limit else None
    return (number.start(), len(number.group().replace("_", ""))) if number else None


def number_too_long(digits: int) -> str:
    """What to say of a number Python refused to read for its length (``int("9" * 5000)``:
    "Exceeds the limit ... use sys.set_int_max_str_digits()", a fix for programmers)."""
    return (
        f"a number of {digits:,} digits, more than Python reads as one "
        f"({sys.get_int_max_str_digits():,}); write a shorter one, or quote it to keep it as text"
    )


def innermost_module(exc: BaseException) -> str:
    """The module whose code raised ``exc``."""
    tb, module = exc.__traceback__, "zoo"
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", module)
        tb = tb.tb_next
    return module
