"""Training checkpoints: what a run needs to continue exactly where it stopped.

A checkpoint is one ``.npz`` file in ``<run>/checkpoints/``: every variable that training
changes (the model's weights and random-generator states, each optimizer's moments and
step counter, the metrics' running totals) and the loop's position (epochs done, steps
done in the current epoch, the history so far). It is written under a temporary name and
renamed, so a kill while saving leaves the previous checkpoint whole; the newest two are
kept.

Keras' own tools fall short of an exact resume: ``BackupAndRestore`` restarts an
interrupted epoch from its first batch (``../shared/FACTS.md``), ``save_weights`` leaves
out seed-generator states and metric totals, and ``tf.train.Checkpoint`` does not reach
Keras 3's seed generators (both measured here: a GAN restored from either drew different
noise afterwards).
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from zoo import artifacts
from zoo.errors import ZooError

log = logging.getLogger(__name__)

KEEP = 2
NAME = re.compile(r"step-(\d+)\.npz")


@dataclass
class Position:
    """Where training stands: ``epoch`` epochs done, then ``step`` steps of the next one."""

    epoch: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def optimizer_steps(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    def __str__(self) -> str:
        return f"epoch {self.epoch + 1}, step {self.step}" if self.step else f"the end of epoch {self.epoch}"


def training_state(model) -> list:
    """Every variable that training changes, in an order fixed by the model's construction:
    the model's (weights, seed-generator states), then every optimizer's (a GAN has two),
    then the metrics' totals."""
    import keras

    found = list(model.variables)
    for value in vars(model).values():
        if isinstance(value, keras.optimizers.Optimizer):
            found.extend(value.variables)
    for metric in model.metrics:
        found.extend(metric.variables)
    unique, seen = [], set()
    for variable in found:
        if id(variable) not in seen:
            seen.add(id(variable))
            unique.append(variable)
    return unique


class Checkpoints:
    """The checkpoints of one process in a run directory: the chief's in ``checkpoints/``,
    another worker's in ``checkpoints/<task>/`` (so workers need not share storage)."""

    def __init__(self, run_dir: Path, task: str = ""):
        self.folder = Path(run_dir) / artifacts.CHECKPOINTS / task

    def steps(self) -> list[int]:
        """The steps of the complete checkpoint files, newest first (temporary files never
        match)."""
        if not self.folder.is_dir():
            return []
        return sorted((int(m.group(1)) for p in self.folder.iterdir() if (m := NAME.fullmatch(p.name))), reverse=True)

    def path(self, step: int) -> Path:
        return self.folder / f"step-{step:09d}.npz"

    def save(self, variables: list, position: Position) -> Path:
        import numpy as np
        from keras import ops

        arrays: dict[str, Any] = {f"v{i}": ops.convert_to_numpy(v) for i, v in enumerate(variables)}
        broken = next(
            (v.path for v, a in zip(variables, arrays.values()) if a.dtype.kind == "f" and not np.isfinite(a).all()), None
        )
        if broken:  # the last step's loss was finite, but its update was not
            raise ZooError(
                f"training diverged: {broken} is no longer finite at {position}; "
                "lower trainer.learning_rate or look for NaN/Inf values in the data. The run is left unfinished, "
                "its last good checkpoint kept"
            )
        for i, variable in enumerate(variables):
            copies = replica_copies(variable)
            if copies:
                arrays[f"r{i}"] = np.stack([ops.convert_to_numpy(copy) for copy in copies])
        arrays["paths"] = np.array([v.path for v in variables])
        arrays["position"] = np.array(json.dumps(asdict(position)))
        path = self.path(position.optimizer_steps)

        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before the rename makes it the newest

        artifacts.write_atomic(path, write)
        for old in self.steps()[KEEP:]:
            self.path(old).unlink(missing_ok=True)
        log.info("checkpoint %s (%s)", path.name, position)
        return path

    def load(self, step: int) -> tuple[Path, Position, dict]:
        """The checkpoint taken after ``step`` optimizer steps: (path, position, arrays)."""
        import numpy as np

        path = self.path(step)
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            return path, Position(**json.loads(str(arrays.pop("position")))), arrays
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise ZooError(f"checkpoint {path} is unreadable ({' '.join(str(exc).split())})") from None

    def latest(self) -> Optional[tuple[Path, Position, dict]]:
        """The newest checkpoint that reads back whole."""
        for step in self.steps():
            try:
                return self.load(step)
            except ZooError as exc:
                log.warning("%s; trying an older one", exc)
        return None


def restore(variables: list, arrays: dict, source: Path) -> None:
    """Assign a checkpoint's arrays to ``variables`` after checking that they fit."""
    paths = [str(p) for p in arrays["paths"]]
    if len(paths) != len(variables):
        raise ZooError(
            f"checkpoint {source} holds {len(paths)} variables, the model has {len(variables)}; "
            "it belongs to another model: start a new run (another hydra.run.dir)"
        )
    for i, variable in enumerate(variables):
        value = arrays[f"v{i}"]
        if tuple(value.shape) != tuple(variable.shape):
            raise ZooError(
                f"checkpoint {source}: {paths[i]} has shape {tuple(value.shape)}, the model's "
                f"{variable.path} {tuple(variable.shape)}; start a new run (another hydra.run.dir)"
            )
    for i, variable in enumerate(variables):
        copies = replica_copies(variable)
        if copies and len(arrays.get(f"r{i}", ())) == len(copies):
            for copy, value in zip(copies, arrays[f"r{i}"]):
                copy.assign(value)
        else:  # no replicas, or another number of them: the total, shared out by TensorFlow
            variable.assign(arrays[f"v{i}"])


def replica_copies(variable) -> list:
    """The per-replica copies of a variable that each replica updates on its own (metric
    totals under a distribution strategy, summed only when read); empty for the others.

    Each copy is saved and restored as it was: restoring only the sum would share it out
    evenly, and an interrupted epoch's metrics (each replica's, then averaged) would drift.
    """
    import tensorflow as tf

    value = getattr(variable, "value", variable)
    if getattr(value, "synchronization", None) != tf.VariableSynchronization.ON_READ:
        return []
    return list(getattr(value, "values", ()))
