"""Experiment trackers: TensorBoard (on by default) and MLflow (``keras-zoo[mlflow]``).

Each is a ``zoo.Logger``: the zoo calls it from a thread of its own on the chief process,
once when the run starts (or resumes), after every epoch with the row ``history.csv`` gets,
and once at the end with the test metrics and the run's files.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlparse

import zoo

TENSORBOARD_FOLDER = "tensorboard"
MLFLOW_RECORD = "mlflow.json"  # in the run directory: the tracker run a resumed run continues


@dataclass
class TensorBoardConfig:
    folder: str = zoo.run_subfolder(TENSORBOARD_FOLDER, "Where in the run directory the logs go.")


class TensorBoardLogger(zoo.Logger):
    """Per-epoch scalars as Keras' TensorBoard callback names them (``epoch_loss`` under
    ``train/`` and ``validation/``), the test metrics under ``test/``."""

    def __init__(self, config: TensorBoardConfig, run: zoo.RunInfo):
        self.folder = Path(run.run_dir) / config.folder
        self.writers: dict = {}
        self.last_epoch = 0

    def _writer(self, split: str):
        import tensorflow as tf

        if split not in self.writers:
            self.writers[split] = tf.summary.create_file_writer(os.fsencode(self.folder / split))  # bytes: any file name
        return self.writers[split]

    def _scalars(self, split: str, values: dict, step: int) -> None:
        import tensorflow as tf

        with self._writer(split).as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(f"epoch_{name}", value)
        self._writer(split).flush()

    def log_epoch(self, epoch, logs):
        self.last_epoch = epoch
        self._scalars("train", {k: v for k, v in logs.items() if not k.startswith("val_")}, epoch)
        self._scalars("validation", {k[4:]: v for k, v in logs.items() if k.startswith("val_")}, epoch)

    def finish(self, metrics, files):
        self._scalars("test", dict(metrics), self.last_epoch)
        for writer in self.writers.values():
            writer.close()


def read_tensorboard(config: TensorBoardConfig, run: zoo.RunInfo) -> dict[str, list[float]]:
    """The per-epoch values in a run's TensorBoard logs, named as in ``history.csv``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    found: dict[str, list[float]] = {}
    for split, prefix in (("train", ""), ("validation", "val_")):
        events = EventAccumulator(str(Path(run.run_dir) / config.folder / split), size_guidance={"tensors": 0})
        events.Reload()
        for tag in events.Tags().get("tensors", []):
            by_step = {event.step: float(make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)}
            found[prefix + tag.removeprefix("epoch_")] = [by_step[step] for step in sorted(by_step)]
    return found


@dataclass
class MLflowConfig:
    tracking_uri: str = field(
        default="",
        metadata={"help": "Where runs are tracked; empty: sqlite:///<the run directory's parent>/mlflow.db."},
    )
    experiment: str = field(default="zoo", metadata={"help": "The MLflow experiment the run goes under."})
    log_files: bool = field(default=True, metadata={"help": "Upload the run's plots, model and records as artifacts."})

    def __post_init__(self) -> None:
        from zoo.config import refuse_password_in_url

        refuse_password_in_url("tracking_uri", self.tracking_uri, "MLflow reads it from MLFLOW_TRACKING_PASSWORD (and MLFLOW_TRACKING_USERNAME)")
        check_tracking_store(self.tracking_uri)


MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}


def check_tracking_store(uri: str) -> None:
    """A ``sqlite:///`` store is a new file or MLflow's: MLflow would add its tables to a
    database of yours (ValueError: the config's one-line mistake)."""
    from zoo.artifacts import sqlite_damage, sqlite_tables

    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    damage = sqlite_damage(path) if path.is_file() else None
    if damage:
        raise ValueError(f"tracking_uri={uri}: {path} is a damaged SQLite database ({damage}); restore it from a backup, or give a new file")
    if path.exists() and (not path.is_file() or not MLFLOW_TABLES <= sqlite_tables(path)):
        raise ValueError(f"tracking_uri={uri}: {path} is not an MLflow tracking database; give a new file (or leave it empty)")


def refuses_folder_stores() -> bool:
    """Whether the MLflow installed refuses folder stores (3.13 and later, unless told not to).
    From its version: importing MLflow takes seconds."""
    import re

    try:
        installed = tuple(int(part) for part in re.findall(r"\d+", version("mlflow"))[:2])
    except PackageNotFoundError:
        return False
    return installed >= (3, 13) and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("true", "1")


def tracking_uri(config: MLflowConfig, run: zoo.RunInfo) -> str:
    uri = config.tracking_uri or f"sqlite:///{Path(run.run_dir).parent / 'mlflow.db'}"
    try:
        check_tracking_store(uri)  # the default store too: an mlflow.db of yours beside the run
    except ValueError as exc:
        raise zoo.ZooError(f"loggers.mlflow.{exc}") from None
    return uri


class MLflowLogger(zoo.Logger):
    """Parameters (the flattened resolved config), per-epoch metrics (step = epoch), test
    metrics (``test_`` prefixed) and the run's files, in an MLflow tracking store. A resumed
    run continues the tracker run it started (recorded in the run directory's mlflow.json)."""

    def __init__(self, config: MLflowConfig, run: zoo.RunInfo):
        import importlib.util

        if importlib.util.find_spec("mlflow") is None:  # before training, not in a warning after it
            raise zoo.ZooError("loggers=[mlflow] needs MLflow: pip install 'keras-zoo[mlflow]'")
        self.config, self.run = config, run
        self.uri = tracking_uri(config, run)
        parsed = urlparse(self.uri)
        if parsed.scheme in ("", "file") and refuses_folder_stores():  # found by MLflow once training ran, untracked
            raise zoo.ZooError(
                f"loggers.mlflow.tracking_uri={self.uri} is a folder store, which MLflow {version('mlflow')} no longer "
                f"writes; give sqlite:///{parsed.path.rstrip('/')}.db (a database file) or a server's http://host:port, "
                f"or set MLFLOW_ALLOW_FILE_STORE=true to keep the folder"
            )
        self.client = None
        self.run_id = ""

    def start(self):
        import os

        # MLflow retries an unreachable server for minutes by default; the run waits at most
        # 30 s for its trackers at the end, so fail fast unless the user chose otherwise.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        from zoo.artifacts import folder_locked

        # The runs of a parallel sweep share the default store: one at a time creates its tables
        # and the experiment (at once, all but one failed on "already exists" and tracked nothing).
        store = Path(self.uri.removeprefix("sqlite:///")).parent if self.uri.startswith("sqlite:///") else None
        with folder_locked(store) if store else contextlib.nullcontext():
            self.client = MlflowClient(tracking_uri=self.uri)
            experiment = self.client.get_experiment_by_name(self.config.experiment)
            if experiment is not None:
                experiment_id = experiment.experiment_id
            elif self.config.tracking_uri:
                experiment_id = self.client.create_experiment(self.config.experiment)
            else:  # a local store keeps its files beside its database, not in the working directory
                artifacts = (Path(self.run.run_dir).parent / "mlartifacts").resolve().as_uri()
                experiment_id = self.client.create_experiment(self.config.experiment, artifact_location=artifacts)
        record = Path(self.run.run_dir) / MLFLOW_RECORD
        if record.is_file() and self.run.resumed:  # not a failed attempt's tracker run, which holds its settings
            try:
                previous = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError):  # damaged: a new tracker run
                previous = {}
            if isinstance(previous, dict) and previous.get("tracking_uri") == self.uri and "run_id" in previous:
                self.run_id = previous["run_id"]
                self.client.update_run(self.run_id, status="RUNNING")
                return
        self.run_id = self.client.create_run(experiment_id, run_name=self.run.name).info.run_id
        from zoo.artifacts import write_json

        write_json(record, {"tracking_uri": self.uri, "run_id": self.run_id})
        params = [Param(key, str(value)[:6000]) for key, value in self.run.params.items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 a call
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log_epoch(self, epoch, logs):
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(name, value, now, epoch) for name, value in logs.items()])

    def finish(self, metrics, files):
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(f"test_{k}", v, now, 0) for k, v in metrics.items()])
        if self.config.log_files:
            for path in files:
                folder = "plots" if Path(path).parent.name == "plots" else None
                self.client.log_artifact(self.run_id, str(path), artifact_path=folder)
        self.client.set_terminated(self.run_id, "FINISHED")


def read_mlflow(config: MLflowConfig, run: zoo.RunInfo) -> dict[str, list[float]]:
    """The per-epoch values MLflow holds for a run, named as in ``history.csv``."""
    from mlflow.tracking import MlflowClient

    record = json.loads((Path(run.run_dir) / MLFLOW_RECORD).read_text(encoding="utf-8"))
    client = MlflowClient(tracking_uri=record["tracking_uri"])
    found = {}
    for name in client.get_run(record["run_id"]).data.metrics:
        if name.startswith("test_"):
            continue
        by_step = {m.step: m.value for m in sorted(client.get_metric_history(record["run_id"], name), key=lambda m: m.timestamp)}
        found[name] = [by_step[step] for step in sorted(by_step)]
    return found


@zoo.hookimpl
def register_loggers():
    return [
        zoo.LoggerPlugin(
            name="tensorboard",
            summary="TensorBoard event files in the run directory: per-epoch training, validation and test values.",
            config=TensorBoardConfig,
            factory=TensorBoardLogger,
            read_back=read_tensorboard,
        ),
        zoo.LoggerPlugin(
            name="mlflow",
            summary="An MLflow tracking store: parameters, per-epoch metrics, test metrics and files (keras-zoo[mlflow]).",
            config=MLflowConfig,
            factory=MLflowLogger,
            read_back=read_mlflow,
            requires=("mlflow",),
        ),
    ]
