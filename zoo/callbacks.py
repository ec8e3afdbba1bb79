"""The callbacks of a run, assembled from its config: the learning rate logged each epoch,
reduce-on-plateau, early stopping, pruning, the plugins' callbacks (``callbacks=[...]``) and the
experiment trackers (``loggers=[...]``).

The training loop (``zoo.training``) drives them as Keras' ``fit`` would and knows none of
them by name. A callback with state that must survive a resume exposes ``get_state()`` and
``set_state()``; the loop keeps that state in every checkpoint.
"""

from __future__ import annotations

import logging
import math
import queue
import shutil
import sys
import threading
import time
import warnings
from typing import Any, Mapping, Optional

import keras

from zoo.compression import Pruning
from zoo.config import improving_direction
from zoo.errors import PluginWarning, ZooError, one_line

log = logging.getLogger(__name__)

LOGGER_CLOSE_SECONDS = 30.0


def as_float(value) -> float:
    """A scalar variable's or tensor's value (a mirrored one's too: ``float()`` refuses those)."""
    return float(keras.ops.convert_to_numpy(keras.ops.convert_to_tensor(value)))


def monitor_mode(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return improving_direction(monitor) or "min"  # plan_run refused an unknown direction


def monitored(logs: Mapping[str, float], monitor: str, owner: str) -> float:
    if monitor not in logs:
        raise ZooError(f"{owner}.monitor={monitor!r} is not logged; choose one of: {', '.join(sorted(logs))}")
    return float(logs[monitor])


def improved(value: float, best: Optional[float], mode: str, min_delta: float) -> bool:
    if best is None:
        return math.isfinite(value)
    return value < best - min_delta if mode == "min" else value > best + min_delta


class LearningRateLog(keras.callbacks.Callback):
    """Adds ``lr`` to each epoch's logs: the learning rate of the epoch's first step, so
    that a warm-up shorter than an epoch still shows in the column. It is worked out from
    the schedule and the epoch's number, so a resumed epoch logs what it would have."""

    def __init__(self, optimizer, steps_per_epoch: int):
        super().__init__()
        self.optimizer, self.steps_per_epoch = optimizer, steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        rate = self.optimizer._learning_rate  # a float's variable, or a schedule of the step
        if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            rate = rate(epoch * self.steps_per_epoch)
        logs["lr"] = as_float(rate)


class ReduceOnPlateau(keras.callbacks.Callback):
    """``trainer.lr_schedule=plateau``: multiply the schedule's ``scale`` by ``factor`` when
    the monitored value has not improved for ``patience`` epochs."""

    def __init__(self, config, schedule, base_learning_rate: float):
        super().__init__()
        self.config, self.schedule, self.base = config, schedule, base_learning_rate
        self.mode = monitor_mode(config.monitor, config.mode)
        self.best: Optional[float] = None
        self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        value = monitored(logs or {}, self.config.monitor, "trainer.plateau")
        if improved(value, self.best, self.mode, self.config.min_delta):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.config.patience:
            floor = self.config.min_learning_rate / self.base
            scale = max(as_float(self.schedule.scale) * self.config.factor, floor)
            self.schedule.scale.assign(scale)
            self.wait = 0
            log.info("plateau: %s did not improve for %d epochs; learning rate x%g", self.config.monitor, self.config.patience, scale)

    def get_state(self) -> dict:
        return {"best": self.best, "wait": self.wait, "scale": as_float(self.schedule.scale)}

    def set_state(self, state: dict) -> None:
        self.best, self.wait = state["best"], state["wait"]
        self.schedule.scale.assign(state["scale"])


class EarlyStopping(keras.callbacks.Callback):
    """``trainer.early_stopping``: stop once the monitored value has not improved for
    ``patience`` epochs; with ``restore_best``, end on the best epoch's weights (whether
    training stopped early or ran its epochs)."""

    record_key = "early_stopping"  # its outcome() goes to training.json under this key

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.mode = monitor_mode(config.monitor, config.mode)
        self.best: Optional[float] = None
        self.best_epoch = 0
        self.best_weights: Optional[list] = None
        self.wait = 0
        self.stopped_epoch = 0
        self.last_epoch = 0

    def on_train_begin(self, logs=None):
        if self.stopped_epoch:  # restored from the checkpoint of a run that had stopped
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        value = monitored(logs or {}, self.config.monitor, "trainer.early_stopping")
        self.last_epoch = epoch + 1
        if improved(value, self.best, self.mode, self.config.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.config.restore_best:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.config.patience:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.config.restore_best and self.best_weights is not None and self.best_epoch != self.last_epoch:
            self.model.set_weights(self.best_weights)

    def outcome(self) -> dict:
        """What happened, for the run's ``training.json`` and the terminal."""
        return {
            "monitor": self.config.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch or None,
            "weights_from_epoch": self.best_epoch if self.config.restore_best and self.best_weights is not None else None,
        }

    def get_state(self) -> dict:
        state = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "stopped_epoch": self.stopped_epoch}
        return {**state, "last_epoch": self.last_epoch, "best_weights": self.best_weights}

    def set_state(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        if self.stopped_epoch:
            self.model.stop_training = True


class Loggers(keras.callbacks.Callback):
    """The run's experiment trackers, called from one thread of their own in order, so that
    a slow tracker never holds training up; one that fails is warned about once and called
    no more."""

    def __init__(self, loggers: list[tuple[str, Any]]):
        super().__init__()
        self.loggers = loggers
        self.failed: set[str] = set()
        self.calls: queue.Queue = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="zoo-loggers", daemon=True)
        self.worker.start()

    def _work(self) -> None:
        while True:
            call = self.calls.get()
            if call is None:
                return
            name, method, args = call
            if name in self.failed:
                continue
            try:
                method(*args)
            except BaseException as exc:  # noqa: BLE001 - a tracker can raise anything (sys.exit too); the run goes on
                self.failed.add(name)
                warnings.warn(
                    f"logger {name!r} failed ({type(exc).__name__}: {one_line(exc)[:300]}); "
                    "it logs nothing more for this run, which goes on",
                    PluginWarning,
                    stacklevel=1,
                )

    def _each(self, method: str, *args) -> None:
        for name, logger in self.loggers:
            self.calls.put((name, getattr(logger, method), args))

    def on_train_begin(self, logs=None):
        self._each("start")

    def on_epoch_end(self, epoch, logs=None):
        self._each("log_epoch", epoch + 1, {k: float(v) for k, v in (logs or {}).items()})

    def finish(self, metrics: Mapping[str, float], files: list) -> None:
        """Hand the test metrics and the run's files over, and wait (boundedly) for the
        trackers to take everything."""
        self._each("finish", dict(metrics), list(files))
        self.close()

    def close(self) -> None:
        if not self.worker.is_alive():  # closed already
            return
        self.calls.put(None)
        self.worker.join(LOGGER_CLOSE_SECONDS)
        if self.worker.is_alive():
            names = ", ".join(name for name, _ in self.loggers)
            warnings.warn(f"loggers ({names}) still busy after {LOGGER_CLOSE_SECONDS:.0f} s; not waiting longer", PluginWarning, stacklevel=1)


class Preload(keras.callbacks.Callback):
    """Imports ``modules`` in a thread of their own once the first epoch has ended: from then
    on the main thread mostly waits in TensorFlow's kernels, and the run's end (the plots:
    half a second of importing Matplotlib) no longer waits for them."""

    def __init__(self, modules: tuple[str, ...]):
        super().__init__()
        self.modules = modules
        self.worker: Optional[threading.Thread] = None

    def on_epoch_end(self, epoch, logs=None):
        if self.modules:
            import importlib

            modules, self.modules = self.modules, ()
            self.worker = threading.Thread(target=lambda: [importlib.import_module(m) for m in modules], daemon=True)
            self.worker.start()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.join(LOGGER_CLOSE_SECONDS)


PLOTTING = ("matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.colorbar")


class Progress(keras.callbacks.Callback):
    """``trainer.progress``: on a terminal (``bar``), one line rewritten in place and never
    wider than the terminal: the epoch, a bar, the step, the loss and, at the epoch's end,
    the first metric and their validation values (every value is in ``history.csv``);
    ``epoch``: one such line per epoch, for logs and pipes."""

    BAR = 20
    REFRESH_SECONDS = 0.1

    def __init__(self, mode: str, stream=None):
        super().__init__()
        self.mode, self.stream = mode, stream or sys.stdout
        self.started = self.shown = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.started, self.shown = epoch, time.perf_counter(), 0.0

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self.mode != "bar" or now - self.shown < self.REFRESH_SECONDS:
            return
        self.shown = now
        steps, done = self.params.get("steps") or 0, batch + 1
        filled = round(self.BAR * done / steps) if steps else 0
        full, empty = self.bar_characters()
        left = (now - self.started) / done * (steps - done) if steps else 0
        parts = [f"{full * filled}{empty * (self.BAR - filled)} {done}/{steps}", f"ETA {left:.0f}s", *self.values(logs or {})]
        self.write("\r" + self.fit(parts) + "\x1b[K")

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        steps = self.params.get("steps") or 1
        parts = [f"{steps}/{steps}", f"{seconds:.1f}s {1000 * seconds / steps:.0f}ms/step", *self.values(logs or {}, final=True)]
        line = self.fit(parts)
        self.write(("\r" + line + "\x1b[K" if self.mode == "bar" else line) + "\n")

    def bar_characters(self) -> tuple[str, str]:
        """Box-drawing characters where the terminal's encoding has them, else ASCII."""
        try:
            "━─".encode(getattr(self.stream, "encoding", None) or "ascii")
        except (UnicodeEncodeError, LookupError):
            return "#", "-"
        return "━", "─"

    def values(self, logs: Mapping[str, float], final: bool = False) -> list[str]:
        """The loss(es) and the first metric, then their validation values."""
        names = [k for k in logs if not k.startswith("val_") and k != "lr"]
        losses = [k for k in names if k.endswith("loss")] or names[:1]
        shown = losses + ([next((k for k in names if k not in losses), None)] if final else [])
        shown = [k for k in shown if k] + [f"val_{k}" for k in shown if k and f"val_{k}" in logs]
        return [f"{k} {float(logs[k]):.4g}" for k in shown if k in logs]

    def fit(self, parts: list[str]) -> str:
        """``epoch E/N`` and as many parts as a terminal's width takes (a file takes all)."""
        width = shutil.get_terminal_size((100, 24)).columns - 1 if self.stream.isatty() else 10_000
        line = f"epoch {self.epoch + 1}/{self.params.get('epochs', '?')}"
        for part in parts:
            if len(line) + 2 + len(part) > width:
                break
            line += "  " + part
        return line

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def build_callbacks(plan, run, optimizer, steps_per_epoch: int, finishing: bool) -> list:
    """The run's callbacks in the order they see each epoch's end: the learning rate is
    logged, the plateau schedule and early stopping decide, plugins' callbacks run, and
    (in the process that will finish the run: ``finishing``) the trackers get the row."""
    trainer = plan.trainer
    callbacks: list = [LearningRateLog(optimizer, steps_per_epoch)]
    if trainer.lr_schedule == "plateau":
        callbacks.append(ReduceOnPlateau(trainer.plateau, optimizer._learning_rate, trainer.learning_rate))  # a Schedule
    if trainer.early_stopping.patience:
        callbacks.append(EarlyStopping(trainer.early_stopping))
    if trainer.pruning.sparsity:  # after early stopping: prunes the weights it restores at the end
        callbacks.append(Pruning(trainer.pruning, steps_per_epoch, trainer.epochs))
    for entry, config in plan.callbacks:
        callback = entry.item.factory(config, run)
        if not isinstance(callback, keras.callbacks.Callback):
            raise ZooError(f"callback {entry.name!r}: its factory returned {type(callback).__name__}, not a keras.callbacks.Callback")
        callback.zoo_plugin_name = entry.name  # how the training loop names it
        callbacks.append(callback)
    if finishing and plan.loggers:
        callbacks.append(Loggers([(entry.name, build_logger(entry, config, run)) for entry, config in plan.loggers]))
    if finishing:
        callbacks.append(Preload(PLOTTING))
    return callbacks


def build_logger(entry, config, run):
    """A logger from its plugin's factory: one that cannot be made fails the run before
    training, in one line naming it (its tracker's own calls only warn, from their thread)."""
    from zoo.hookspecs import Logger

    try:
        logger = entry.item.factory(config, run)
    except ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the plugin raises
        raise ZooError(
            f"logger {entry.name!r} could not be made ({type(exc).__name__}: {one_line(exc)[:300]}); "
            f"fix its settings (loggers.{entry.name}.*), or leave it out (loggers=none)"
        ) from None
    if not all(callable(getattr(logger, method, None)) for method in vars(Logger) if not method.startswith("_")):
        raise ZooError(f"logger {entry.name!r}: its factory returned {type(logger).__name__}, not a zoo.Logger")
    return logger


def close_threads(callbacks: list) -> None:
    """However a run ends (an error, a signal too), its callbacks' threads finish their
    work first (boundedly): the trackers get every row queued for them, and no thread is
    still inside native code (TensorFlow's, an extension's import) while the interpreter
    shuts down, which can abort the process instead of letting it exit with its status."""
    for callback in callbacks:
        if isinstance(callback, (Loggers, Preload)):
            callback.close()


def find(callbacks: list, kind: type) -> Optional[Any]:
    return next((callback for callback in callbacks if isinstance(callback, kind)), None)
