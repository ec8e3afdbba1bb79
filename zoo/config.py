"""Configuration: core config classes, plugin configs in Hydra's groups, and validation.

The primary config (``conf/train.yaml``) selects one option from each group::

    model     one per registered model, stored here from its config dataclass
    dataset   one per registered dataset, likewise
    metrics   one per registered metric; several are selected at once: metrics=[f1,auc];
              metrics=auto (the default) takes the standard metrics of the model's objective
    trainer   conf/trainer/*.yaml, checked against TrainerConfig in plan_run
    device    conf/device/*.yaml, checked against DeviceConfig in plan_run
    hparams_search  conf/hparams_search/*.yaml: Optuna searches (sweeper, space, ``objective``)
    experiment      conf/experiment/*.yaml, and those of plugins' config paths (after ours)

Everything here works without TensorFlow, so a run's config is checked completely
(types, unknown keys, missing values, model/dataset/metric compatibility) before any
heavy work starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import math
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional

from zoo import artifacts
from zoo.errors import ZooError
from zoo.hookspecs import CLASSIFICATION, DATA_PATH, PATH_KEYWORDS, RUN_REFERENCE, RUN_SUBFOLDER, DataSpec, run_reference
from zoo.limits import cgroup_folders, read_cgroup_file
from zoo.registry import Registered, Registry, get_registry
from zoo.tables import shorten

if TYPE_CHECKING:  # OmegaConf is imported where used: `zoo info` needs only the dataclasses
    from omegaconf import DictConfig

CONFIG_MODULE = "zoo.conf"
PRIMARY_CONFIG = "train"

# The Keras 3 optimizers selectable by name (checked against Keras in the tests).
OPTIMIZERS = (
    "adadelta", "adafactor", "adagrad", "adam", "adamax", "adamw",
    "ftrl", "lion", "nadam", "rmsprop", "sgd",
)  # fmt: skip
DEVICE_KINDS = ("auto", "cpu", "gpu", "multi_gpu", "tpu", "multi_worker")
PROGRESS = ("auto", "bar", "epoch", "off")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
JIT_COMPILE = ("auto", "true", "false")
RESUME = ("auto", "never")
KEEP_CHECKPOINTS = ("auto", "last", "none")
LR_SCHEDULES = ("constant", "cosine", "exponential", "step", "plateau")
MONITOR_MODES = ("auto", "min", "max")
CLASS_WEIGHTS = ("none", "balanced")
PRUNING_SCOPES = ("layer", "global")
# Optimizers that take a momentum.
WITH_MOMENTUM = ("sgd", "rmsprop")


@dataclass
class EarlyStoppingConfig:
    """``trainer.early_stopping.*``: stop when a logged value stops improving."""

    patience: int = field(default=0, metadata={"help": "Epochs without improvement before stopping (0: off)."})
    monitor: str = field(default="val_loss", metadata={"help": "The logged value watched (a history.csv column)."})
    mode: str = field(
        default="auto",
        metadata={"choices": MONITOR_MODES, "help": "min, max, or auto (losses: min; a metric: as its plugin declares)."},
    )
    min_delta: float = field(default=0.0, metadata={"help": "The least change that counts as an improvement."})
    restore_best: bool = field(
        default=True, metadata={"help": "End on the best epoch's weights (the saved model and test metrics use them)."}
    )

    def __post_init__(self) -> None:
        check_choice("early_stopping.mode", self.mode, MONITOR_MODES)
        if self.patience < 0 or self.min_delta < 0:
            raise ValueError("early_stopping.patience and early_stopping.min_delta cannot be negative")


@dataclass
class PlateauConfig:
    """``trainer.plateau.*``: options of ``trainer.lr_schedule=plateau``."""

    factor: float = field(default=0.5, metadata={"help": "Multiply the learning rate by this on a plateau."})
    patience: int = field(default=3, metadata={"help": "Epochs without improvement that make a plateau."})
    monitor: str = field(default="val_loss", metadata={"help": "The logged value watched."})
    mode: str = field(default="auto", metadata={"choices": MONITOR_MODES, "help": "min, max, or auto (losses: min; a metric: as its plugin declares)."})
    min_delta: float = field(default=0.0, metadata={"help": "The least change that counts as an improvement."})
    min_learning_rate: float = field(default=0.0, metadata={"help": "Never reduce below this."})

    def __post_init__(self) -> None:
        check_choice("plateau.mode", self.mode, MONITOR_MODES)
        if not 0 < self.factor < 1:
            raise ValueError(f"plateau.factor must be between 0 and 1, got {self.factor}")
        if self.patience < 1:
            raise ValueError(f"plateau.patience must be at least 1, got {self.patience}")
        if self.min_delta < 0 or self.min_learning_rate < 0:
            raise ValueError("plateau.min_delta and plateau.min_learning_rate cannot be negative")


@dataclass
class PruningConfig:
    """``trainer.pruning.*``: magnitude pruning of the kernels during training (zoo.compression)."""

    sparsity: float = field(default=0.0, metadata={"help": "Share of kernel weights that end at zero (0: off), e.g. 0.8."})
    begin_step: int = field(default=0, metadata={"help": "Training step at which pruning starts."})
    end_step: int = field(
        default=0, metadata={"help": "Step at which the sparsity is reached (0: the last step of training)."}
    )
    frequency: int = field(default=100, metadata={"help": "Steps between updates of the masks."})
    scope: str = field(
        default="layer",
        metadata={
            "choices": PRUNING_SCOPES,
            "help": "layer: each kernel gets the sparsity; global: the smallest weights of all.",
        },
    )

    def __post_init__(self) -> None:
        check_choice("pruning.scope", self.scope, PRUNING_SCOPES)
        if not 0 <= self.sparsity < 1:
            raise ValueError(f"pruning.sparsity must be in [0, 1), got {self.sparsity}")
        if self.begin_step < 0 or self.end_step < 0 or self.frequency < 1:
            raise ValueError("pruning.begin_step and pruning.end_step cannot be negative, pruning.frequency must be at least 1")
        if self.end_step and self.end_step <= self.begin_step:
            raise ValueError(f"pruning.end_step={self.end_step} must come after pruning.begin_step={self.begin_step}")


@dataclass
class DistillationConfig:
    """``trainer.distillation.*``: learn from a finished run's model (zoo.compression)."""

    teacher: Optional[str] = run_reference("A finished classifier run on the same dataset: its model is the teacher.")
    alpha: float = field(default=0.1, metadata={"help": "Weight of the task loss; 1 - alpha goes to the teacher's."})
    temperature: float = field(default=4.0, metadata={"help": "Softens both models' outputs (T in T^2 * KL)."})

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"distillation.alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ValueError(f"distillation.temperature must be positive, got {self.temperature}")


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    """For config ``__post_init__`` checks: a one-line error for a value not in ``choices``."""
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "choose one of: " + ", ".join(choices)
        raise ValueError(f"{key}={value!r} is not supported; {hint}")


def refuse_password_in_url(key: str, url: str, fix: str) -> None:
    """A password in a URL (``scheme://user:secret@host``) would be printed, written into
    the run's or sweep's records (config.yaml, Hydra's overrides.yaml, multirun.yaml), and
    shown to every user of the machine on the command lines of a search's trials (``ps``).
    ``fix``: where that service takes a password instead."""
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:  # not a URL: the setting's own check says so
        return
    if password is not None:
        raise ZooError(
            f"{key} holds a password, which would be printed, written into the run's records and shown to the machine's "
            f"users on the trials' command lines; give the URL without it: {fix}"
        )


def leads_outside(name: str) -> bool:
    """Whether a relative name given for something inside a folder (a sub-folder, a config
    in a group) would lead out of it: absolute, or climbing with ``..``."""
    path = PurePosixPath(name)
    return path.is_absolute() or ".." in path.parts


# training.fit unrolls a call's steps; TensorFlow stops a function reading its data more often.
MAX_STEPS_PER_EXECUTION = 32


@dataclass
class TrainerConfig:
    """How to train: the public ``trainer.*`` keys."""

    epochs: int = field(default=20, metadata={"help": "Passes over the training split."})
    batch_size: int = field(default=32, metadata={"help": "Examples per step (global, across replicas)."})
    optimizer: str = field(
        default="adam",
        metadata={"choices": OPTIMIZERS, "help": "Keras optimizer name: " + ", ".join(OPTIMIZERS) + "."},
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "The optimizer's learning rate."})
    shuffle_buffer: int = field(default=10_000, metadata={"help": "Examples held for shuffling the training split."})
    shuffle_memory_mb: int = field(
        default=256, metadata={"help": "Most memory the shuffle buffer may take (large images: fewer examples held)."}
    )
    progress: str = field(
        default="auto",
        metadata={
            "choices": PROGRESS,
            "help": "Progress: auto (a bar on a terminal, a line per epoch otherwise), bar, epoch, off.",
        },
    )
    precision: str = field(
        default="float32",
        metadata={
            "choices": PRECISIONS,
            "help": "float32, mixed_float16 (GPUs; with loss scaling) or mixed_bfloat16 (TPUs, recent CPUs/GPUs).",
        },
    )
    jit_compile: str = field(
        default="auto",
        metadata={"choices": JIT_COMPILE, "help": "XLA-compile the steps: auto (Keras decides; off on CPU), true, false."},
    )
    steps_per_execution: int = field(
        default=1, metadata={"help": "Training steps run per call into TensorFlow (raise it for small, fast steps; at most 32)."}
    )

    resume: str = field(
        default="auto",
        metadata={
            "choices": RESUME,
            "help": "auto: a run directory with a checkpoint of this run continues from it, exactly; "
            "never: start from scratch (in a directory that holds no run)."
        },
    )
    checkpoint_every: int = field(
        default=0, metadata={"help": "Save a checkpoint every this many steps (0: by time and at epoch ends only)."}
    )
    checkpoint_minutes: float = field(
        default=10.0, metadata={"help": "Save a checkpoint when this much time passed since the last (0: off)."}
    )
    keep_checkpoints: str = field(
        default="auto",
        metadata={
            "choices": KEEP_CHECKPOINTS,
            "help": "What a finished run keeps of its checkpoints: none, last, or auto (last for multi_worker, else none).",
        },
    )
    deterministic: bool = field(
        default=False,
        metadata={"help": "Turn on TensorFlow's op determinism: bit-identical reruns, somewhat slower steps."},
    )

    # Shaping training (zoo.optimization, zoo.callbacks).
    lr_schedule: str = field(
        default="constant",
        metadata={
            "choices": LR_SCHEDULES,
            "help": "constant, cosine (to min_learning_rate at the last step), exponential or step "
            "(times decay_rate every decay_epochs, smoothly or at once), plateau (see plateau.*).",
        },
    )
    warmup_steps: int = field(default=0, metadata={"help": "Steps of linear warm-up from 0 to learning_rate."})
    decay_rate: float = field(default=0.5, metadata={"help": "exponential, step: the factor per decay_epochs."})
    decay_epochs: float = field(default=10.0, metadata={"help": "exponential, step: epochs per decay_rate."})
    min_learning_rate: float = field(default=0.0, metadata={"help": "cosine: the learning rate at the end."})
    plateau: PlateauConfig = field(default_factory=PlateauConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    weight_decay: float = field(default=0.0, metadata={"help": "Decoupled weight decay (0: off)."})
    clipnorm: float = field(default=0.0, metadata={"help": "Clip each gradient to this norm (0: off)."})
    momentum: float = field(default=0.0, metadata={"help": "Momentum of sgd and rmsprop."})
    accumulate_steps: int = field(
        default=1, metadata={"help": "Average the gradients of this many steps per update (a batch this many times larger)."}
    )
    class_weight: Any = field(
        default="none",
        metadata={"help": "Classification: none, balanced (inverse class frequency), or one weight per class: [1,3]."},
    )
    label_smoothing: float = field(default=0.0, metadata={"help": "Classification: smooth the targets by this much."})
    init_from: Optional[str] = run_reference(
        "A finished run's directory: start from its trained weights (matching layer names and shapes)."
    )
    freeze: list[str] = field(
        default_factory=list, metadata={"help": "Layer-name patterns to keep fixed, e.g. [conv*] (fnmatch)."}
    )
    pruning: PruningConfig = field(default_factory=PruningConfig)
    distillation: DistillationConfig = field(default_factory=DistillationConfig)

    def __post_init__(self) -> None:
        self.jit_compile = str(self.jit_compile).lower()  # `trainer.jit_compile=true` arrives as "True"
        check_choice("optimizer", self.optimizer.lower(), OPTIMIZERS)
        check_choice("progress", self.progress, PROGRESS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("jit_compile", self.jit_compile, JIT_COMPILE)
        check_choice("resume", self.resume, RESUME)
        check_choice("keep_checkpoints", self.keep_checkpoints, KEEP_CHECKPOINTS)
        for key in ("epochs", "batch_size", "shuffle_buffer", "shuffle_memory_mb", "steps_per_execution"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.steps_per_execution > MAX_STEPS_PER_EXECUTION:
            raise ValueError(
                f"steps_per_execution must be at most {MAX_STEPS_PER_EXECUTION} (the steps of one call are unrolled, "
                f"and TensorFlow refuses more reads of the data in one function), got {self.steps_per_execution}"
            )
        for key in ("checkpoint_every", "checkpoint_minutes"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} cannot be negative, got {getattr(self, key)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        for key in ("warmup_steps", "weight_decay", "clipnorm", "momentum", "min_learning_rate"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} cannot be negative, got {getattr(self, key)}")
        if not 0 < self.decay_rate <= 1 or self.decay_epochs <= 0:
            raise ValueError("decay_rate must be in (0, 1] and decay_epochs positive")
        if self.momentum and self.optimizer.lower() not in WITH_MOMENTUM:
            raise ValueError(f"momentum applies to {' and '.join(WITH_MOMENTUM)}, not optimizer={self.optimizer}")
        if self.momentum >= 1:  # Keras refused sgd's as the run started; rmsprop's never let an update fade
            raise ValueError(f"momentum must be below 1 (the share of the last update kept in the next), got {self.momentum}")
        if self.accumulate_steps < 1:
            raise ValueError(f"accumulate_steps must be at least 1, got {self.accumulate_steps}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if isinstance(self.class_weight, str):
            check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        elif not (
            isinstance(self.class_weight, (list, tuple))
            and self.class_weight
            and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in self.class_weight)
        ):
            raise ValueError(f"class_weight must be none, balanced or a list of weights like [1,3], got {self.class_weight!r}")
        if isinstance(self.class_weight, (list, tuple)) and not any(self.class_weight):  # every loss term times 0
            raise ValueError(f"class_weight={list(self.class_weight)} weighs every class 0: nothing would train; give a class a positive weight")
        # A floor above the start would make the rate climb (to it, cosine; a plateau "lowering" it to it).
        if self.lr_schedule == "cosine" and self.min_learning_rate >= self.learning_rate:
            raise ValueError(
                f"min_learning_rate={self.min_learning_rate} must be below learning_rate={self.learning_rate} "
                "(cosine goes down from learning_rate to it)"
            )
        if self.lr_schedule == "plateau" and self.plateau.min_learning_rate > self.learning_rate:
            raise ValueError(
                f"plateau.min_learning_rate={self.plateau.min_learning_rate} is above learning_rate={self.learning_rate}: "
                "a plateau would raise the rate to it; give a floor below learning_rate"
            )


MAX_CPU_REPLICAS = 64


@dataclass
class DeviceConfig:
    """Where to train: the ``device`` group."""

    kind: str = field(default="auto", metadata={"choices": DEVICE_KINDS, "help": ", ".join(DEVICE_KINDS) + "."})
    index: Optional[int] = field(
        default=None,
        metadata={"help": "device=gpu: which GPU; unset: the first one no other zoo process here is using."},
    )
    gpus: Optional[list[int]] = field(default=None, metadata={"help": "device=multi_gpu: GPU indices (all if unset)."})
    replicas: int = field(
        default=1, metadata={"help": "device=cpu: split the CPU into this many mirrored replicas (to try out distribution)."}
    )
    address: str = field(
        default="", metadata={"help": "device=tpu: the TPU's name or grpc:// address; empty on a TPU VM."}
    )
    workers: Optional[list[str]] = field(
        default=None, metadata={"help": "device=multi_worker: every worker's host:port, the same list on each."}
    )
    rank: Optional[int] = field(
        default=None, metadata={"help": "device=multi_worker with workers: this process's index in that list."}
    )
    port: int = field(
        default=8888, metadata={"help": "device=multi_worker under SLURM: the first port of the tasks on a node."}
    )
    timeout: float = field(
        default=300.0,
        metadata={"help": "device=multi_worker: seconds to wait for every worker to start; device=tpu: for its address to answer."},
    )

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, DEVICE_KINDS)
        if not 1 <= self.replicas <= MAX_CPU_REPLICAS:  # each is a device TensorFlow sets up: thousands take minutes
            raise ValueError(f"replicas must be from 1 to {MAX_CPU_REPLICAS}, got {self.replicas}")
        if not 0 < self.timeout <= 7 * 24 * 3600:
            raise ValueError(f"timeout must be a number of seconds above 0 (at most a week), got {self.timeout}")
        # Known before TensorFlow starts: a repeated GPU had reached MirroredStrategy, and a port
        # no socket can have waited out device.timeout as "Connection refused".
        if self.index is not None and self.index < 0:
            raise ValueError(f"index must be a GPU's number (0, 1, ...), got {self.index}")
        if self.gpus is not None and (not self.gpus or min(self.gpus) < 0 or len(set(self.gpus)) < len(self.gpus)):
            raise ValueError(f"gpus must list distinct GPU numbers (0, 1, ...), or be unset for all of them, got {self.gpus}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be from 1 to 65535, got {self.port}")
        tpu_port = re.fullmatch(r"grpc://[^/]+:(\d+)/?", self.address)
        if tpu_port and not (len(tpu_port.group(1)) <= 5 and 1 <= int(tpu_port.group(1)) <= 65535):
            raise ValueError(f"address={shorten(self.address, 60)}: ports are from 1 to 65535 (a TPU's is 8470)")
        if self.workers is not None:
            bad = [w for w in self.workers if not re.fullmatch(r"[^:\s]+:\d{1,5}", str(w)) or not 1 <= int(str(w).rsplit(":", 1)[1]) <= 65535]
            if any(str(w).count(":") > 1 for w in self.workers):  # the rendezvous and its checks speak IPv4
                raise ValueError(f"workers must be host names or IPv4 addresses with a port, not IPv6 ones, got {shorten(str(self.workers), 120)}")
            if bad or not self.workers:
                raise ValueError(f"workers must be a list of host:port (ports 1 to 65535), got {shorten(str(self.workers), 120)}")
            if len(set(self.workers)) < len(self.workers):
                raise ValueError(f"workers must be distinct host:port addresses, got {self.workers}")
            if self.rank is None or not 0 <= self.rank < len(self.workers):
                raise ValueError(
                    f"workers needs this process's index in the list: device.rank=0..{len(self.workers) - 1}"
                )


@dataclass
class CrossValidationConfig:
    """``cv.*``: k-fold cross-validation over the training data (zoo.crossval)."""

    folds: int = field(
        default=0, metadata={"help": "K >= 2: train K times, each fold of train+validation held out once; 0: off."}
    )
    fold: Optional[int] = field(
        default=None, metadata={"help": "Train only this fold (1..K); set by the zoo for each fold's own run."}
    )

    def __post_init__(self) -> None:
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"folds must be 0 (off) or at least 2, got {self.folds}")
        if self.fold is not None and not 1 <= self.fold <= self.folds:
            raise ValueError(f"fold must be one of 1..folds={self.folds}, got {self.fold}")


TOP_LEVEL_KEYS = ("seed", "model", "dataset", "metrics", "callbacks", "loggers", "trainer", "device", "objective", "cv")
# Config groups of which several options are chosen at once: metrics=[f1,auc], loggers=[...].
LIST_GROUPS = {"metrics": "metric", "callbacks": "callback", "loggers": "logger"}


# --------------------------------------------------------------------------------------
# Typed plugin configs
# --------------------------------------------------------------------------------------


def field_help(config_cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(name, type, default, help)`` for each field of a config dataclass; the fields of
    a nested one as ``outer.inner``."""
    rows = []
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            if dataclasses.is_dataclass(value):
                rows.extend(field_help(type(value), f"{prefix}{f.name}."))
                continue
            default = repr(value)
        else:
            default = "(required)"
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append((prefix + f.name, str(type_name), default, f.metadata.get("help", "")))
    return rows


# `zoo info trainer`, `zoo info device`, `zoo info cv`: the config sections that are no plugin's.
CONFIG_SECTIONS = {"trainer": "TrainerConfig", "device": "DeviceConfig", "cv": "CrossValidationConfig"}


def make_config(entry: Registered, overrides: Mapping[str, Any], prefix: str = "") -> Any:
    """The config dataclass of ``entry`` with ``overrides`` applied and type-checked."""
    return typed_config(entry.item.config, overrides, f"{entry.kind} {entry.name!r}", prefix, entry.name)


def config_schema(config_cls: type, owner: str) -> DictConfig:
    """OmegaConf's typed node of a config class, or one line saying why a plugin's class
    cannot be one (a ``Literal``, ``Set`` or ``datetime`` field)."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.structured(config_cls)
    except Exception as exc:  # noqa: BLE001 - what OmegaConf refuses comes in several types
        raise ZooError(
            f"{owner} cannot be configured: its config class {config_cls.__qualname__} is not one Hydra can hold "
            f"({describe_omegaconf_error(exc)}); its plugin must change it (fields of str, int, float, bool, an Enum, "
            "Optional, a list or dict of those, or a nested dataclass)"
        ) from None


def check_section_shapes(container: Mapping[str, Any]) -> None:
    """Each section of a composed config is of its kind: only a config file can make one
    otherwise (an experiment's ``trainer: 5``), and that had failed as "zoo failed:
    TypeError: 'int' object is not iterable", or after training (``objective: 3``)."""
    source = "a config file (an experiment's, or yours in --config-dir) set it so"
    for key in ("model", "dataset"):
        if not isinstance(container.get(key), dict):
            raise ZooError(f"{key} must be one chosen by name ({key}=NAME), got {shorten(repr(container.get(key)))}; {source}")
    for key in ("trainer", "device", "cv"):
        if not isinstance(container.get(key), dict) and not (key == "cv" and container.get(key) is None):
            raise ZooError(f"{key} must hold its settings ({key}.KEY=VALUE), got {shorten(repr(container.get(key)))}; {source}")
    for key in LIST_GROUPS:
        if not isinstance(container.get(key), (dict, type(None))):
            raise ZooError(f"{key} takes names ({key}=[a,b]), got {shorten(repr(container.get(key)))}; {source}")
    objective = container.get("objective")
    if not isinstance(objective, (str, type(None))) or objective == "":
        raise ZooError(f"objective must be the name of one of the run's values (objective=val_accuracy), got {shorten(repr(objective))}")


def typed_config(
    config_cls: type, overrides: Mapping[str, Any], owner: str, prefix: str, info_name: Optional[str] = None
) -> Any:
    """An instance of ``config_cls`` from ``overrides``, with every mistake as one line.

    ``owner`` names what the config belongs to in messages ("model 'cnn_classifier'");
    ``prefix`` is the dotted path of its keys on the command line ("model.").
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    known = [f.name for f in dataclasses.fields(config_cls)]
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else f"its keys are: {', '.join(known) or '(none)'}"
            see = f" (see 'zoo info {info_name}')" if info_name else ""
            raise ZooError(f"unknown key '{prefix}{key}' for {owner}; {hint}{see}")
    check_path_settings(config_cls, overrides, prefix)
    schema = config_schema(config_cls, owner)
    try:
        merged = OmegaConf.merge(schema, literal(dict(overrides)))  # resolved already
        check_number_ranges(OmegaConf.to_container(merged), prefix, dict(_leaves(OmegaConf.to_container(schema), prefix)))
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ZooError(
                f"{owner} needs a value for {', '.join(prefix + m for m in missing)}; "
                f"set it on the command line, e.g. {prefix}{missing[0]}=..."
            )
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        problem = describe_omegaconf_error(exc, prefix)
    except (ValueError, TypeError) as exc:  # raised by the config's own __post_init__ checks
        problem = f"{prefix}{exc}"
    raise ZooError(f"{problem} ({owner})" if info_name else problem)


INT64_MAX = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32: below it, precision goes, then the value


def check_number_ranges(typed: Any, prefix: str, defaults: Mapping[str, Any]) -> None:
    """Numbers a setting may not hold, as typed (the text ``nan`` given to ``zoo evaluate`` is a
    float only once typed). NaN slips through every "must be positive" check (nan <= 0 is
    false) and infinities reach the optimizer (clipnorm=inf gives NaN gradients). Past what
    TensorFlow holds: an integer past 64 bits (``filters=10**20``) had failed as "keras
    failed: ValueError: Can't convert Python sequence with out-of-range integer to Tensor", a
    value past float32 (``l1=1e308``, cast by Keras) as "... out of range for a double-precision
    float"; one too small for it (``learning_rate=1e-320``) is 0 there. A plugin's own default
    is its author's (a Python-side bound of 1e100, say), not the user's mistake."""
    for key, value in _leaves(typed, prefix):
        if isinstance(value, float) and not math.isfinite(value):
            raise ZooError(f"{key}={value} must be a finite number")
        if key in defaults and defaults[key] == value:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
            raise ZooError(f"{key}={shorten(str(value), 40)} is beyond the 64-bit integers TensorFlow counts with (at most {INT64_MAX:,}); give a smaller number")
        if isinstance(value, float) and math.isfinite(value) and abs(value) > FLOAT32_MAX:
            raise ZooError(f"{key}={value:g} is beyond the float32 range TensorFlow computes in (at most {FLOAT32_MAX:.1e}); give a smaller number")
        if isinstance(value, float) and 0 < abs(value) < FLOAT32_TINY:  # learning_rate=1e-320 trained nothing, unsaid
            raise ZooError(f"{key}={value!r} is 0 in the float32 TensorFlow computes in (its smallest is {FLOAT32_TINY:.1e}); give 0 or a larger number")


def divergence_fix(plan: "RunPlan") -> str:
    """What to change when a run's loss stops being finite: the learning rate, and the
    run's other numbers set far above their defaults (``model.l1=1e20`` had been answered
    with "lower trainer.learning_rate (it is 0.001)")."""
    raised = []
    for prefix, config in (("model.", plan.model_config), ("trainer.", plan.trainer)):
        for key, value, default in _float_settings(config, prefix):
            if key != "trainer.learning_rate" and abs(value) >= max(1.0, 10 * abs(default)):
                raised.append(f"{key}={value:g}")
    also = f", or the settings set far above their defaults ({', '.join(raised)})" if raised else ""
    return f"lower trainer.learning_rate (it is {plan.trainer.learning_rate:g}){also}, or look for NaN/Inf values in the data"


def _float_settings(config: Any, prefix: str):
    """(key, value, default) of each float field of a config dataclass, nested ones too."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            yield from _float_settings(value, f"{prefix}{f.name}.")
        elif isinstance(value, float) and (f.default is None or type(f.default) in (int, float)):
            yield f"{prefix}{f.name}", value, float(f.default or 0.0)


def check_path_settings(config_cls: type, overrides: Mapping[str, Any], prefix: str) -> None:
    """A path field (``data_path``, ``run_reference``) given as empty text (read as the
    working folder, it had made a project's sub-folders an image folder's classes), or as
    ``~user/...`` of a user this machine does not have ("pathlib failed: RuntimeError")."""
    for f in dataclasses.fields(config_cls):
        value = overrides.get(f.name)
        if (f.metadata.get(DATA_PATH) or f.metadata.get(RUN_REFERENCE)) and isinstance(value, str):
            if not value.strip():
                others = ["null"] * (f.default is None) + list(f.metadata.get(PATH_KEYWORDS, ()))
                raise ZooError(f"{prefix}{f.name} is empty; give a path" + (f" (or {', '.join(others)})" if others else ""))
            artifacts.user_path(value, prefix + f.name)
        if isinstance(value, Mapping) and f.default_factory is not dataclasses.MISSING:  # a nested section's own fields
            nested = f.default_factory()
            if dataclasses.is_dataclass(nested):
                check_path_settings(type(nested), value, f"{prefix}{f.name}.")


# --------------------------------------------------------------------------------------
# Hydra's ConfigStore
# --------------------------------------------------------------------------------------


def _node(entry: Registered, with_name: bool) -> DictConfig:
    from omegaconf import OmegaConf

    try:
        typed = OmegaConf.structured(entry.item.config)
    except Exception:  # noqa: BLE001 - a plugin's config Hydra cannot hold (a Literal or Set field, say)
        # Stored without fields: every other item stays usable (one such plugin had failed every
        # `zoo train`), and choosing this one fails in plan_run, naming the plugin's mistake.
        typed = OmegaConf.create({})
    if not with_name:
        return typed
    # `name` first, so `zoo train --cfg job` reads "model: {name: cnn_classifier, ...}".
    node = OmegaConf.create({"name": entry.name})
    OmegaConf.set_struct(node, False)
    return OmegaConf.merge(node, typed)


@functools.cache
def plugin_config_paths() -> type:
    """A Hydra search-path plugin adding the plugins' config paths (``register_config_paths``)
    after the zoo's own, so that their ``experiment/*.yaml`` are ``+experiment=`` presets."""
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    class PluginConfigPaths(SearchPathPlugin):
        def manipulate_search_path(self, search_path) -> None:
            if not any(element.path == f"pkg://{CONFIG_MODULE}" for element in search_path.get_path()):
                return  # another Hydra app in this process
            for source, path in get_registry().config_paths:
                search_path.append(provider=f"zoo plugin {source.label}", path=path)

    return PluginConfigPaths


def register_configs(registry: Optional[Registry] = None) -> None:
    """Store every registered plugin's config in its Hydra group (``model``, ``dataset``,
    ``metrics``), so that any installed plugin can be chosen by name with no YAML."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from zoo.discovery import load_hydra_plugins

    load_hydra_plugins()  # first: a broken one is one line naming it
    registry = registry or get_registry()
    stored = (id(registry), tuple((entry.kind, entry.name, id(entry.item)) for entry in registry.list()))
    if getattr(register_configs, "stored", None) == stored:
        return  # `zoo train` checks the overrides, then Hydra composes: once is enough
    register_configs.stored = stored
    Plugins.instance().register(plugin_config_paths())
    # Hydra finds plugins by walking the `hydra_plugins` folders, which misses this one in an
    # editable install (setuptools maps it through an import hook): named here, it is found either way.
    from hydra_plugins.zoo_optuna_sweeper import ZooOptunaSweeper

    Plugins.instance().register(ZooOptunaSweeper)
    store = ConfigStore.instance()
    store.store(group="metrics", name="auto", node={})  # plan_run fills in the model's defaults
    store.store(group="callbacks", name="none", node={})
    store.store(group="loggers", name="none", node={})
    groups = {kind: group for group, kind in LIST_GROUPS.items()}
    for kind in ("model", "dataset", *groups):
        for name in registry.names(kind):
            # A conflicting name is stored once; using it fails in plan_run, naming both owners.
            entry = registry.list(kind, name)[0]
            if kind in groups:  # several merge side by side: metrics.<name>.<field>
                store.store(group=groups[kind], name=name, node={name: _node(entry, with_name=False)})
            else:
                store.store(group=kind, name=name, node=_node(entry, with_name=True))


@dataclass(frozen=True)
class UserConfigs:
    """Where ``zoo train`` takes its configs from, as its Hydra flags say: the user's
    ``--config-dir`` (searched first) and the primary config's ``--config-name``."""

    folder: Optional[Path] = None
    name: str = PRIMARY_CONFIG


@contextlib.contextmanager
def _outer_hydra_set_aside() -> Iterator[None]:
    """Inside another Hydra application (a user's ``@hydra.main`` composing zoo runs), Hydra
    is set up already: composing failed on "GlobalHydra is already initialized". Its Hydra
    and its ``HydraConfig`` are set aside while the zoo composes, then put back."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    outer = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    if outer is None:
        yield
        return
    outer_config = HydraConfig.instance().cfg
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
        GlobalHydra.instance().initialize(outer)
        HydraConfig.instance().cfg = outer_config


# Hydra's state is the process's (GlobalHydra): two threads composing at once had failed on
# "GlobalHydra is already initialized". They take turns.
HYDRA_IN_USE = threading.RLock()


@contextlib.contextmanager
def _initialized_hydra(configs: Optional[UserConfigs]) -> Iterator[Any]:
    """Hydra set up as ``zoo train`` sets it up: the zoo's configs with the user's searched
    first, as Hydra's own --config-dir does (before the structured configs)."""
    from hydra import initialize_config_module
    from hydra._internal.hydra import Hydra
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    with HYDRA_IN_USE, _outer_hydra_set_aside(), initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        if configs is not None and configs.folder is not None:
            search_path = GlobalHydra.instance().hydra.config_loader.config_search_path  # type: ignore[union-attr]
            search_path.prepend("command-line", f"file://{Path(configs.folder).expanduser().absolute()}", SearchPathQuery("schema"))
            GlobalHydra.instance().clear()
            Hydra.create_main_hydra2(task_name="train", config_search_path=search_path)
        yield GlobalHydra.instance().hydra


def compose(overrides: list[str], configs: Optional[UserConfigs] = None, with_hydra: bool = False) -> DictConfig:
    """Compose the primary config with ``overrides`` (no sweeps) as ``zoo train`` would,
    with the user's configs searched first as Hydra does; ``with_hydra``: keep the
    ``hydra`` node too, and make ``${hydra:...}`` resolvable in it."""
    from hydra import compose as hydra_compose
    from hydra.core.hydra_config import HydraConfig

    if isinstance(overrides, str):  # its characters would be read as overrides: "Error parsing override 's'"
        raise TypeError(f"compose takes a list of overrides, e.g. compose([{overrides!r}]), not one string")
    configs = configs or UserConfigs()
    with _initialized_hydra(configs):
        cfg = hydra_compose(config_name=configs.name, overrides=overrides, return_hydra_config=with_hydra)
    if with_hydra:
        HydraConfig.instance().set_config(cfg)
    return cfg


def compose_job(overrides: list[str], configs: Optional[UserConfigs] = None, number: Optional[int] = None) -> DictConfig:
    """A job's config as Hydra hands it to the run: ``${hydra:...}`` in it resolvable
    (``hydra.job.num`` set to ``number`` in a sweep, as Hydra's launchers set it: a seed per
    job, ``seed=${hydra:job.num}``, had failed the zoo's check), the ``hydra`` node gone."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    cfg = compose(overrides, configs, with_hydra=True)  # HydraConfig set from it
    if number is not None:
        with read_write(cfg.hydra.job):
            cfg.hydra.job.num = number
        HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def config_loader(configs: Optional[UserConfigs] = None) -> Any:
    """Hydra's config loader over the same configs: what a sweep's ``glob(...)`` lists a
    group's options with, as Hydra's sweeper has it."""
    with _initialized_hydra(configs) as hydra:
        return hydra.config_loader


# --------------------------------------------------------------------------------------
# Validation of a composed config
# --------------------------------------------------------------------------------------


@dataclass
class RunPlan:
    """A validated run: the chosen items with their typed configs."""

    seed: int
    model: Registered
    model_config: Any
    dataset: Registered
    dataset_config: Any
    spec: DataSpec
    metrics: list[tuple[Registered, Any]]
    trainer: TrainerConfig
    device: DeviceConfig
    cv: CrossValidationConfig = field(default_factory=CrossValidationConfig)
    callbacks: list[tuple[Registered, Any]] = field(default_factory=list)
    loggers: list[tuple[Registered, Any]] = field(default_factory=list)


def plan_run(cfg: DictConfig, registry: Optional[Registry] = None, spec: Optional[DataSpec] = None) -> RunPlan:
    """Check a composed config completely and resolve its plugin choices, without TF.

    ``spec`` (a finished run's recorded one) stands in for describing the dataset again,
    so that a trained model is used with the data it was trained on.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    registry = registry or get_registry()
    extra = [k for k in cfg if k not in TOP_LEVEL_KEYS]
    if extra and (unpackaged := unpackaged_preset(str(extra[0]))):
        raise ZooError(unpackaged)
    if extra:
        close = difflib.get_close_matches(str(extra[0]), TOP_LEVEL_KEYS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "top-level keys are: " + ", ".join(TOP_LEVEL_KEYS)
        raise ZooError(f"unknown config key {extra[0]!r}; {hint}")
    try:
        missing = sorted(OmegaConf.missing_keys(cfg))  # resolves interpolations, which may fail too
        if missing:
            raise ZooError(f"no value for {missing[0]!r}; set it on the command line, e.g. {missing[0]}=...")
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ZooError(describe_omegaconf_error(exc)) from None

    check_section_shapes(container)
    seed = seed_value(container.get("seed"))
    model, model_config = _plugin_choice(registry, "model", container["model"])
    dataset, dataset_config = _plugin_choice(registry, "dataset", container["dataset"])
    spec = spec or dataset.item.describe(dataset_config)
    check_model_fits(model, model_config, spec, f"dataset {dataset.name!r}")
    objective = model.item.objective
    chosen = container.get("metrics") or {name: {} for name in metrics_for(registry, objective, defaults_only=True)}
    metrics = []
    for name, overrides in chosen.items():
        entry = registry.get("metric", name)
        if objective not in entry.item.objectives:
            fitting = ", ".join(metrics_for(registry, objective))
            raise ZooError(
                f"metric {name!r} scores {', '.join(entry.item.objectives)}, but model {model.name!r} learns "
                f"{objective}; choose from: {fitting or '(none registered)'}, or metrics=auto"
            )
        metrics.append((entry, make_config(entry, overrides or {}, prefix=f"metrics.{name}.")))
    chosen_items = {group: list_choices(registry, group, container.get(group)) for group in ("callbacks", "loggers")}
    trainer = typed_config(TrainerConfig, container["trainer"], "trainer", "trainer.")
    device = typed_config(DeviceConfig, container["device"], "device", "device.")
    cv = typed_config(CrossValidationConfig, container.get("cv") or {}, "cv", "cv.")
    if cv.folds and device.kind == "multi_worker":
        raise ZooError("cv.folds does not run with device=multi_worker; train the folds one by one (cv.fold=1..K) or on one machine")
    if device.kind == "cpu" and trainer.batch_size % device.replicas:
        # TensorFlow would abort or fail deep inside: each replica takes an equal share.
        raise ZooError(
            f"trainer.batch_size={trainer.batch_size} does not split over device.replicas={device.replicas}; "
            f"choose a multiple of {device.replicas}, e.g. trainer.batch_size={device.replicas * max(1, trainer.batch_size // device.replicas)}"
        )
    if isinstance(trainer.class_weight, list) and len(trainer.class_weight) != spec.num_classes:
        raise ZooError(
            f"trainer.class_weight has {len(trainer.class_weight)} weights; the dataset has {spec.num_classes} classes"
        )
    for key, value in (("label_smoothing", trainer.label_smoothing), ("class_weight", trainer.class_weight != "none"),
                       ("distillation.teacher", trainer.distillation.teacher)):  # fmt: skip
        if value and objective != CLASSIFICATION:
            raise ZooError(f"trainer.{key} applies to classifiers; model {model.name!r} learns {objective}")
    watched = [("trainer.early_stopping", trainer.early_stopping, trainer.early_stopping.patience),
               ("trainer.plateau", trainer.plateau, trainer.lr_schedule == "plateau")]  # fmt: skip
    for owner, watching, used in watched:
        if used and device.kind == "multi_worker" and watching.monitor.startswith("val_"):
            # Only the chief validates; all workers must decide alike.
            raise ZooError(
                f"{owner}.monitor={watching.monitor} is not available with device=multi_worker (only the chief validates); "
                f"monitor a training value such as {owner}.monitor=loss"
            )
        if used and watching.mode == "auto" and improving_direction(watching.monitor, registry) is None:
            known = ["loss", "val_loss", *(f"{split}{entry.name}" for entry, _ in metrics for split in ("", "val_"))]
            if watching.monitor.removeprefix("val_") not in registry.names("metric"):  # a typo, not a metric's
                raise ZooError(
                    f"{owner}.monitor={watching.monitor!r} is none of the run's losses and metrics ({', '.join(known)}); "
                    f"choose one, or set {owner}.mode=max or min for a value the model logs itself"
                )
            raise ZooError(
                f"{owner}.mode=auto cannot tell whether {watching.monitor} improves up or down (its metric plugin declares "
                f"no greater_is_better); set {owner}.mode=max or {owner}.mode=min"
            )
    check_batch_fits_in_memory(spec, trainer.batch_size)
    plan = RunPlan(
        seed=seed,
        model=model,
        model_config=model_config,
        dataset=dataset,
        dataset_config=dataset_config,
        spec=spec,
        metrics=metrics,
        trainer=trainer,
        device=device,
        cv=cv,
        callbacks=chosen_items["callbacks"],
        loggers=chosen_items["loggers"],
    )
    for _, owner, name, value in [*_references(plan), *_references(plan, DATA_PATH)]:  # absolute: the run may start elsewhere
        if "://" not in value:  # a URL (gs://bucket/data) names one place from anywhere
            setattr(owner, name, str(Path(value).expanduser().resolve()))
    for key, _, _, value in _references(plan, RUN_SUBFOLDER):
        if leads_outside(value) or value.startswith("~"):
            raise ZooError(f"{key}={value}: it names a folder inside the run directory; give a relative name without '..'")
        first = PurePosixPath(value).parts[0] if PurePosixPath(value).parts else "."
        if first == ".":  # the run's folder itself
            raise ZooError(f"{key}={value}: that is the run directory itself; give the name of a folder inside it")
        if first in RUNS_OWN_NAMES:  # snapshots in a folder named model.keras: the model could not be saved
            raise ZooError(f"{key}={value}: the run keeps its own {first} there; give a folder name of its own")
    return plan


# What a plugin's folder in the run (``run_subfolder``) may not be: the run's own records, and
# the folders the zoo fills itself. TensorBoard's and the snapshots' folders are their own.
RUNS_OWN_NAMES = frozenset(
    {"", ".", *artifacts.RUN_FILES, artifacts.CHECKPOINTS, ".hydra", "folds", "export", "plots"}
)


def physical_memory() -> Optional[int]:
    """Bytes of memory this process may use: the machine's, or less where a control group
    limits it (a container's, a SLURM job's); None where unknown."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return None
    return min([memory, *cgroup_memory_limits()])


def cgroup_memory_limits(root: Path = Path("/")) -> list[int]:
    """The memory limits of this process's control groups and of every group above them:
    cgroup v2's ``memory.max`` and v1's ``memory.limit_in_bytes`` (a SLURM job's limit is
    set on the job's group, above its step's; v1 is what SLURM and Docker use on older
    systems, where only v2's top-level file had been read and the kernel killed a run the
    check had let through)."""
    limits = []
    for folder, v1 in cgroup_folders("memory", root):
        limit = read_cgroup_file(folder / ("memory.limit_in_bytes" if v1 else "memory.max"))
        if limit.isdigit():  # "max" (v2) and v1's near 2**63 mean none
            limits.append(int(limit))
    return limits


def human_bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def refuse_beyond_memory(needed: int, what: str, fix: str) -> None:
    """One line, before anything is allocated, where ``what`` would take more than half of
    the memory this process may use (``physical_memory``): past that the kernel kills the
    process with nothing said (or TensorFlow aborts it), often minutes in. Plugins whose
    data or model grows with their settings call it too."""
    memory = physical_memory()
    if memory and needed > memory / 2:  # training needs room beside it: activations, gradients, copies
        raise ZooError(f"{what}: {human_bytes(needed)}, more than half of the {human_bytes(memory)} of memory this process may use; {fix}")


def check_model_fits(model: Registered, model_config: Any, spec: DataSpec, data: str) -> None:
    """One line where ``model`` (its entry and config) cannot learn from ``data`` (named so in
    the line) as ``spec`` describes it: another task, examples of another rank, or its own
    plugin's reason. For runs, and for :func:`zoo.create_model`, which had built a GRU text
    generator for 8x8 digit images without a word."""
    if spec.task not in model.item.tasks:
        raise ZooError(
            f"model {model.name!r} trains on {' or '.join(model.item.tasks)} datasets but {data} is a {spec.task} dataset; "
            "choose a model listed by 'zoo list model' that fits"
        )
    rank = model.item.input_rank
    if rank is not None and len(spec.input_shape) != rank:
        raise ZooError(
            f"model {model.name!r} needs examples of rank {rank} but {data} yields shape {tuple(spec.input_shape)}; "
            "choose a model listed by 'zoo list model' that fits"
        )
    reason = model.item.accepts(model_config, spec) if model.item.accepts else None
    if reason:
        raise ZooError(f"model {model.name!r} cannot learn from {data}: {reason}")


def check_batch_fits_in_memory(spec: DataSpec, batch_size: int) -> None:
    """A batch too large for this machine's memory (a huge image size) is one line before
    TensorFlow starts."""
    refuse_beyond_memory(
        math.prod(spec.input_shape) * 4 * batch_size,  # float32, as models take it
        f"one batch of {batch_size} examples of shape {tuple(spec.input_shape)}",
        "make the examples (dataset.*) or trainer.batch_size smaller",
    )


def list_choices(registry: Registry, group: str, chosen: Optional[Mapping[str, Any]]) -> list[tuple[Registered, Any]]:
    """The items chosen in a list group (``callbacks=[a,b]``) with their typed configs."""
    found = []
    for name, overrides in (chosen or {}).items():
        entry = registry.get(LIST_GROUPS[group], name)
        found.append((entry, make_config(entry, overrides or {}, prefix=f"{group}.{name}.")))
    return found


def _references(plan: RunPlan, marker: str = RUN_REFERENCE) -> list[tuple[str, Any, str, str]]:
    """``(key, config object, field name, path)`` of every run reference the plan sets (or
    of every field with another ``marker`` in its metadata)."""
    configs = [("trainer.", plan.trainer), ("model.", plan.model_config), ("dataset.", plan.dataset_config)]
    configs += [(f"{group}.{entry.name}.", config) for group in ("metrics", "callbacks", "loggers")
                for entry, config in getattr(plan, group)]  # fmt: skip
    found = []
    while configs:
        prefix, config = configs.pop(0)
        if not dataclasses.is_dataclass(config):
            continue
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if f.metadata.get(marker) and value is not None and value not in f.metadata.get(PATH_KEYWORDS, ()):
                found.append((prefix + f.name, config, f.name, str(value)))
            elif dataclasses.is_dataclass(value):
                configs.append((f"{prefix}{f.name}.", value))
    return found


def run_references(plan: RunPlan) -> dict[str, str]:
    """Every run a plan builds on, by its command-line key (``trainer.init_from``, ``model.teacher``)."""
    return {key: path for key, _, _, path in _references(plan)}


def improving_direction(logged: str, registry: Optional[Registry] = None) -> Optional[str]:
    """``"max"`` or ``"min"``: which way a logged value (``val_f1``, ``loss``, a GAN's
    ``d_loss``) goes as the model improves, as its metric plugin declares it; None where
    nothing says. No TF."""
    name = logged.removeprefix("val_")
    try:
        better = (registry or get_registry()).get("metric", name).item.greater_is_better
    except ZooError:  # not a metric's name: a loss (a GAN's d_loss too) goes down
        return "min" if name == "loss" or name.endswith("_loss") else None
    return None if better is None else "max" if better else "min"


def data_paths(plan: RunPlan) -> dict[str, str]:
    """Every file or folder of data a plan reads (``zoo.data_path`` fields), by key."""
    return {key: path for key, _, _, path in _references(plan, DATA_PATH)}


def absolute_paths(plan: RunPlan) -> dict[str, str]:
    """The runs and the data a plan reads, by key, as the absolute paths the run records."""
    return {**run_references(plan), **data_paths(plan)}


def check_run_references(plan: RunPlan) -> None:
    """The runs a plan builds on (every run-reference field) exist and finished, and a
    teacher learnt the same data: one line otherwise, before any work. No TF."""
    import json

    from zoo.artifacts import not_a_run_directory, read_json, read_yaml
    from zoo.crossval import refuse_parent
    from zoo.run import finished_run_plan  # here: zoo.run imports this module

    for key, path in run_references(plan).items():
        if not Path(path).exists():
            raise ZooError(f"{key}={path} does not exist (moved or deleted?); give the run's directory where it is now")
        if not (Path(path) / "config.yaml").is_file():
            raise ZooError(f"{key}={not_a_run_directory(Path(path), settings=False)}")
        refuse_parent(Path(path), f"{key}=")
        for name in ("metrics.json", "model.keras", "spec.json"):  # written last, or in every run
            if not (Path(path) / name).exists():
                raise ZooError(f"{key}={path}: that run {artifacts.unfinished(Path(path), name)}")
            if not (Path(path) / name).is_file():
                raise ZooError(f"{key}={path}: its {name} is not a file (a folder, a pipe or a device); give a run the zoo wrote")
        finished_run_plan(Path(path))  # its plugins installed, its records whole: here, not after TensorFlow's start
    teacher = plan.trainer.distillation.teacher
    if teacher:
        recorded = read_json(Path(teacher) / "spec.json")
        if not isinstance(recorded, dict):
            raise ZooError(f"{Path(teacher) / 'spec.json'} is damaged (not the record the zoo wrote); give a run the zoo wrote")
        mine = json.loads(json.dumps(dataclasses.asdict(plan.spec)))  # tuples as JSON lists
        # What the teacher's outputs mean: the task, the input and the classes.
        differing = next((k for k in ("task", "input_shape", "num_classes", "class_names") if recorded.get(k) != mine[k]), None)
        if differing:
            raise ZooError(
                f"trainer.distillation.teacher={teacher} learnt other data ({differing}={recorded.get(differing)!r}, "
                f"this run's: {mine[differing]!r}); choose a teacher trained on this dataset"
            )
        teacher_config = read_yaml(Path(teacher) / "config.yaml")
        model = teacher_config.get("model") if isinstance(teacher_config, dict) else None
        model_name = model.get("name") if isinstance(model, dict) else None
        try:
            objective = get_registry().get("model", model_name).item.objective if isinstance(model_name, str) else None
        except ZooError:  # a model that is not installed here: its outputs cannot be read either
            objective = None
        if objective != CLASSIFICATION:  # a VAE's reconstructions are no class probabilities (it failed inside TensorFlow)
            raise ZooError(
                f"trainer.distillation.teacher={teacher} is not a classifier run (model {model_name!r}"
                f"{f' learns {objective}' if objective else ' is not installed'}); choose a classifier trained on this dataset"
            )


def metrics_for(registry: Registry, objective: str, defaults_only: bool = False) -> list[str]:
    """Names of the usable (unconflicted) metrics that score ``objective``; with
    ``defaults_only``, those ``metrics=auto`` chooses."""
    conflicted = {claims[0].name for claims in registry.conflicts() if claims[0].kind == "metric"}
    return [
        entry.name
        for entry in registry.list("metric")
        if entry.name not in conflicted
        and objective in entry.item.objectives
        and (entry.item.default or not defaults_only)
    ]


def _plugin_choice(registry: Registry, kind: str, node: Mapping[str, Any]) -> tuple[Registered, Any]:
    node = dict(node)
    name = node.pop("name", None)
    if name is None:
        raise ZooError(f"no {kind} chosen; add {kind}=<name> (see 'zoo list {kind}')")
    entry = registry.get(kind, name)
    return entry, make_config(entry, node, prefix=f"{kind}.")


# --------------------------------------------------------------------------------------
# Hydra/OmegaConf errors as one line
# --------------------------------------------------------------------------------------


def seed_value(seed: Any) -> int:
    """NumPy, scikit-learn and TensorFlow take seeds of 0 to 2**32 - 1; anything else fails
    deep inside them (scikit-learn's "The 'random_state' parameter of train_test_split...").
    Digits as text are the number they spell: an environment variable's value is text
    (``seed=${oc.env:SLURM_ARRAY_TASK_ID}``, a job array's task)."""
    if isinstance(seed, str) and seed.isascii() and seed.isdigit() and len(seed) < 20:  # longer: no seed (nor one Python reads)
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ZooError(f"seed must be a whole number from 0 to {2**32 - 1}, got {shorten(repr(seed), 40)}; e.g. seed=0")
    return seed


# OmegaConf's words for a value of the wrong type, and what they ask for in the zoo's.
WANTED_TYPES = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false", "bool": "true or false"}
A_LIST = "a list, in brackets ([a,b])"
PYTHON_TYPES = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text"}


def describe_omegaconf_error(exc: BaseException, prefix: str = "") -> str:
    """OmegaConf's multi-line messages, reduced to the problem and the key."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    # A literal `${` (see `literal`) is an escaped interpolation to OmegaConf, which says so first.
    first = re.sub(r"^While dereferencing interpolation '.*?': (?=Value )", "", first)
    key = getattr(exc, "full_key", None) or _field(text, "full_key")
    wanted = wanted_type(first)
    if wanted and key:
        return f"{prefix}{key} must be {wanted[0]}" + (f", got {wanted[1]!r}" if wanted[1] is not None else "")
    return f"{prefix}{key}: {first}" if key else first


def wanted_type(message: str) -> Optional[tuple[str, Optional[str]]]:
    """What a key takes and the value given, from OmegaConf's words for a value of another
    type ("Value 'abc' of type 'str' could not be converted to Integer", "AnyNode is not a
    ListConfig, list or tuple"), which name its classes; None for other messages."""
    value = re.fullmatch(
        r"Value '(.*)' (?:of type '\w+' could not be converted to (\w+)|is not a valid (bool) \(type \w+\))\.?", message, re.DOTALL
    )
    if value and (value.group(2) or value.group(3)) in WANTED_TYPES:
        return WANTED_TYPES[value.group(2) or value.group(3)], value.group(1)[:80]
    if re.fullmatch(r"Invalid value assigned: \w+ is not a ListConfig, list or tuple\.?|Cannot merge DictConfig with ListConfig", message):
        return A_LIST, None
    return None


# The Hydra plugins behind the launchers and sweepers that zoo's configs use, by extra.
HYDRA_PLUGIN_EXTRAS = {
    "launcher/joblib": "sweeps",
    "sweeper/optuna": "sweeps",
    "launcher/submitit_slurm": "slurm",
    "launcher/submitit_local": "slurm",
    "launcher/ray": "ray",
}


def sweep_without_multirun(key: str, value: str) -> str:
    """The line for ``key=value`` holding a comma in a single run: Hydra reads a sweep there.
    A number written with a decimal comma (0,001) or a thousands separator (1,000), as many
    locales write them, is answered with the spelling the zoo reads."""
    line = f"{key}={value}: a comma separates a sweep's values (add -m to train one run each)"
    number = re.fullmatch(r"(-?\d+),(\d+(?:[eE][-+]?\d+)?)", value)
    if number:
        whole, part = number.groups()
        grouped = len(part) == 3 and part.isdigit() and whole.lstrip("-")[:1] not in ("", "0")
        thousands = f", and no thousands separator: {key}={whole}{part}" if grouped else ""
        return f"{line}; a number takes a decimal point: {key}={whole}.{part}{thousands}"
    from zoo.arguments import hydra_quoted, shell_quoted

    return f"{line}; a list is [a,b], and text holding a comma is quoted: {shell_quoted(f'{key}={hydra_quoted(value)}')}"


def describe_composition_error(exc: BaseException, cfg_keys: Optional[list[str]] = None) -> str:
    """A Hydra composition failure as one line naming the key and the fix."""
    from zoo.registry import unknown_name_message

    text = str(exc).strip()
    cause = exc.__cause__
    twice = re.match(r"Multiple values for (\S+)\.|(\S+) appears more than once in the final defaults list", text)
    group = twice and (twice.group(1) or twice.group(2))
    if group and group.split("/")[0] in TOP_LEVEL_KEYS + ("hydra",):
        # +model=NAME, or a preset's defaults list naming a group the primary config chooses already
        return (
            f"{group} is chosen by the primary config already: choose another with {group}=NAME (no +), "
            f"and in a preset's defaults list with 'override /{group}: NAME'"
        )
    if group:  # Hydra's advice ("use 'override experiment: ...'") is for a defaults list, not a command line
        return f"{group} is chosen more than once; choose it once (presets combine as a list: +{group}=[a,b])"
    ambiguous = re.match(r"Ambiguous value for argument '([^'=]+)=(.*)'\s+1\. To use it as a list", text, re.DOTALL)
    if ambiguous:  # Hydra's three numbered options, on a value holding a comma outside brackets and quotes
        return sweep_without_multirun(*ambiguous.groups())
    nameless = re.search(r"Could not find '([^'/]+)/'", text)
    if nameless:
        options = sorted(getattr(exc, "options", None) or re.findall(r"^\t(\S+)$", text, re.MULTILINE))
        return f"{nameless.group(1)}= needs a name: {', '.join(options) or 'see zoo train --help'}"
    group = re.search(r"Could not (?:find|load) '([^']+)/([^/']+)'", text)
    if group:
        options = sorted(getattr(exc, "options", None) or re.findall(r"^\t(\S+)$", text, re.MULTILINE))
        kind = {"model": "model", "dataset": "dataset", **LIST_GROUPS}.get(group.group(1))
        if kind:
            # Hydra lists no options for a list of choices (metrics=[...]): the registry knows them.
            return unknown_name_message(kind, group.group(2), options or get_registry().names(kind))
        extra = HYDRA_PLUGIN_EXTRAS.get(f"{group.group(1).removeprefix('hydra/')}/{group.group(2)}")
        if group.group(1).startswith("hydra/") and extra:
            return f"{group.group(1)}={group.group(2)} needs its Hydra plugin, which is not installed: pip install 'keras-zoo[{extra}]'"
        if not options:  # the zoo's own group emptied (a damaged install): no plugin is missing
            return (
                f"{group.group(1)}={group.group(2)}: no {group.group(1)} config is installed where Hydra looks (keras-zoo's "
                f"conf/{group.group(1)}/, a --config-dir); reinstall keras-zoo (pip install --force-reinstall keras-zoo)"
            )
        return unknown_name_message(group.group(1), group.group(2), options, see="zoo train --help")
    override = re.search(r"Could not override '([^']+)'", text)
    chosen_group = override and override.group(1).split(".")[0]
    if override and chosen_group in LIST_GROUPS:
        name, kind = override.group(1).split(".")[1], LIST_GROUPS[chosen_group]
        return (
            f"{kind} {name!r} is not among those chosen; to set its options, list it as well: "
            f"{chosen_group}=[{name},...] {override.group(1)}=... (see 'zoo list {kind}')"
        )
    if override and set("@.") & set(override.group(1)) and (unpackaged := unpackaged_preset(override.group(1))):
        return unpackaged  # `experiment=NAME` alone is a preset chosen without its +
    if override:
        key = override.group(1)
        return f"unknown config key {key!r}{unknown_key_hint(key, cfg_keys or [])} (see 'zoo train --cfg job' for every key)"
    # A preset of the user's giving a plugin's typed field a value of another type: OmegaConf's
    # words had come through whole ("In 'experiment/x': ValidationError raised while composing ...").
    composing = re.match(r"In '([^']+)': \w+ raised while composing config:\s*(.+)", text, re.DOTALL)
    if composing:
        preset, inner = composing.groups()
        first = inner.splitlines()[0].strip()
        key, wanted = _field(inner, "full_key"), wanted_type(first)
        incompatible = re.match(r"Incompatible value '(.*)' for field of type '(\w+)'", first)  # null for a number
        if incompatible and key:
            wanted = (PYTHON_TYPES.get(incompatible.group(2), f"of type {incompatible.group(2)}"), incompatible.group(1))
        if key and wanted:
            got = "" if wanted[1] is None else ", got null" if incompatible and wanted[1] == "None" else f", got {wanted[1]!r}"
            return f"{key} (set by the config '{preset}') must be {wanted[0]}{got}"
        if not key and "Cannot merge DictConfig with ListConfig" in first:  # `metrics: [a, b]` in a preset
            return (
                f"the config '{preset}' sets a list where the zoo keeps a section: a list of "
                f"{', '.join(LIST_GROUPS)} is chosen in its defaults list ('- override /metrics: [accuracy, f1]')"
            )
    merging = re.search(r"Error merging override (\S+)", text)
    if merging and cause is not None:
        said = str(cause).strip().splitlines()[0]
        wanted = wanted_type(said)
        return f"{merging.group(1)}: {'give ' + wanted[0] if wanted else said}"
    from omegaconf.errors import OmegaConfBaseException

    if cause is not None and isinstance(cause, OmegaConfBaseException):
        return describe_omegaconf_error(cause)
    return " ".join(text.split())


def _field(text: str, name: str) -> Optional[str]:
    match = re.search(rf"^\s*{name}: (\S+)", text, re.MULTILINE)
    return match.group(1) if match else None


def literal(value: Any) -> Any:
    """A resolved config (dicts, lists, scalars) as OmegaConf must read it again: its text as
    text. A string holding ``${`` (a folder named ``a${b}``, given escaped on the command
    line; a run folder's config.yaml from elsewhere) had been resolved a second time: the
    folder failed as "Interpolation key 'b' not found", and a recorded ``${oc.env:...}`` read
    this machine's environment. OmegaConf's escape: ``\\${`` is a literal ``${``, and each
    backslash before it is doubled."""
    if isinstance(value, dict):
        return {key: literal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [literal(item) for item in value]
    if isinstance(value, str) and "${" in value:
        return re.sub(r"(\\*)\$\{", lambda match: match.group(1) * 2 + "\\${", value)
    return value


def _leaves(node: Any, prefix: str = ""):
    """(dotted key, value) of every value in nested dicts and lists."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else None
    if items is None:
        yield prefix.rstrip("."), node
        return
    for key, value in items:
        yield from _leaves(value, f"{prefix}{key}.")


def unknown_key_hint(key: str, cfg_keys: list[str]) -> str:
    """What to say after "unknown config key": a close key among its neighbours, or in the
    option of its group that has it (``device.replicas`` is device=cpu's), or the neighbours."""
    prefix, _, leaf = key.rpartition(".")
    if not prefix and group_option_keys(leaf):  # `experiment=digits_cnn`: a group no default chooses
        return f"; {leaf} is a group of presets, added with a plus: +{leaf}=NAME (zoo train --help lists them)"
    neighbours = [k.rpartition(".")[2] for k in cfg_keys if k.rpartition(".")[0] == prefix]
    close = difflib.get_close_matches(leaf, neighbours, n=1)
    if close and close[0] == leaf and prefix:  # the key is the zoo's: what else is composed replaced its section
        return f"; a config file chosen with it (an experiment's, or yours) sets {prefix} to a value, not its settings"
    if close:
        return f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?"
    options = group_option_keys(prefix)
    close = difflib.get_close_matches(leaf, sorted({k for keys in options.values() for k in keys}), n=1)
    if close:
        owners = [option for option, keys in options.items() if close[0] in keys]
        named = f"{prefix}.{close[0]}"
        guess = "" if close[0] == leaf else f"did you mean '{named}'? "
        return f"; {guess}{named} is a key of {prefix}={' or '.join(owners)}: choose that as well ({prefix}={owners[0]} {named}=...)"
    if neighbours and prefix:
        return f"; {prefix}'s keys are: {', '.join(neighbours)}"
    return ""


def unpackaged_preset(key: str) -> Optional[str]:
    """What to say when a preset's keys landed under its group's name (``experiment.trainer``,
    ``model@experiment.model``): its file lacks the ``# @package _global_`` line, the most
    common slip in writing one, or None for any other key."""
    group = key.rpartition("@")[2].split(".")[0]
    if group in TOP_LEVEL_KEYS or not (group in PRESET_GROUPS or group_option_keys(group)):
        return None
    return (
        f"the {group} preset's keys landed under '{group}': its file must start with the line '# @package _global_' "
        f"(then its keys are the run's: trainer.epochs, model, ...)"
    )


# Config groups whose options set keys across the whole config (chosen with +group=NAME).
PRESET_GROUPS = ("experiment", "hparams_search")


def group_option_keys(group: str) -> dict[str, list[str]]:
    """The keys each option of the zoo's config group ``group`` (conf/<group>/*.yaml) sets."""
    import importlib.resources

    from zoo.artifacts import load_yaml

    if not re.fullmatch(r"[a-z_]+", group):
        return {}
    found = {}
    try:
        for file in sorted(importlib.resources.files(CONFIG_MODULE).joinpath(group).iterdir(), key=lambda f: f.name):
            content = load_yaml(file.read_text(encoding="utf-8")) if file.name.endswith(".yaml") else None
            if isinstance(content, dict):
                found[file.name.removesuffix(".yaml")] = [str(k) for k in content]
    except (OSError, ValueError):
        return {}
    return found


def flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config, for did-you-mean suggestions."""
    from omegaconf import DictConfig

    keys = []
    if isinstance(cfg, (dict, DictConfig)):
        for key, value in cfg.items():
            dotted = f"{prefix}{key}"
            keys.append(dotted)
            keys.extend(flat_keys(value, dotted + "."))
    return keys
