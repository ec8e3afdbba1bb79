"""The ``zoo`` command: list and describe plugins, train through Hydra, evaluate runs.

``zoo list`` and ``zoo info`` never import TensorFlow. ``zoo train`` hands its arguments
to Hydra unchanged (overrides, ``-m``, ``--cfg job``, ``--help``, ``hydra.run.dir=...``)
after checking the composed config, so that mistakes cost one line, not a traceback.
"""

from __future__ import annotations

import argparse
import codecs
import collections
import contextlib
import csv
import dataclasses
import errno
import json
import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, NoReturn, Optional, Sequence

from zoo import __version__, hookspecs
from zoo.errors import NOTICE_SIGNALS, InputWarning, Interrupted, PluginWarning, ZooError, innermost_module, number_too_long, one_line
from zoo.tables import csv_text, metric_text, print_table, shorten, visible, visible_text

EXIT_USAGE = 2
# Arguments with which Hydra prints something and runs nothing: no need to pre-check.


class ZooExit(SystemExit):
    """An exit the zoo chose, its line printed: told apart from a plugin's ``sys.exit()``
    also when a launcher brings it back from a job's process (joblib pickles it)."""


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    message = visible(" ".join(message.split()))  # one line, also when a library's reason spans several
    print(f"zoo: error: {message}", file=sys.stderr)
    raise ZooExit(code)


def traceback_requested() -> bool:
    return os.environ.get("ZOO_TRACEBACK") == "1" or os.environ.get("HYDRA_FULL_ERROR") == "1"


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # Plugin problems are for users: one line, without the warnings module's source echo.
    if issubclass(category, (PluginWarning, InputWarning)):
        print("zoo: warning: " + "\n".join(visible(text) for text in str(message).splitlines()), file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def _log_unraisable(unraisable) -> None:
    """An exception raised where Python cannot pass it on (a finalizer): a library's ZipFile
    or process pool cleaned up after a failed write or a lost peer. Python prints "Exception
    ignored in ..." and a traceback, after the zoo's own one line (seen with Keras 3.15.0
    and TensorFlow 2.16); it goes to the run's log instead, and ZOO_TRACEBACK=1 prints it."""
    try:
        logging.getLogger("zoo").info("ignored in %r: %s", unraisable.object, one_line(unraisable.exc_value))
    except Exception:  # at interpreter exit, logging may be gone: nothing to say it with
        pass


class TerminalFormatter(logging.Formatter):
    """A run's log records that reach the terminal (warnings and worse) as the zoo's own
    lines say them, "zoo: warning: ..." on stderr: they had been "[2026-12-07 17:09:05,519]
    [zoo.optimization][WARNING] - ..." on stdout, beside the zoo's other warnings on stderr.
    ``train.log`` keeps the full format."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += f" ({one_line(record.exc_info[1])})"
        if record.name.split(".")[0] not in ("zoo", "zoo_plugins", "root"):  # a library's or a plugin's: named
            text = f"{record.name}: {text}"
        return f"zoo: {record.levelname.lower()}: " + "\n".join(visible(line) for line in text.splitlines())


TERMINAL_ERRORS = "zoo-terminal"


def terminal_errors(exc: UnicodeError) -> tuple[Any, int]:
    """The codec error handler of the zoo's output streams: a name's undecodable bytes
    (lone surrogates U+DC80..U+DCFF) written back as those bytes, what the encoding cannot
    hold as a backslash escape."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text = exc.object[exc.start : exc.end]
    if all("\udc80" <= c <= "\udcff" for c in text):
        return bytes(ord(c) - 0xDC00 for c in text), exc.end
    return codecs.backslashreplace_errors(exc)


@contextlib.contextmanager
def stdout_for_the_commands_output(whole_process: bool) -> Iterator[None]:
    """Stdout carries the command's own output (tables, ``--json``, ``--csv``: what programs
    read) and nothing else: a plugin's thread printing meanwhile, its ``atexit`` handler
    printing after the command, and C code write to stderr instead; each had made
    ``zoo list --json`` invalid JSON. ``whole_process``: the process is the command (the
    ``zoo`` program), so stdout stays closed to others after it; in-process callers (tests,
    a program calling ``main``) get their stdout back."""
    sys.stdout.flush()
    try:
        data = os.dup(sys.stdout.fileno())
        os.dup2(2, 1)
    except (OSError, ValueError, AttributeError):  # no descriptors (a capturing stream, stdout closed)
        yield
        return
    original = sys.stdout
    output = open(data, "w", buffering=1 if getattr(original, "line_buffering", False) else -1,
                  encoding=getattr(original, "encoding", None) or "utf-8", errors=TERMINAL_ERRORS, closefd=False)  # fmt: skip
    sys.stdout = MainThreadsOutput(output)
    try:
        yield
        output.flush()  # here, so that a reader gone reaches main's BrokenPipeError
    finally:
        with contextlib.suppress(OSError, ValueError):
            output.close()  # what an error left unwritten, flushed if it can be (the descriptor stays open)
        if whole_process:
            sys.stdout = sys.stderr
        else:
            os.dup2(data, 1)
            sys.stdout = original
        os.close(data)


class MainThreadsOutput:
    """Stdout as the command writes it: the main thread's writes (the zoo's) go to the
    command's output, other threads' (plugin code's) to stderr."""

    def __init__(self, output):
        self.output = output

    def _target(self):
        import threading

        return self.output if threading.current_thread() is threading.main_thread() else sys.stderr

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.output, name)


class ReaderlessStream:
    """The terminal's stdout or stderr while ``zoo train`` runs. Once nobody reads it (a
    pipe's reader left: ``zoo train | head``; a terminal hung up) what is written there is
    dropped, where the next progress line had failed the run with "Broken pipe", and the
    training under way stops at its next step with a checkpoint, as on SIGPIPE (or SIGHUP);
    train.log has the rest."""

    GONE = {errno.EPIPE: "SIGPIPE", errno.EIO: "SIGHUP"}

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as exc:
            self._gone(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            self._gone(exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def _gone(self, exc: OSError) -> None:
        if exc.errno not in self.GONE:
            raise exc
        import signal

        # Later writes, C code's included, and what is still buffered go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
        with contextlib.suppress(OSError):
            self.stream.flush()
        from zoo.training import terminal_lost

        terminal_lost(getattr(signal, self.GONE[exc.errno]))


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv_given, argv = argv, list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _show_warning
    if not traceback_requested():
        sys.unraisablehook = _log_unraisable
    # Started with stdout or stderr closed (`zoo train >&-`, a detached service): Python makes
    # them None. What would go there is dropped (open() takes the free descriptor, so C
    # code's prints too); the run and its files are what count.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))
    # A file name that is not UTF-8 (Python keeps its bytes as lone surrogates) is printed
    # as the bytes it is, as ls does, rather than failing the command in a UTF-8 locale; a
    # character the terminal's encoding lacks (a class named 猫 on a Latin-1 terminal) as
    # its escape, rather than failing the command (a run, at its first progress bar).
    codecs.register_error(TERMINAL_ERRORS, terminal_errors)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=TERMINAL_ERRORS)
    # The zoo's models, data pipelines and exports are TensorFlow's: a KERAS_BACKEND=jax exported
    # for other work (or keras.json's choice) would make every command fail; launchers' jobs inherit it.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    # The zoo's pictures are files: Matplotlib's file backend, whatever MPLBACKEND a desktop
    # session left (one Matplotlib does not know had failed every run and `compare --plot`;
    # a GUI one loaded its toolkit, a module:// one imported that module).
    os.environ["MPLBACKEND"] = "agg"
    # A launcher's job processes start as `python -c ...` or `-m ...`, which put the working
    # folder first on sys.path: a numpy.py or json.py of the user's there was imported in
    # every joblib job (its code run; the sweep failing on "Can't get attribute 'ndarray'").
    # The `zoo` command itself never had it there. Inherited by every process a launcher starts.
    os.environ["PYTHONSAFEPATH"] = "1"
    os.environ.update(private_homes())
    if "--strict-plugins" in argv[: argv.index("train") if "train" in argv else len(argv)]:
        argv.remove("--strict-plugins")
        os.environ["ZOO_STRICT_PLUGINS"] = "1"  # inherited by launcher processes too
    try:
        if argv[:1] == ["__complete"]:  # what a TAB press asks (zoo.completion's shell scripts)
            completion_query(argv[1:])
            return
        # Hydra's spelling: zoo train -sc install=bash (after overrides too), and its script's `zoo -sc query=bash`
        if {"-sc", "--shell-completion"} & set(argv if argv[:1] == ["train"] else argv[:3]):
            hydra_shell_completion(argv)
            return
        if argv and argv[0] == "train":
            try:
                os.getcwd()
            except FileNotFoundError:  # deleted under the shell: Hydra fails on it with a traceback
                raise ZooError("the working directory no longer exists (deleted or moved); cd into a folder that does") from None
            sys.stdout, sys.stderr = ReaderlessStream(sys.stdout), ReaderlessStream(sys.stderr)
            train_command(argv[1:])
            if TERMINATED:  # raised where Python drops it (a finalizer), the run went on to its end
                raise Terminated(TERMINATED[0])
            return
        if not argv:  # `zoo` alone: what it can do, not a usage error
            build_parser().print_help()
            return
        args = parse_command(argv)
        stop_cleanly_on_termination()
        with stdout_for_the_commands_output(whole_process=argv_given is None):
            args.handler(args)
        if TERMINATED:  # raised where Python drops it (a finalizer), the command went on to its end
            raise Terminated(TERMINATED[0])
    except ZooError as exc:
        if traceback_requested():
            raise
        fail(str(exc))
    except BrokenPipeError:  # `zoo list | head`: the reader left; no traceback
        if sys.stdout is not sys.stderr:  # Python's flush at exit would fail on it again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise ZooExit(1)
    # The last nets under the checks above, for what they did not foresee: a file system's
    # refusal, an input nested past Python's recursion limit. One line still; ZOO_TRACEBACK=1
    # shows where.
    except OSError as exc:
        if traceback_requested():
            raise
        if TERMINATED:
            stopped(TERMINATED[0])
        fail(os_error_line(exc))
    except RecursionError as exc:
        if traceback_requested():
            raise
        if in_defaults_list(exc):  # Hydra following a preset's defaults back to itself
            fail("a config's defaults list leads back to itself (directly or through other configs); remove the loop")
        fail("an input is nested too deeply to read (a damaged file or argument); ZOO_TRACEBACK=1 shows which")
    except Terminated as exc:
        if traceback_requested():
            raise
        stopped(exc.signal)
    except KeyboardInterrupt:  # Ctrl-C outside training (which saves a checkpoint and says so itself)
        if traceback_requested():
            raise
        print("zoo: interrupted", file=sys.stderr)
        raise ZooExit(130)
    except Exception as exc:  # what a library raised on input no check foresaw: named, in one line
        if traceback_requested():
            raise
        if TERMINATED:
            stopped(TERMINATED[0])
        fail(describe_failure(exc))
    except SystemExit as exc:  # the zoo's, argparse's and Hydra's own exits, or one from plugin code: a failure
        if isinstance(exc, ZooExit) or raised_in(exc, ("zoo", "argparse", "hydra")) or traceback_requested():
            raise
        fail(describe_failure(exc))
    finally:
        exit_despite_stray_threads()


def stopped(number: int) -> NoReturn:
    """The end of a command a signal stopped, whatever the exception it surfaced as: a library
    caught the one raised in its midst and failed in its own words (Matplotlib drawing for
    `zoo explain`: "Invalid affine transformation matrix")."""
    print(f"zoo: stopped by {signal.Signals(number).name}", file=sys.stderr)
    raise ZooExit(128 + number)


class Terminated(KeyboardInterrupt):
    """SIGTERM, SIGHUP or a notice signal, raised where the command is, as Ctrl-C is."""

    def __init__(self, number: int):
        super().__init__(number)
        self.signal = number


TERMINATED: list[int] = []  # the signal that stopped the command


def stop_cleanly_on_termination(training: bool = False) -> None:
    """A command stops on SIGTERM (a scheduler, `timeout`), SIGHUP (its terminal closed) or a
    batch system's notice signal (NOTICE_SIGNALS) as on Ctrl-C, so that what it
    was writing is taken back: killed by any, `zoo explain` had left a half set of pictures,
    and `zoo predict -o` its temporary file. Training catches them itself, to save a
    checkpoint first. A signal ignored (`nohup`) or handled by someone else stays so."""
    if training:  # imported now: an import inside a signal handler can meet one under way
        from zoo.training import terminal_lost

    def stop(number, frame) -> None:
        TERMINATED.append(number)
        if training:  # should Python drop the exception (raised in a finalizer), the next training step stops
            terminal_lost(number)
        raise Terminated(number)

    stop.zoo_stops = True  # type: ignore[attr-defined]  # training's catcher takes these over
    for name in ("SIGTERM", "SIGHUP", *NOTICE_SIGNALS):
        if signal.getsignal(getattr(signal, name)) is signal.SIG_DFL:
            signal.signal(getattr(signal, name), stop)


STRAY_THREAD_SECONDS = 30.0


def exit_despite_stray_threads() -> None:
    """Python waits at exit for every thread not marked daemon: one that plugin code left
    running (a callback's uploader, a helper that sleeps) kept `zoo` from ever exiting once
    its work was done. Such threads get ``STRAY_THREAD_SECONDS`` to end; then the process
    exits with the command's status, saying which threads it left."""
    import threading
    import time

    if not any(not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        return
    ending = sys.exc_info()[1]
    code = 0 if ending is None else ending.code if isinstance(ending, SystemExit) else 1
    code = code if isinstance(code, int) else 0 if code is None else 1

    def leave() -> None:
        time.sleep(STRAY_THREAD_SECONDS)
        names = ", ".join(repr(t.name) for t in threading.enumerate() if not t.daemon and t is not threading.main_thread())
        print(
            f"zoo: warning: thread(s) {names} still running {STRAY_THREAD_SECONDS:.0f} s after the command ended "
            "(started by a plugin?); exiting without them",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(code)

    threading.Thread(target=leave, name="zoo-exit", daemon=True).start()


def parse_command(argv: list[str]) -> argparse.Namespace:
    """The command line as argparse reads it, with a command's flags and words in any order:
    argparse fills a command's words from their first run only, and refused the last word
    of ``zoo evaluate RUN --json metrics=[f1]`` and of ``zoo list metric --json 'a*'``.
    Those are read again by the command's own parser, intermixed."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras and not any(word.startswith("-") for word in extras):
        command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[argv[0]]
        return argparse.Namespace(**{**vars(args), **vars(command.parse_intermixed_args(argv[1:]))})
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


class OneLineParser(argparse.ArgumentParser):
    """argparse's mistakes as the zoo's others: one line naming the fix, exit status 2
    (argparse prints its usage text first)."""

    def error(self, message: str) -> NoReturn:
        import difflib
        import re

        typed = re.search(r"^argument (.+?): invalid choice: '(.*?)' \(choose from (.*)\)$", message)
        if typed:  # `zoo trian`, `zoo help train`, `--format tflte`
            argument, given = typed.group(1), typed.group(2)
            close = difflib.get_close_matches(given.lower(), re.findall(r"'([^']*)'", typed.group(3)), n=1)
            if argument == "COMMAND" and given == "help":
                fail(f"there is no help command: '{self.prog} --help' lists the commands, '{self.prog} COMMAND --help' explains one")
            if close:
                unknown = f"unknown command {given!r}" if argument == "COMMAND" else message
                fail(f"{unknown}; did you mean {close[0]!r}? (see '{self.prog} --help')")
        fail(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="zoo",
        description="A plugin-based model zoo for TensorFlow/Keras.",
        epilog=(
            "commands:\n"
            "  zoo list [KIND] [PATTERN] [--json]   models, datasets, metrics, callbacks, loggers\n"
            "  zoo info [KIND] NAME [--json]        an item's summary and config fields\n"
            "  zoo info [PLUGIN] [--json]           installed plugins: hooks, items, errors\n"
            "  zoo check [DIST_OR_NAME] [--json]    run the conformance checks on plugins\n"
            "  zoo new plugin NAME                  scaffold a plugin distribution\n"
            "  zoo train [OVERRIDES...]             train with Hydra (zoo train --help)\n"
            "  zoo evaluate RUN_DIR [KEY=VALUE...]  re-evaluate a finished run on its test split\n"
            "  zoo predict RUN_DIR INPUT... [--csv] predictions on images, folders or CSV rows\n"
            "  zoo generate RUN_DIR [n=N] [...]     new images or texts from a generative run\n"
            "  zoo explain RUN_DIR INPUT...         attribution pictures: --method integrated_gradients, gradcam, ...\n"
            "  zoo export RUN_DIR --format F        keras, saved_model or tflite [--quantize [int8|float16]]\n"
            "  zoo compare RUN_DIR...|SWEEP_DIR     differing config values and test metrics\n\n"
            "environment: ZOO_STRICT_PLUGINS=1, ZOO_DISABLE_PLUGIN_AUTOLOAD=1,\n"
            "ZOO_DISABLE_PLUGINS=dist1,dist2, ZOO_TRACEBACK=1 (full tracebacks),\n"
            "ZOO_PLUGIN_IMPORT_LIMIT=2 (seconds), ZOO_PLUGIN_CACHE=0, ZOO_CACHE_DIR=<folder>"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    parser.add_argument("--strict-plugins", action="store_true", help="a plugin that fails to load is an error")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    listing = commands.add_parser("list", help="list registered plugins")
    listing.add_argument("kind", nargs="?", help="model, dataset, metric, callback or logger (or a pattern)")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern, e.g. 'cnn*'")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=list_command)

    info = commands.add_parser(
        "info", help="describe a model, dataset, metric, callback or logger, the trainer or device keys, or the plugins"
    )
    info.add_argument("names", nargs="*", default=[], metavar="[KIND] NAME | PLUGIN | trainer | device")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument(
        "--no-cost", action="store_true", help="models: skip the parameter and FLOP counts (which load TensorFlow)"
    )
    info.set_defaults(handler=info_command)

    commands.add_parser("train", help="train a model (Hydra overrides follow; see 'zoo train --help')")

    checking = commands.add_parser("check", help="run the conformance checks on installed plugins")
    checking.add_argument(
        "target", nargs="?", metavar="DIST_OR_NAME", help="a distribution, entry point or item name (default: all)"
    )
    checking.add_argument("--json", action="store_true", help="machine-readable output")
    checking.set_defaults(handler=check_command)

    scaffolding = commands.add_parser("new", help="scaffold a new project: zoo new plugin NAME")
    scaffolding.add_argument("what", choices=["plugin"], help="what to create")
    scaffolding.add_argument("name", metavar="NAME", help="the plugin's name, e.g. 'demo' (makes zoo-demo/)")
    scaffolding.add_argument("--directory", "-d", type=Path, default=Path("."), help="where to create it (default: here)")
    scaffolding.set_defaults(handler=new_command)

    evaluation = commands.add_parser("evaluate", help="evaluate a finished run's model on its test split")
    evaluation.add_argument("run_dir", metavar="RUN_DIR", help="a run directory printed by 'zoo train'")
    evaluation.add_argument(
        "overrides", nargs="*", default=[], metavar="KEY=VALUE",  # a default: not named among the required arguments
        help="config changes, e.g. metrics=[f1,auc] dataset.test_fraction=0.3; device=KIND (default auto: this machine's, not the run's)",
    )  # fmt: skip
    evaluation.add_argument("--json", action="store_true", help="machine-readable output")
    evaluation.set_defaults(handler=evaluate_command)

    predicting = commands.add_parser("predict", help="predict with a finished run's model on your files")
    predicting.add_argument("run_dir", metavar="RUN_DIR", help="a run directory printed by 'zoo train'")
    predicting.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, or CSV files")
    predicting.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    predicting.add_argument("--output", "-o", type=Path, help="also write the predictions to this CSV file")
    predicting.add_argument("--force", action="store_true", help="replace an existing --output file")
    predicting.set_defaults(handler=predict_command)

    explaining = commands.add_parser("explain", help="what drove a classifier run's predictions: attribution pictures")
    explaining.add_argument("run_dir", metavar="RUN_DIR", help="a finished classifier run printed by 'zoo train'")
    explaining.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, or CSV files")
    explaining.add_argument(
        "--method", "-m", default="integrated_gradients",
        help="integrated_gradients (default), saliency, gradcam (convolutional models), occlusion (any model), "
        "lime, shap (pip install 'keras-zoo[explain]')",
    )  # fmt: skip
    explaining.add_argument("--target", help="the class to explain, by name or index (default: the predicted one)")
    explaining.add_argument("--output", "-o", type=Path, help="folder for the pictures and CSV (default: RUN_DIR/explanations)")
    explaining.add_argument("--steps", type=int, help="integrated_gradients: points on the path (default 128)")
    explaining.add_argument(
        "--baseline", type=float, help="integrated_gradients, occlusion, lime, shap: the reference value (default 0: black; the mean of standardised features)"
    )
    explaining.add_argument("--layer", help="gradcam: the layer whose feature maps to use (default: the last with spatial maps)")
    explaining.add_argument("--window", type=int, help="occlusion: patch side in pixels (default: an eighth of the image)")
    explaining.set_defaults(handler=explain_command)

    generating = commands.add_parser("generate", help="draw new images or texts from a generative run's model")
    generating.add_argument("run_dir", metavar="RUN_DIR", help="a run directory printed by 'zoo train'")
    generating.add_argument(
        "options", nargs="*", default=[], metavar="KEY=VALUE", help="n=16 seed=3, and the model's own (texts: prompt, length, temperature)"
    )
    generating.add_argument("--output", "-o", type=Path, help="images: a .png grid or .npy arrays; texts: a .txt file")
    generating.add_argument("--force", action="store_true", help="replace an existing --output file")
    generating.set_defaults(handler=generate_command)

    exporting = commands.add_parser("export", help="export a finished run's model for serving")
    exporting.add_argument("run_dir", metavar="RUN_DIR", help="a run directory printed by 'zoo train'")
    exporting.add_argument("--format", default="keras", help="keras, saved_model or tflite (default: keras)")
    exporting.add_argument(
        "--quantize",
        nargs="?",
        const="dynamic",
        metavar="KIND",
        help="tflite: dynamic (8-bit weights; the default with no KIND), float16, or int8 (integer weights, "
        "activations, input and output; calibrated on the training split)",
    )
    exporting.add_argument("--output", "-o", type=Path, help="where to write (default: RUN_DIR/export/...)")
    exporting.add_argument(
        "--force", action="store_true", help="replace the zoo's own earlier export there (never anything else)"
    )
    exporting.set_defaults(handler=export_command)

    comparing = commands.add_parser("compare", help="compare finished runs: differing config values and metrics")
    comparing.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR|SWEEP_DIR", help="runs, or sweeps of runs")
    comparing.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    comparing.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw the comparison into this .png, .svg or .pdf file")
    comparing.add_argument("--force", action="store_true", help="replace an existing --plot file")
    comparing.set_defaults(handler=compare_command)

    completing = commands.add_parser("completion", help="print the tab-completion script: eval \"$(zoo completion bash)\"")
    completing.add_argument("shell", choices=["bash", "zsh"], help="the shell")
    completing.set_defaults(handler=lambda args: print(completion_script(args.shell), end=""))
    return parser


def completion_script(shell: str) -> str:
    from zoo import completion

    return completion.script(shell)


def hydra_shell_completion(argv: list[str]) -> None:
    """Hydra's completion flag, answered by the zoo's own completion: Hydra's script would
    complete ``zoo`` as a single-command program and call ``zoo -sc query=bash``, which
    ``zoo`` (a program with commands) cannot answer as Hydra expects."""
    flag = next(i for i, a in enumerate(argv) if a in ("-sc", "--shell-completion"))
    action, _, shell = (argv[flag + 1] if flag + 1 < len(argv) else "").partition("=")
    if shell not in ("bash", "zsh") or action not in ("install", "uninstall", "query"):
        raise ZooError("use -sc install=bash (or zsh), or: eval \"$(zoo completion bash)\"")
    if action == "install":
        print(completion_script(shell), end="")
    elif action == "uninstall":
        print("complete -r zoo" if shell == "bash" else "compdef -d zoo")
    else:  # Hydra's installed script, still in a user's shell: whole words, from COMP_LINE
        line = os.environ.get("COMP_LINE", "")
        completion_query(["zsh", line[: int(os.environ.get("COMP_POINT", len(line)))]])


def completion_query(args: list[str]) -> None:
    """``zoo __complete SHELL LINE``: one candidate per line. A broken plugin's warning or
    any error must not land in the shell's line: they are dropped."""
    from zoo import completion

    if len(args) != 2 or args[0] not in completion.SCRIPTS:
        raise ZooError("usage: zoo __complete bash|zsh LINE (called by the completion script)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            candidates = completion.complete(args[0], args[1], build_parser())
        except Exception:  # a TAB shows nothing rather than a traceback in the prompt
            candidates = []
    print("\n".join(candidates))


def _kind(word: str) -> Optional[str]:
    word = word.lower().rstrip("s") if word.lower() != "metrics" else "metric"
    return word if word in hookspecs.KINDS else None


# --------------------------------------------------------------------------------------
# zoo list / zoo info
# --------------------------------------------------------------------------------------


def list_command(args: argparse.Namespace) -> None:
    import fnmatch

    kind, pattern = None, args.pattern
    if args.kind:
        kind = _kind(args.kind)
        if kind is None:  # `zoo list 'cnn*'`: the first word is a pattern
            if args.pattern != "*":
                raise ZooError(f"unknown kind {args.kind!r}; use model, dataset, metric, callback or logger")
            pattern = args.kind
    everything = listing()
    items = [i for i in everything["items"] if (kind is None or i["kind"] == kind) and fnmatch.fnmatchcase(i["name"], pattern)]
    plugins = everything["plugins"]
    if args.json:
        print(json.dumps({"items": items, "plugins": plugins}, indent=2))
        return
    marks = {"conflict": " (conflict)", "shadowed": " (shadowed)"}
    rows = [(i["kind"], i["name"] + marks.get(i["status"], ""), f"{i['distribution']} {i['version']}".strip(), i["summary"]) for i in items]
    if rows:
        print_table(("KIND", "NAME", "DISTRIBUTION", "SUMMARY"), rows)
    else:
        print(f"no {kind or 'item'} matches {pattern!r}")
    for status, heading in (("broken", "Broken plugins (skipped)"), ("incompatible", "Plugins for other zoo versions (not loaded)")):
        skipped = [plugin for plugin in plugins if plugin["status"] == status]
        if skipped:
            print(f"\n{heading}:")
        for plugin in skipped:
            print(f"  {plugin['distribution']} {plugin['version']}, entry point {plugin['entry_point']!r} ({plugin['value']}): {plugin['error']}")
    from zoo.discovery import import_limit

    slow = [plugin for plugin in plugins if max(plugin["import_seconds"], plugin["hook_seconds"]) > import_limit()]
    if slow:
        print(f"\nSlow plugins (every zoo command waits for their import and hooks; limit {import_limit():g} s, ZOO_PLUGIN_IMPORT_LIMIT):")
    for plugin in slow:
        print(
            f"  {plugin['distribution']} {plugin['version']}, entry point {plugin['entry_point']!r}: "
            f"import {plugin['import_seconds']:.1f} s, hooks {plugin['hook_seconds']:.1f} s"
        )
    claimed: dict[tuple[str, str], list[dict]] = {}
    for item in everything["items"]:
        claimed.setdefault((item["kind"], item["name"]), []).append(item)
    for (item_kind, name), claims in claimed.items():
        if any(c["status"] == "conflict" for c in claims):
            owners = " and ".join(f"{c['distribution']} {c['version']}".strip() for c in claims)
            print(f"\nConflict: {item_kind} {name!r} is registered by {owners}; it cannot be used "
                  f"until one is uninstalled or skipped with ZOO_DISABLE_PLUGINS")  # fmt: skip
        shadowed = [c["distribution"] for c in claims if c["status"] == "shadowed"]
        if shadowed:
            print(f"\nShadowed: {item_kind} {name!r} of {' and '.join(shadowed)} is not used: the zoo's own {item_kind} "
                  f"keeps the name; rename it in {' and '.join(shadowed)}")  # fmt: skip


def listing() -> dict:
    """Every item and plugin as ``zoo list --json`` shows them, from the discovery cache
    while it describes what is installed."""
    from zoo.discovery import cached_listing
    from zoo.registry import get_registry

    def build() -> dict:
        registry = get_registry()
        status = {id(claim): "conflict" for claims in registry.conflicts() for claim in claims}
        status.update({id(claim): "shadowed" for claims in registry.shadowed() for claim in claims[1:]})
        items = [{**_entry_json(e), "status": status.get(id(e), "ok")} for e in registry.list()]
        # Claims of one name in an order of their own, not the order the distributions were
        # found in (the path's order: it differed between `zoo` and `python -m zoo`): the one used first.
        first = {}
        for position, item in enumerate(items):
            first.setdefault((item["kind"], item["name"]), position)
        items.sort(key=lambda i: (first[i["kind"], i["name"]], i["status"] == "shadowed", i["distribution"]))
        return {"items": items, "plugins": plugin_descriptions(registry)}

    return cached_listing(build)


def _dist(source) -> str:
    return f"{source.distribution} {source.version}".strip()


def _entry_json(entry) -> dict:
    return {
        "kind": entry.kind,
        "name": entry.name,
        "summary": entry.summary,
        "distribution": entry.source.distribution,
        "version": entry.source.version,
        "entry_point": entry.source.name,
    }


def plugin_descriptions(registry) -> list[dict]:
    """Per plugin: where it comes from, the hooks it implements, what it registered (items
    and config paths) and why it is not loaded, if it is not."""
    registered = {}
    for entry in registry.list():
        registered.setdefault(id(entry.source), []).append(f"{entry.kind}/{entry.name}")
    for source, path in registry.config_paths:
        registered.setdefault(id(source), []).append(f"config/{path}")
    hooks = {}
    for source in registry.sources:
        if source.error is None:
            callers = registry.plugin_manager.get_hookcallers(source.plugin) or []
            hooks[id(source)] = sorted(c.name for c in callers)
    return [
        {
            "entry_point": s.name,
            "value": s.value,
            "distribution": s.distribution,
            "version": s.version,
            "supports_zoo": s.supports or None,
            "status": s.status,
            "error": s.error,
            "import_seconds": round(s.import_seconds, 3),
            "hook_seconds": round(s.hook_seconds, 3),
            "hooks": hooks.get(id(s), []),
            "registered": registered.get(id(s), []),
        }
        for s in registry.sources
    ]


def _plugin_named(plugin: dict, name: str) -> bool:
    from zoo.discovery import normalise_name

    return normalise_name(plugin["distribution"]) == normalise_name(name) or plugin["entry_point"] == name


def show_plugins(plugins: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(plugins, indent=2))
        return
    for number, plugin in enumerate(plugins):
        print(("\n" if number else "") + f"plugin {plugin['entry_point']!r} ({plugin['value']}): {plugin['status']}")
        supports = f", supports keras-zoo{plugin['supports_zoo']}" if plugin["supports_zoo"] else ""
        print(f"  distribution: {plugin['distribution']} {plugin['version']}{supports}")
        if plugin["error"]:
            print(f"  error: {plugin['error']}")
        print(f"  hooks: {', '.join(plugin['hooks']) or '(none)'}")
        print(f"  registers: {', '.join(plugin['registered']) or '(nothing)'}")


def info_command(args: argparse.Namespace) -> None:
    from zoo.config import field_help
    from zoo.registry import get_registry, unknown_name_message

    from zoo import config

    # dataset=NAME and model.KEY=VALUE (or dataset.KEY=VALUE): what the cost is counted on
    settings = [name for name in args.names if "=" in name]
    args.names = [name for name in args.names if "=" not in name]
    for setting in settings:
        if not setting.startswith(("dataset=", "model.", "dataset.")):
            raise ZooError(f"{setting}: zoo info takes dataset=NAME and model.KEY=VALUE or dataset.KEY=VALUE (for the cost)")
        if "${" in setting:
            raise ZooError(f"{setting}: give the value itself; interpolations are not resolved here")
    if len(args.names) == 1 and args.names[0] in config.CONFIG_SECTIONS:
        show_config_section(args.names[0], args.json)
        return
    registry = get_registry()
    if len(args.names) > 2:
        raise ZooError("usage: zoo info [KIND] NAME [dataset=NAME] [model.KEY=VALUE...], zoo info trainer|device, or zoo info [PLUGIN]")
    plugins = plugin_descriptions(registry)
    if not args.names:
        show_plugins(plugins, args.json)
        return
    if len(args.names) == 2:
        kind = _kind(args.names[0])
        if kind is None:
            raise ZooError(f"unknown kind {args.names[0]!r}; use model, dataset, metric, callback or logger")
        kinds, name = [kind], args.names[1]
    else:
        kinds, name = list(hookspecs.KINDS), args.names[0]
    matches = [registry.get(k, name) for k in kinds if name in registry.names(k)]
    named_plugins = [p for p in plugins if _plugin_named(p, name)] if len(args.names) == 1 else []
    if not matches and named_plugins:  # an item of the same name wins: `zoo info text` is the dataset
        show_plugins(named_plugins, args.json)
        return
    if not matches and len(args.names) == 1 and _kind(name) is not None:  # `zoo info model`: which one?
        raise ZooError(f"which {_kind(name)}? zoo info {_kind(name)} NAME, one of: {', '.join(registry.names(_kind(name))) or 'none installed'}")
    if not matches and name.partition(".")[0] in config.CONFIG_SECTIONS:  # `zoo info trainer.epochs`
        raise ZooError(f"{name} is a key of {name.partition('.')[0]}: 'zoo info {name.partition('.')[0]}' describes each")
    if not matches:
        every = sorted({n for k in kinds for n in registry.names(k)})
        if len(args.names) == 1:
            every = sorted({*every, *(p["distribution"] for p in plugins), *(p["entry_point"] for p in plugins)})
        kind = kinds[0] if len(kinds) == 1 else "plugin or item"
        from zoo.discovery import not_a_plugin

        raise ZooError((len(args.names) == 1 and not_a_plugin(name)) or unknown_name_message(kind, name, every, see=None if len(kinds) == 1 else "zoo info"))
    if len(matches) > 1:
        raise ZooError(f"{name!r} is a {' and a '.join(m.kind for m in matches)}; say which: zoo info KIND {name}")
    entry = matches[0]
    fields = field_help(entry.item.config)
    prefix = {
        "model": "model.", "dataset": "dataset.", "metric": f"metrics.{entry.name}.",
        "callback": f"callbacks.{entry.name}.", "logger": f"loggers.{entry.name}.",
    }[entry.kind]  # fmt: skip
    if settings and entry.kind != "model":
        raise ZooError(f"{settings[0]} goes with a model (its parameters and FLOPs on that data); {entry.name!r} is a {entry.kind}")
    cost, cost_error = None, None
    if entry.kind == "model" and not args.no_cost and args.json:
        cost, cost_error = model_cost(entry.name, settings)
    if args.json:
        out = _entry_json(entry)
        if entry.kind == "model":
            out.update(objective=entry.item.objective, tasks=list(entry.item.tasks), input_rank=entry.item.input_rank)
        if entry.kind == "metric":
            out.update(objectives=list(entry.item.objectives), default=entry.item.default, greater_is_better=entry.item.greater_is_better)
        out["config"] = [{"name": n, "type": t, "default": d, "help": h} for n, t, d, h in fields]
        if cost is not None or cost_error is not None:
            out["cost"] = cost
        if cost_error is not None:
            out["cost_error"] = cost_error
        out["plugin"] = next(p for p in plugins if p["entry_point"] == entry.source.name and p["value"] == entry.source.value)
        print(json.dumps(out, indent=2))
        return
    print(f"{entry.kind} {entry.name}: {entry.summary}")
    print(f"provided by {_dist(entry.source)} (entry point {entry.source.name!r}, {entry.source.value})")
    if entry.kind == "model":
        print(f"objective: {entry.item.objective}; takes datasets of task: {', '.join(entry.item.tasks)}")
        if entry.item.input_rank:
            print(f"input rank: {entry.item.input_rank}")
    if entry.kind == "metric":
        better = {True: "higher is better", False: "lower is better", None: "better higher or lower: not declared"}
        print(f"scores: {', '.join(entry.item.objectives)}; {better[entry.item.greater_is_better]}" + ("; in metrics=auto" if entry.item.default else ""))
    if fields:
        print(f"\nconfig (override on the command line as {prefix}<field>=<value>):")
        print_table(("FIELD", "TYPE", "DEFAULT", "HELP"), fields, indent="  ")
    else:
        print("\nconfig: no fields")
    if entry.kind == "model" and not args.no_cost:
        sys.stdout.flush()  # the description first: counting loads TensorFlow
        cost, cost_error = model_cost(entry.name, settings)
        if cost is None:
            print(f"\ncost: not counted: {cost_error}")
            return
        print(
            f"\ncost on dataset {cost['dataset']!r} (input {tuple(cost['input_shape'])}): "
            f"{cost['parameters']:,} parameters ({cost['trainable_parameters']:,} trainable), "
            f"{human_count(cost['flops_per_example'])} FLOPs per example (a multiply-add counts 2)"
        )


def model_cost(model: str, settings: list[str]) -> tuple[Optional[dict], Optional[str]]:
    """The model's parameter count and FLOPs per example, with the ``settings`` given
    (``dataset=NAME``: on that dataset; else the first one it can learn from, the zoo's
    default dataset first), or why it could not be counted (a backbone's weights that
    cannot be downloaded, say: the description stands without it). Loads TensorFlow."""
    from hydra.errors import HydraException

    from zoo.config import compose, describe_composition_error, plan_run
    from zoo.registry import get_registry

    dataset = next((s.partition("=")[2] for s in settings if s.startswith("dataset=")), None)
    others = [s for s in settings if not s.startswith("dataset=")]
    candidates = [dataset] if dataset else ["digits", *get_registry().names("dataset")]
    plan, reasons = None, []
    for name in dict.fromkeys(candidates):
        try:
            plan = plan_run(compose([f"model={model}", f"dataset={name}", *others]))
            break
        except ZooError as exc:
            reasons.append(str(exc))
        except HydraException as exc:  # an unknown dataset name, say
            reasons.append(describe_composition_error(exc))
    if plan is None and (dataset or others):
        raise ZooError(reasons[0])
    if plan is None:  # the model's own defaults (a field without one: the same reason for most datasets), or none of its kind
        reason, count = collections.Counter(reasons).most_common(1)[0]
        return None, reason if count > len(reasons) / 2 else "it fits no installed dataset as configured by default"
    from zoo.inference import count_cost
    from zoo.run import out_of_memory_in_one_line

    try:
        # What building prints (Keras downloading weights) is not output; a model too big to build is one line.
        with contextlib.redirect_stdout(sys.stderr), out_of_memory_in_one_line():
            counted = count_cost(plan)
    except ZooError as exc:
        return None, str(exc)
    return {"dataset": plan.dataset.name, "input_shape": list(plan.spec.input_shape), **counted}, None


def human_count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f}"


def show_config_section(section: str, as_json: bool) -> None:
    from zoo import config

    fields = config.field_help(getattr(config, config.CONFIG_SECTIONS[section]))
    if as_json:
        print(json.dumps([{"name": n, "type": t, "default": d, "help": h} for n, t, d, h in fields], indent=2))
        return
    print(f"{section} keys (override on the command line as {section}.<key>=<value>; 'zoo train --cfg job' shows a run's):")
    print_table(("KEY", "TYPE", "DEFAULT", "HELP"), fields, indent="  ")


def check_command(args: argparse.Namespace) -> None:
    from zoo.tables import clear_status, redrawn_in_place, show_status
    from zoo.testing import FAIL, run_checks

    terminal = redrawn_in_place(sys.stderr)

    def progress(done: int, total: int, what: str) -> None:
        show_status(f"zoo check: [{done + 1}/{total}] {what}", terminal)

    results = run_checks(args.target, progress=progress)
    clear_status(terminal)
    if args.json:
        print(json.dumps([vars(r) for r in results], indent=2))
    else:
        print_table(("KIND", "NAME", "CHECK", "RESULT", "DETAIL"), [(r.kind, r.name, r.check, r.outcome.upper(), r.detail) for r in results])
        counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in ("pass", "fail", "skip")}
        print(f"\n{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    failures = [r for r in results if r.outcome == FAIL]
    for failure in failures:
        print(f"zoo: check failed: {failure.message()}", file=sys.stderr)
    if failures:
        raise ZooExit(1)


def new_command(args: argparse.Namespace) -> None:
    from zoo.scaffold import new_plugin

    project = new_plugin(args.name, args.directory)
    print(project.summary())


def evaluate_command(args: argparse.Namespace) -> None:
    from zoo import run

    metrics = run.evaluate(Path(args.run_dir), args.overrides)  # validates before TensorFlow loads
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print_metrics(metrics)


def private_homes() -> dict[str, str]:
    """``MPLCONFIGDIR`` and ``KERAS_HOME`` where Matplotlib's and Keras' folders in the home
    (``~/.config/matplotlib``, ``~/.keras``) cannot be made or written: a container run as a
    user whose home is not theirs (``HOME=/``), or who has none (an arbitrary user id
    without HOME), a read-only home. Matplotlib then warned twice in every command that
    draws and built its font cache anew each time; Keras used ``/tmp/.keras``, which any user
    can fill, or, home unknown, made a folder named ``~`` in the working folder. A private
    folder of this user's in the temporary folder is used instead, if it is theirs alone."""
    from zoo.artifacts import check_output_folder, home_folder, private_temp_folder, user_folder

    def usable(folder: Path | None) -> bool:
        try:
            return folder is not None and check_output_folder(folder, "HOME") is None
        except (ZooError, OSError):
            return False

    wanted = {}
    config = user_folder("XDG_CONFIG_HOME", ".config")
    if not os.environ.get("MPLCONFIGDIR") and not usable(config and config / "matplotlib"):
        wanted["MPLCONFIGDIR"] = "matplotlib"
    home = home_folder()
    if "KERAS_HOME" not in os.environ and not (home and os.access(home, os.W_OK)):  # Keras' own test
        wanted["KERAS_HOME"] = "keras"
    found = {variable: private_temp_folder(purpose) for variable, purpose in wanted.items()}
    return {variable: str(folder) for variable, folder in found.items() if folder}


def check_output_file(path: Optional[Path], option: str, force: bool, example: str) -> None:
    """A file the user named for a command's output: not a folder, in a folder that exists,
    not written over unless ``--force`` says so (the zoo cannot tell whose it is), and never
    one of a run's records."""
    import stat

    from zoo.artifacts import check_output_folder, output_checked, run_record_owner, sticky_and_not_ours

    if path is None:
        return
    if str(path) == "-":  # it had been written to a file named "-"
        raise ZooError(f"{option} -: give a file name (this output is written to a file; zoo predict --csv prints CSV on the standard output)")
    if path.is_dir():
        raise ZooError(f"{option} {path} is a folder; give a file name, e.g. {option} {path / example}")
    if not path.parent.is_dir():
        raise ZooError(f"{option} {path}: the folder {path.parent} does not exist")
    check_output_folder(path.parent, option)  # before the work: it had been found after it, named by a temporary file
    kind = os.lstat(path).st_mode if os.path.lexists(path) else None
    if kind is not None and not stat.S_ISREG(kind):  # --force had replaced /dev/null, /dev/stdout or a link with a file
        what = "a symbolic link" if stat.S_ISLNK(kind) else "a named pipe" if stat.S_ISFIFO(kind) else "a device or socket"
        raise ZooError(f"{option} {path} is {what}, not a file the zoo may replace; give the name of a new file")
    if kind is not None and not force:
        raise ZooError(f"{option} {path} exists; choose another name, or add --force to replace it")
    if kind is not None and sticky_and_not_ours(path):  # found after the work, as "Operation not permitted"
        raise ZooError(f"{option} {path} is another user's, in a folder where only a file's owner may replace it (sticky, as /tmp); choose another name")
    output_checked(path, free=kind is None)
    owner = run_record_owner(path)
    if owner is not None:
        raise ZooError(f"{option} {path} is one of the records of the run in {owner}, which nothing but training writes; choose another name")


def predict_command(args: argparse.Namespace) -> None:
    from zoo.inference import predict

    check_output_file(args.output, "--output", args.force, "predictions.csv")
    header, rows = predict(Path(args.run_dir), args.inputs)
    # Rows go out as they come (a CSV of millions of rows had been held whole, several
    # times over); the table alone needs them all, for its column widths.
    table: list[list[str]] = []

    def emit(file=None) -> None:
        sinks = [csv.writer(out, lineterminator="\n") for out in (file, sys.stdout if args.csv else None) if out is not None]
        for sink in sinks:
            sink.writerow(header)
        for row in rows:
            for sink in sinks:
                sink.writerow(row)
            if not args.csv:
                table.append(row)

    if args.output:
        from zoo.artifacts import write_atomic

        def to_file(tmp: Path) -> None:  # under a temporary name: a row failing half-way leaves no file
            with tmp.open("w", newline="", encoding="utf-8", errors="surrogateescape") as file:
                emit(file)

        write_atomic(args.output, to_file)
    else:
        emit()
    if not args.csv:
        print_table(header, table)


def explain_command(args: argparse.Namespace) -> None:
    from zoo import artifacts
    from zoo.explain import FOLDER, METHODS, OPTION_METHODS, explain, write_explanations

    run_dir = Path(args.run_dir)
    if not (run_dir / artifacts.CONFIG).is_file():  # before its output, which is in the run's folder by default
        raise ZooError(artifacts.not_a_run_directory(run_dir))
    folder = args.output or run_dir / FOLDER
    if args.output is not None and folder.exists() and not folder.is_dir():
        raise ZooError(f"--output {folder} is a file; give a folder")
    artifacts.refuse_links_on_the_way(run_dir, folder, "--output")
    artifacts.check_output_folder(folder, "--output")
    options = {option: getattr(args, option) for option in OPTION_METHODS if getattr(args, option) is not None}
    for option, methods in OPTION_METHODS.items() if args.method in METHODS else ():
        if option in options and args.method not in methods:
            raise ZooError(f"--{option} applies to --method {', '.join(methods)} only, not {args.method}")
    explanation = explain(run_dir, args.inputs, method=args.method, target=args.target, **options)
    if args.output is not None:  # the user's folder: nothing in it is written over
        from zoo.explain import claim_planned_files

        claim_planned_files(explanation, folder)
    made = not folder.exists()
    try:
        written = write_explanations(explanation, folder)
    except BaseException:
        if made:  # the folder this command made, left empty by the failure (a full disk)
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    classes = explanation.class_names
    *pictures, attributions = written
    rows = [
        [name, classes[p], classes[t], f"{q:.4f}", str(pictures[n]) if n < len(pictures) else "-"]
        for n, (name, p, t, q) in enumerate(zip(explanation.names, explanation.predicted, explanation.target, explanation.probability))
    ]
    print_table(["input", "predicted", "explained", "probability", "picture"], rows)
    if explanation.completeness_error is not None:
        print(f"integrated gradients: attributions sum to f(x) - f(baseline) within {100 * float(max(explanation.completeness_error)):.2f}%")
    if len(pictures) < len(rows):
        print(f"pictures of the first {len(pictures)} of {len(rows):,} inputs; the attributions of every one are in the CSV")
    print(f"attributions: {attributions}")


def generate_command(args: argparse.Namespace) -> None:
    from zoo.artifacts import TEXT_SEPARATOR, is_text
    from zoo.inference import generate

    check_output_file(args.output, "--output", args.force, "samples.png")
    samples, path = generate(Path(args.run_dir), args.options, args.output)
    if is_text(samples):
        text = TEXT_SEPARATOR.join(samples)
        # A corpus from elsewhere teaches the model its escape sequences: a terminal shows them
        # rather than obeying them (set its title, clear it); a pipe or file gets the text as it is.
        print(visible_text(text) if sys.stdout.isatty() else text)
    if path:
        print(f"wrote {len(samples)} sample{'' if len(samples) == 1 else 's'} to {path}", file=sys.stderr if is_text(samples) else sys.stdout)


def export_command(args: argparse.Namespace) -> None:
    from zoo.export import export_and_measure

    path, report = export_and_measure(Path(args.run_dir), args.format, args.output, args.quantize, force=args.force)
    kind = f" ({args.quantize} quantised)" if args.quantize else ""
    facts = [f"{report['bytes'] / 1e6:.3f} MB", f"{report['gzip_bytes'] / 1e6:.3f} MB gzipped"]
    if report.get("zero_kernel_weights"):
        facts.append(f"{report['zero_kernel_weights']:.1%} zero kernel weights")
    inputs = report["inputs"]
    checked_on = "noise vectors" if inputs.get("latent") else "test examples"
    if "agreement" in report:
        facts.append(f"same class as the Keras model on {report['agreement']:.2%} of {report['test_examples']} {checked_on}")
    elif "max_abs_difference" in report:
        facts.append(f"outputs within {report['max_abs_difference']:.3g} of the Keras model's on {report['test_examples']} {checked_on}")
    recorded = f"; recorded in {report['recorded_in']}" if "recorded_in" in report else ""
    print(f"exported {args.format}{kind} to {path} ({', '.join(facts)}{recorded})")
    if report.get("load_needs"):
        imports = "; ".join(f"import {module}" for module in report["load_needs"])
        print(
            f"loading it with keras.saving.load_model needs `{imports}` first (the file holds classes "
            "defined there); a SavedModel or TFLite export needs nothing of the zoo's"
        )
    if inputs.get("latent"):
        print(f"it serves the generator: {inputs['shape'][0]} {inputs['latent']} numbers in, an image out (zoo generate draws them)")
    elif inputs["prepared_by"]:
        print(
            f"it takes inputs of shape {tuple(inputs['shape'])} as {inputs['prepared_by']} prepares them from raw data "
            "(zoo predict does): raw inputs give other predictions"
        )


def compare_command(args: argparse.Namespace) -> None:
    from zoo.compare import comparison_table, find_runs, plot_comparison

    check_output_file(args.plot, "--plot", args.force, "comparison.png")
    if args.plot is not None:
        from zoo.artifacts import FIGURE_FORMATS

        if args.plot.suffix.lower().lstrip(".") not in FIGURE_FORMATS:
            raise ZooError(f"--plot {args.plot}: name a .png, .svg or .pdf file (the format follows the name)")
    runs = find_runs(args.paths)
    root = args.paths[0] if len(args.paths) == 1 else None
    header, rows = comparison_table(runs, root=root)
    if args.csv:
        sys.stdout.write(csv_text(header, rows))
    else:
        print_table(header, rows)
    if args.plot:
        plot_comparison(args.plot, runs)
        print(f"wrote {args.plot}", file=sys.stderr)


# --------------------------------------------------------------------------------------
# zoo train
# --------------------------------------------------------------------------------------


def train_command(args: list[str]) -> None:
    from zoo.arguments import (
        check_composes, check_config_flags, check_group_choices, check_overrides, is_multirun, parse_hydra_args, quote_home_paths,
        refuse_code_from_the_command_line,
    )  # fmt: skip
    from zoo.config import register_configs

    register_configs()
    args = quote_home_paths(args)
    refuse_code_from_the_command_line(args)
    check_config_flags(args)
    check_group_choices(args)
    given = parse_hydra_args(args)
    if given.hydra_help:  # Hydra's own help, the same whatever else is given (overrides had failed it: "Could not override")
        run_hydra(["--hydra-help"])
        return
    shown = given.cfg or given.info or given.shell_completion  # Hydra shows something and runs nothing
    if (shown or given.help) and is_multirun(args):  # Hydra: "Ambiguous value ... add --multirun"
        flag = "--info" if given.info else "--cfg" if given.cfg else "--help"
        raise ZooError(f"{flag} shows one run's config; ask without -m (--multirun, hydra.mode=MULTIRUN) to see it")
    if is_multirun(args):  # jobs in processes of their own stop with this one
        import socket

        from zoo.sweeps import DRIVER_PID

        os.environ[DRIVER_PID] = f"{socket.gethostname()}:{os.getpid()}"
    if not (shown or given.help or given.hydra_help):
        check_overrides(args)
    elif given.cfg == "job" and not (given.info or given.shell_completion or given.package or given.config_path or given.config_name):
        print_job_config(args)
        return
    elif not given.config_path:  # a config of the user's own is Hydra's to compose
        check_composes(args)
    if not is_multirun(args):  # a sweep's jobs watch their driver instead (zoo.sweeps)
        stop_cleanly_on_termination(training=True)
    run_hydra(args)


def print_job_config(args: list[str]) -> None:
    """What Hydra's ``--cfg job`` prints, with ``metrics=auto`` shown as the metrics the run
    will use (Hydra composes it to an empty group: the choice depends on the model). No TF."""
    from omegaconf import OmegaConf

    from zoo.arguments import overrides_only, user_configs
    from zoo.config import compose, describe_composition_error, plan_run

    try:
        cfg = compose(overrides_only(args), user_configs(args))
    except Exception as exc:  # Hydra's and OmegaConf's errors, as check_overrides reports them
        raise ZooError(describe_composition_error(exc)) from None
    if not cfg.get("metrics"):
        try:
            plan = plan_run(cfg)
        except ZooError:
            pass  # shown as composed; training it would report the problem
        else:
            cfg.metrics = {entry.name: dataclasses.asdict(config) for entry, config in plan.metrics}
    print(OmegaConf.to_yaml(cfg, resolve="--resolve" in args), end="")


def run_hydra(args: list[str]) -> None:
    import hydra
    from hydra._internal import utils as hydra_utils
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from zoo.config import CONFIG_MODULE, PRIMARY_CONFIG, describe_composition_error

    main = hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name=PRIMARY_CONFIG, version_base="1.3")
    saved = sys.argv
    sys.argv = ["zoo train", *args]
    # Hydra prints what its launcher, sweeper or a job raised with a traceback and exit
    # status 1 (a launcher refusing an option: joblib's pre_dispatch, Ray's address); it
    # goes up instead, to be one line as the zoo's other errors are.
    reporting, hydra_utils.run_and_report = hydra_utils.run_and_report, lambda func: func()
    try:
        main(train_task)()
    except (HydraException, OmegaConfBaseException) as exc:  # the rest reaches main's nets
        if traceback_requested():
            raise
        raise ZooError(describe_composition_error(exc)) from None
    except Exception as exc:
        name, module = type(exc).__name__, innermost_module(exc)
        if name == "UncompletedJobError" and module.startswith("submitit") and not traceback_requested():
            raise ZooError(uncompleted_job_line(str(exc))) from None
        if traceback_requested() or name not in ("TimeoutError", "TerminatedWorkerError") or not module.startswith("joblib"):
            raise
        if name == "TerminatedWorkerError":  # joblib's paragraph guessing at a segfault or memory
            raise ZooError(killed_job_line(str(exc))) from None
        # joblib's own (multiprocessing's TimeoutError) said nothing but where it was raised
        raise ZooError(
            "a job ran longer than hydra.launcher.timeout allows: joblib stopped every job of the sweep (the unfinished "
            "runs keep their checkpoints); the same command continues them, with a larger timeout or none"
        ) from None
    finally:
        hydra_utils.run_and_report = reporting
        sys.argv = saved


def killed_job_line(joblib_says: str) -> str:
    """What a parallel sweep's job process killed from outside comes to: by the kernel for
    memory where it was SIGKILL (jobs at once, each its own TensorFlow, past the memory this
    process may use), a crash otherwise."""
    import re

    from zoo.config import human_bytes, physical_memory

    signals = sorted(set(re.findall(r"\b(SIG[A-Z]+)\(", joblib_says))) or ["a signal"]
    if signals == ["SIGKILL"]:
        memory = physical_memory()
        within = f" within the {human_bytes(memory)} this process may use" if memory else ""
        return (
            f"a job's process was killed (SIGKILL), by the kernel for memory most likely: the jobs running at once, each "
            f"its own TensorFlow, did not fit{within}; lower hydra.launcher.n_jobs ({SWEEP_GOES_ON})"
        )
    return f"a job's process ended by {', '.join(signals)} (a crash in native code); {SWEEP_GOES_ON}, or ZOO_TRACEBACK=1 shows joblib's report"


def uncompleted_job_line(submitit_says: str) -> str:
    """A submitit job (SLURM's, or submitit_local's, which starts every job of a batch at
    once) that ended without its result: killed (for memory, at its time limit, preempted)
    before the zoo in it could say why. submitit's own message ran on with its log's lines."""
    import re

    log = re.search(r"Look at stdout: (\S+)", submitit_says)
    return (
        f"a job ended without its result, killed from outside (for memory most likely, or at a time limit){f' (its log: {log.group(1)})' if log else ''}; "
        f"run fewer at once (hydra.sweeper.max_batch_size) or give each more (hydra.launcher.mem_gb, timeout_min); {SWEEP_GOES_ON}"
    )


# What remains of a sweep whose job was killed from outside, and the way on.
SWEEP_GOES_ON = "the finished jobs are kept, and the same command continues the others from their checkpoints"


def describe_failure(exc: BaseException) -> str:
    """What a library raised (a launcher refusing an option, a plugin's model failing), as
    one line naming the library; ZOO_TRACEBACK=1 shows the traceback."""
    import re

    parts = innermost_module(exc).split(".")
    library = parts[1] if parts[0] == "hydra_plugins" and len(parts) > 1 else parts[0]
    if isinstance(exc, SystemExit):
        return f"{library} failed: it called sys.exit({exc.code!r}); ZOO_TRACEBACK=1 shows where"
    from zoo.run import out_of_memory_line

    memory = out_of_memory_line(exc)  # building a huge model to evaluate, export or describe it, say
    if memory is not None:
        return memory
    digits = re.search(r"for integer string conversion.*?value has (\d+) digits", str(exc)) if type(exc) is ValueError else None
    if digits:  # Python's advice, sys.set_int_max_str_digits(), is for a program's author
        return f"{library} failed on {number_too_long(int(digits.group(1)))}; ZOO_TRACEBACK=1 shows where"
    mark = getattr(exc, "problem_mark", None)  # YAML's reader (in Hydra, OmegaConf): a config file's mistake
    if mark is not None and getattr(exc, "problem", None):
        return f"{mark.name} line {mark.line + 1}: {' '.join(str(exc.problem).split())}; correct the YAML there"
    reason = shorten(one_line(exc), 300).rstrip(".")
    if not reason:  # a bare `assert` or `raise X()`: the line that raised says what went wrong
        import traceback

        frames = traceback.extract_tb(exc.__traceback__)
        reason = f"at {Path(frames[-1].filename).name}:{frames[-1].lineno}: {shorten(frames[-1].line or '', 200)}" if frames else "no message"
    return f"{library} failed: {type(exc).__name__}: {reason}; ZOO_TRACEBACK=1 shows where"


def in_defaults_list(exc: BaseException) -> bool:
    """Whether ``exc`` rose through Hydra's reading of defaults lists."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") != "hydra._internal.defaults_list":
        tb = tb.tb_next
    return tb is not None


def raised_in(exc: BaseException, packages: tuple[str, ...]) -> bool:
    return innermost_module(exc).split(".")[0] in packages


def os_error_line(exc: OSError) -> str:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not exc.filename and frames and frames[-1].filename.endswith("synchronize.py"):  # a semaphore (loky's, multiprocessing's)
        from zoo.arguments import semaphores_missing

        return semaphores_missing(exc.strerror or str(exc))
    from zoo.artifacts import STORAGE_FIXES, storage_failure, storage_fix

    if exc.errno in STORAGE_FIXES:  # also one a library raised without the file's name (Hydra's records)
        failure = storage_failure(exc, exc.filename or "a file")
        return f"{failure}; {storage_fix(exc.errno)}, or write elsewhere, then run the command again"
    if exc.errno in TOO_MANY_FILES:
        return f"could not open {exc.filename or 'a file'}: {too_many_files(exc)}, then run the command again"
    if exc.errno in (errno.EACCES, errno.EPERM) and exc.filename:  # another user's file or folder
        from zoo.artifacts import this_user

        return f"{exc.filename}: {exc.strerror} to {this_user()}; ask its owner for access (chmod), or choose a place of your own"
    return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)


# Open-file limits, the process's (ulimit -n, a batch system's) or the machine's: the run stays
# resumable too. It had said "model.keras: Too many open files", naming neither limit nor fix.
TOO_MANY_FILES = {errno.EMFILE, errno.ENFILE}


def too_many_files(exc: OSError) -> str:
    """The limit an EMFILE or ENFILE ran into, and what raises it."""
    import resource

    if exc.errno == errno.ENFILE:
        return "the machine has too many files open (fs.file-max); close some programs or raise it"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raise_to = f" (up to {hard})" if hard != resource.RLIM_INFINITY and hard > soft else ""
    return f"this process may hold at most {soft} open files (ulimit -n); raise it{raise_to}"


def train_task(cfg) -> Any:
    """One Hydra job: a training run in Hydra's output directory. Module level, so that
    launchers running jobs in other processes (joblib, submitit, Ray) can pickle it."""
    from hydra.core.hydra_config import HydraConfig

    from zoo import run, search, sweeps
    from zoo.artifacts import METRICS, STORAGE_FIXES, storage_failure, storage_fix

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    # A log line that cannot be written (train.log on a full disk) is lost, not printed as a
    # 30-line "--- Logging error ---" traceback beside the one line that says why. Here: a
    # launcher's job process runs no main().
    logging.raiseExceptions = False
    objective = cfg.get("objective")
    finished = (run_dir / METRICS).is_file()
    trial = search.trial_of(HydraConfig.get())
    try:
        # Where it goes, first: a user who stops it (or whose job is preempted) knows where to look.
        print(f"run directory: {run_dir}" + (" (finished already: nothing to train)" if finished else ""), flush=True)
        with sweeps.stopping_with_the_driver():
            checks = [search.trial_callback(trial, objective, run_dir)] if trial else [sweeps.objective_check(objective)] if objective else []
            metrics = run.train(cfg, run_dir, callbacks=checks)
        print_summary(metrics, run_dir)
        if objective and metrics:  # a hyper-parameter search's trial returns its score
            from zoo.sweeps import objective_value

            return objective_value(objective, metrics, run_dir)
    except OSError as exc:
        if traceback_requested() or (trial is not None and exc.errno not in STORAGE_FIXES):
            raise
        from zoo.checkpoints import Checkpoints

        where = f"{exc.filename}" if exc.filename else f"a file in {run_dir}, or the standard output"
        if exc.errno in TOO_MANY_FILES:
            fail_run(run_dir, f"could not open {where}: {Checkpoints(run_dir).resumable(too_many_files(exc))}")
        if exc.errno not in STORAGE_FIXES:
            fail_run(run_dir, os_error_line(exc))
        fail_run(run_dir, f"{storage_failure(exc, where, run_dir)}; {Checkpoints(run_dir).resumable(storage_fix(exc.errno))}")
    except Interrupted as exc:
        fail_run(run_dir, f"{exc}; to continue: {continue_command(run_dir)}", code=128 + exc.signal_number)
    except KeyboardInterrupt as exc:  # outside the training loop, which saves a checkpoint and says so itself
        remove_unused_run_dir(run_dir)  # while the job started up (loading TensorFlow): nothing to continue
        if not run_dir.is_dir() or traceback_requested():
            raise  # main says "interrupted"
        # While it wrote its records after training, or between the folds of a cross-validation:
        # SIGTERM had ended it there with nothing said, nor in train.log.
        number = exc.signal if isinstance(exc, Terminated) else signal.SIGINT
        fail_run(run_dir, f"stopped by {signal.Signals(number).name}; to continue: {continue_command(run_dir)}", code=128 + number)
    except ZooError as exc:
        if traceback_requested():
            raise
        from hydra.types import RunMode

        from zoo.arguments import in_sweep_terms

        message = in_sweep_terms(str(exc)) if HydraConfig.get().mode == RunMode.MULTIRUN else str(exc)
        if trial is not None:  # a search's trial: the sweeper marks it failed and decides whether to go on
            log_stop(message)  # the sweep's last line sends the user to the trials' train.log
            print(f"trial {trial['number']} failed: {' '.join(message.split())}", file=sys.stderr, flush=True)
            raise
        fail_run(run_dir, message)
    except (Exception, SystemExit) as exc:  # a plugin's or a library's failure: one line here too (Hydra would add its own)
        if trial is not None:  # a search's trial: the sweeper records the failure, and goes on
            log_stop(describe_failure(exc))
            if isinstance(exc, SystemExit):  # sys.exit() in a plugin's factory is a failure too, not a run that ended well
                raise RuntimeError(describe_failure(exc)) from exc
        if traceback_requested() or trial is not None:
            raise
        fail_run(run_dir, describe_failure(exc))
    return metrics


def log_stop(message: str) -> None:
    message = " ".join(message.split())
    logging.getLogger("zoo").info(message if message.startswith("stopped") else f"stopped: {message}")


def fail_run(run_dir: Path, message: str, code: int = EXIT_USAGE) -> NoReturn:
    """End a run with ``message``, which its train.log keeps too (a run under nohup or a
    scheduler, or a sweep's job, had ended there with no word of why), unless the run wrote
    nothing yet: then its folder goes (its first line to a full disk, say)."""
    from zoo import artifacts

    if not artifacts.held_elsewhere(run_dir):  # else another command's, its train.log too
        log_stop(message)
        remove_unused_run_dir(run_dir)
    fail(message, code=code)


def remove_unused_run_dir(run_dir: Path) -> None:
    """A single run that failed before it wrote anything leaves no folder behind: only Hydra's
    records (``.hydra/``, its log) and its lock are in it, and it was made by this command."""
    import shutil

    from hydra.core.hydra_config import HydraConfig

    from zoo import artifacts
    from zoo.arguments import FOUND_BEFORE
    from zoo.run import made_before_claim

    found = FOUND_BEFORE[0]
    if found is None or HydraConfig.get().mode.name != "RUN" or not run_dir.is_dir():  # moved away while it ran
        return
    if artifacts.held_elsewhere(run_dir):
        return
    if {p.name for p in run_dir.iterdir()} <= made_before_claim() - {artifacts.CHECKPOINTS}:
        logging.shutdown()  # train.log's handler lets go of the file
        shutil.rmtree(run_dir, ignore_errors=True)
        for folder in run_dir.absolute().parents:  # e.g. runs/<date>/, if this run made them
            if folder == found or found not in folder.parents:
                break
            try:
                folder.rmdir()  # only if empty: another run's folder stays
            except OSError:
                break


def continue_command(run_dir: Path) -> str:
    """The command that continues this run: the same arguments, its directory named."""
    from zoo.arguments import hydra_quoted, shell_quoted

    args = [a for a in sys.argv[1:] if not a.startswith("hydra.run.dir=") and a not in ("-m", "--multirun")]
    return " ".join(shell_quoted(arg) for arg in ["zoo", "train", *args, f"hydra.run.dir={hydra_quoted(str(run_dir))}"])


def print_summary(metrics: dict[str, float], run_dir: Path) -> None:
    if not metrics:  # a multi-worker run's worker other than the chief
        print("\nthis worker's share of training is done; the chief (worker 0) writes the run directory")
        return
    print()
    from zoo import artifacts

    stopping = artifacts.record_part(artifacts.read_record(run_dir / artifacts.TRAINING), "early_stopping")
    with contextlib.suppress(KeyError, TypeError, ValueError):  # a damaged record (a run's from elsewhere) is left out
        if stopping.get("stopped_epoch"):
            print(f"stopped early after epoch {stopping['stopped_epoch']}: {stopping['monitor']} had not improved since epoch {stopping['best_epoch']}")
        if stopping.get("weights_from_epoch"):
            print(f"the model keeps the weights of epoch {stopping['weights_from_epoch']} ({stopping['monitor']} {stopping['best']:.4g})\n")
    print_metrics(metrics)
    print(f"\nrun directory: {run_dir}")


def print_metrics(metrics: dict[str, Any]) -> None:
    from zoo.crossval import FOLDS

    folds = metrics.get(FOLDS)
    if folds:  # cross-validated: scored on each held-out fold
        names = sorted((k for k in metrics if f"{k}_std" in metrics), key=lambda name: name != "loss")
        header = ("METRIC (HELD-OUT FOLD)", "MEAN", "STD", *(f"FOLD {fold}" for fold in folds))
        print_table(header, [(k, metric_text(metrics[k]), metric_text(metrics[k + "_std"]), *(metric_text(folds[f][k]) for f in folds)) for k in names])
        return
    ordered = sorted(metrics.items(), key=lambda item: item[0] != "loss")  # loss first, then as given
    print_table(("TEST METRIC", "VALUE"), [(k, metric_text(v)) for k, v in ordered])
