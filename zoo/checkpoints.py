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
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from zoo import artifacts
from zoo.errors import ZooError, one_line

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
    # The checkpointed callbacks' states (zoo.training.stateful_callbacks), arrays kept apart.
    callbacks: dict[str, Any] = field(default_factory=dict)

    @property
    def optimizer_steps(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    def __str__(self) -> str:
        return f"epoch {self.epoch + 1}, step {self.step}" if self.step else f"the end of epoch {self.epoch}"


class TrainingState(list):
    """The variables a checkpoint holds; the metrics' totals come last, from ``metrics_from``."""

    metrics_from: int = 0


def training_state(model) -> TrainingState:
    """Every variable that training changes, in an order fixed by the model's construction:
    the model's (weights, seed-generator states), then every optimizer's (a GAN has two),
    then the metrics' totals."""
    import keras

    unique, seen = TrainingState(), set()

    def add(variables) -> None:
        for variable in variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                unique.append(variable)

    add(model.variables)
    for value in vars(model).values():
        if isinstance(value, keras.optimizers.Optimizer):
            add(value.variables)
    unique.metrics_from = len(unique)
    for metric in model.metrics:
        add(metric.variables)
    return unique


def array_list(value: Any) -> bool:
    """Whether a callback state's value is a list of arrays (weights), kept as arrays."""
    import numpy as np

    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(a, np.ndarray) for a in value)


def encode_states(states: dict[str, dict]) -> tuple[dict, dict]:
    """Callback states as JSON, with their lists of arrays (weights) moved into ``arrays``."""
    arrays, encoded = {}, {}
    for key, state in states.items():
        encoded[key] = {}
        for name, value in state.items():
            if array_list(value):
                for i, array in enumerate(value):
                    arrays[f"state:{key}:{name}:{i}"] = array
                value = {"arrays": len(value)}
            encoded[key][name] = value
    return encoded, arrays


def decode_state(key: str, state: dict, arrays: dict) -> dict:
    """The callback state ``key`` as ``get_state`` gave it (``encode_states`` undone)."""
    return {
        name: [arrays[f"state:{key}:{name}:{i}"] for i in range(value["arrays"])]
        if isinstance(value, dict) and set(value) == {"arrays"}
        else value
        for name, value in state.items()
    }


def read_position(arrays) -> Position:
    """A checkpoint's position, its history from the ``history:<i>`` arrays (a keras-zoo
    before 2026-12-06 kept the history in the position's JSON)."""
    record = json.loads(str(arrays["position"]))
    columns = record.pop("history_columns", None)
    if columns is not None:
        record["history"] = {name: arrays[f"history:{i}"].tolist() for i, name in enumerate(columns)}
    return Position(**record)


def folder_identity(folder: Path) -> Optional[tuple[int, int]]:
    """Which folder a path names (device and inode), None where there is none."""
    try:
        status = os.stat(folder)
    except OSError:
        return None
    return status.st_dev, status.st_ino


class Checkpoints:
    """The checkpoints of one process in a run directory: the chief's in ``checkpoints/``,
    another worker's in ``checkpoints/<task>/`` (so workers need not share storage)."""

    def __init__(self, run_dir: Path, task: str = "", divergence_fix: str = "lower trainer.learning_rate or look for NaN/Inf values in the data"):
        self.run_dir = Path(run_dir)
        self.divergence_fix = divergence_fix
        self.folder = self.run_dir / artifacts.CHECKPOINTS / task
        self._identity = folder_identity(self.run_dir)

    def check_run_dir(self) -> None:
        """The run's folder is still where the run began. One moved (or deleted) while the run
        trained had its files written anew at the old path (a stray folder holding a part of
        history.csv) and the run stopped on "No such file or directory", blamed on a full disk."""
        if self._identity is not None and folder_identity(self.run_dir) != self._identity:
            raise ZooError(
                f"the run's folder {self.run_dir} was moved or deleted while it trained, and its checkpoints with it; "
                "to continue the run where it is now, run the same command with hydra.run.dir=THAT_FOLDER"
            )

    def steps(self) -> list[int]:
        """The steps of the complete checkpoint files, newest first (temporary files never
        match)."""
        if not self.folder.is_dir():
            return []
        return sorted((int(m.group(1)) for p in self.folder.iterdir() if (m := NAME.fullmatch(p.name))), reverse=True)

    def path(self, step: int) -> Path:
        return self.folder / f"step-{step:09d}.npz"

    def save(self, variables: list, position: Position, states: Optional[dict] = None, metrics: bool = True) -> Path:
        """Save ``variables`` (without the metrics' totals unless ``metrics``), ``position``
        and the callbacks' ``states``. The values are taken now; the file is written by a
        thread of its own while training goes on (``wait`` for it)."""
        import numpy as np

        self.check_run_dir()
        kept = variables if metrics else variables[: getattr(variables, "metrics_from", len(variables))]
        arrays: dict[str, Any] = {f"v{i}": _numpy(v) for i, v in enumerate(kept)}
        broken = next(
            (v.path for v, a in zip(kept, arrays.values()) if a.dtype.kind == "f" and not np.isfinite(a).all()), None
        )
        if broken:  # the last step's loss was finite, but its update was not
            raise ZooError(
                f"training diverged: {broken} is no longer finite at {position}; {self.divergence_fix}. "
                "The run is left unfinished, its last good checkpoint kept"
            )
        for i, variable in enumerate(kept):
            copies = replica_copies(variable)
            if copies:
                arrays[f"r{i}"] = np.stack([_numpy(copy) for copy in copies])
        encoded, state_arrays = encode_states(states or {})
        arrays.update(state_arrays)
        arrays["paths"] = np.array([v.path for v in kept])
        # The history grows with the epochs: as arrays it costs an epoch's end little, where
        # copying it and writing it out as JSON text made each epoch's end slower than the last
        # (90 ms more at epoch 2,000).
        arrays.update({f"history:{i}": np.asarray(values, dtype=np.float64) for i, values in enumerate(position.history.values())})
        record = {**vars(position), "history": None, "history_columns": list(position.history), "callbacks": encoded}
        arrays["position"] = np.array(json.dumps(record))
        path = self.path(position.optimizer_steps)

        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before the rename makes it the newest

        def save() -> None:
            artifacts.write_atomic(path, write)
            for old in self.steps()[KEEP:]:
                self.path(old).unlink(missing_ok=True)
            log.info("checkpoint %s (%s)", path.name, position)

        self.wait()
        self._writing = threading.Thread(target=self._run, args=(save,), name="zoo-checkpoint", daemon=True)
        self._writing.start()
        return path

    def keep(self, count: int) -> None:
        """Only the newest ``count`` checkpoints stay (a finished run's clean-up)."""
        self.wait()
        for old in self.steps()[count:]:
            self.path(old).unlink(missing_ok=True)
        if count == 0 and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def _run(self, save) -> None:
        try:
            save()
        except BaseException as exc:  # reported by the next save or wait, in the training thread
            self._failure = exc

    def wait(self) -> None:
        """Until the last checkpoint is on disk; raises what writing it raised."""
        writing = getattr(self, "_writing", None)
        if writing is not None:
            writing.join()
            self._writing = None
        failure, self._failure = getattr(self, "_failure", None), None
        if failure is not None:
            reason = failure.strerror if isinstance(failure, OSError) and failure.strerror else failure
            fix = artifacts.storage_fix(getattr(failure, "errno", None))
            raise ZooError(f"could not write a checkpoint in {self.folder} ({reason}); {self.resumable(fix)}") from failure

    def resumable(self, fix: str = "free space") -> str:
        """What a run stopped by a write failure (a full disk) keeps, and how to go on."""
        newest = self.newest_position()
        if newest is None:
            return f"no checkpoint was written yet: {fix}, then run the same command to start it again"
        return f"the run keeps its checkpoint at {newest}: {fix}, then run the same command to continue from there"

    def load(self, step: int) -> tuple[Path, Position, dict]:
        """The checkpoint taken after ``step`` optimizer steps: (path, position, arrays)."""
        import numpy as np

        path = self.path(step)
        try:
            check_sizes(path)
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            position = read_position(arrays)
            return path, position, {k: v for k, v in arrays.items() if k != "position" and not k.startswith("history:")}
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise ZooError(f"checkpoint {path} is unreadable ({one_line(exc)})") from None

    def newest_position(self) -> Optional[Position]:
        """Where the newest readable checkpoint stands, reading only that (no arrays)."""
        import numpy as np

        for step in self.steps():
            try:
                with np.load(self.path(step), allow_pickle=False) as archive:
                    return read_position(archive)
            except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
                continue
        return None

    def latest(self) -> Optional[tuple[Path, Position, dict]]:
        """The newest checkpoint that reads back whole."""
        steps = self.steps()
        for step in steps:
            try:
                return self.load(step)
            except ZooError as exc:
                log.warning("%s; trying an older one", exc)
        if steps:
            log.warning("no checkpoint in %s reads back whole: the run starts again from its first epoch", self.folder)
        return None


def check_sizes(path: Path) -> None:
    """NumPy allocates what an array's header declares before reading it: a damaged (or
    crafted) checkpoint declaring more than it holds, or more than this machine's memory,
    is refused first (ValueError) rather than exhausting memory."""
    import numpy as np

    from zoo.config import human_bytes, physical_memory

    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version not in readers:
                    raise ValueError(f"{info.filename} is in .npy format {version}, which the zoo does not write")
                shape, _, dtype = readers[version](member)
            declared = dtype.itemsize * int(np.prod(shape, dtype=object))
            if declared > info.file_size:
                raise ValueError(f"{info.filename} declares {human_bytes(declared)} but holds {human_bytes(info.file_size)}")
            total += info.file_size
    memory = physical_memory()
    if memory and total > memory // 2:
        raise ValueError(f"its arrays take {human_bytes(total)}, over half of the memory this process may use")


def restore(variables: list, arrays: dict, source: Path) -> None:
    """Assign a checkpoint's arrays to ``variables`` after checking that they fit (an
    epoch's end holds no metric totals: the next epoch starts them afresh)."""
    paths = [str(p) for p in arrays["paths"]]
    metrics_from = getattr(variables, "metrics_from", len(variables))  # a plain list: no totals apart

    def fit(first: int, last: int) -> bool:
        return last <= len(paths) and all(tuple(arrays[f"v{i}"].shape) == tuple(variables[i].shape) for i in range(first, last))

    if len(paths) == metrics_from:
        variables = variables[:metrics_from]
    elif metrics_from < len(variables) and fit(0, metrics_from) and not (len(paths) == len(variables) and fit(metrics_from, len(variables))):
        # Totals another version's metrics kept (a confusion matrix where counts are kept now):
        # the weights and the optimizer carry on; the interrupted epoch's totals start afresh.
        log.warning(
            "checkpoint %s: its metric totals are of another form (another keras-zoo's metrics); training continues "
            "from it, this epoch's training metrics counted from here",
            source,
        )
        import numpy as np

        for variable in variables[metrics_from:]:
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
        variables, paths = variables[:metrics_from], paths[:metrics_from]
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


def _numpy(variable):
    """A variable's value as a NumPy array (the backend's own read: Keras' generic
    conversion costs a millisecond a variable, a checkpoint's largest share)."""
    import numpy as np

    value = getattr(variable, "value", variable)
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


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
