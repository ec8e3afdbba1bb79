"""Training callbacks: weight snapshots every few epochs, and a time limit.

Chosen with ``callbacks=[snapshots,time_limit]``; ``callbacks.snapshots.every=5``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import zoo


@dataclass
class SnapshotsConfig:
    every: int = field(default=5, metadata={"help": "Save the weights every this many epochs."})
    folder: str = zoo.run_subfolder("snapshots", "Where in the run directory they go.")

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be at least 1, got {self.every}")


def snapshots(config: SnapshotsConfig, run: zoo.RunInfo):
    """``<run>/snapshots/epoch-0005.weights.h5`` every ``every`` epochs (the chief's)."""
    import keras

    folder = Path(run.run_dir) / config.folder

    class Snapshots(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if run.chief and (epoch + 1) % config.every == 0:
                folder.mkdir(parents=True, exist_ok=True)
                name = f"epoch-{epoch + 1:04d}.weights.h5"
                partial = folder / f".partial-{name}"  # Keras wants the .weights.h5 ending
                self.model.save_weights(partial)
                os.replace(partial, folder / name)  # whole, or not there

    return Snapshots()


@dataclass
class TimeLimitConfig:
    minutes: float = field(default=60.0, metadata={"help": "Stop after the epoch that passes this much training time."})

    def __post_init__(self) -> None:
        if self.minutes <= 0:
            raise ValueError(f"minutes must be positive, got {self.minutes}")


def time_limit(config: TimeLimitConfig, run: zoo.RunInfo):
    """Ends training after the first epoch that takes the run's training time (over every
    attempt: the time so far is part of each checkpoint) past ``minutes``."""
    import keras

    class TimeLimit(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.before = 0.0  # seconds trained by earlier attempts
            self.started = time.monotonic()

        def on_train_begin(self, logs=None):
            self.started = time.monotonic()

        def elapsed(self) -> float:
            return self.before + time.monotonic() - self.started

        def on_epoch_end(self, epoch, logs=None):
            if self.elapsed() >= config.minutes * 60:
                self.model.stop_training = True

        def get_state(self) -> dict:
            return {"seconds": self.elapsed()}

        def set_state(self, state: dict) -> None:
            self.before, self.started = float(state["seconds"]), time.monotonic()

    return TimeLimit()


@zoo.hookimpl
def register_callbacks():
    return [
        zoo.CallbackPlugin(
            name="snapshots",
            summary="Save the model's weights every few epochs (snapshots/epoch-NNNN.weights.h5).",
            config=SnapshotsConfig,
            factory=snapshots,
        ),
        zoo.CallbackPlugin(
            name="time_limit",
            summary="Stop training after the epoch that passes a time budget (resumed attempts count).",
            config=TimeLimitConfig,
            factory=time_limit,
        ),
    ]
