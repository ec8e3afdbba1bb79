"""What a run optimises with: the optimizer and its learning-rate schedule, the loss with
label smoothing, class weights, and the weights a run starts from (warm start, freezing).

Everything here follows ``trainer.*`` (``zoo.config.TrainerConfig``); the training loop
(``zoo.training``) knows none of it. Accumulated gradients and the step count that
drives the schedule are optimizer variables, so checkpoints carry them and a resumed run
continues exactly.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from pathlib import Path
from typing import Any, Callable, Optional

import keras

from zoo.errors import ZooError

log = logging.getLogger(__name__)


def build_optimizer(trainer, steps_per_epoch: int):
    """The optimizer ``trainer`` describes, its learning rate a :func:`learning_rate_schedule`."""
    options: dict[str, Any] = {"learning_rate": learning_rate_schedule(trainer, steps_per_epoch)}
    if trainer.weight_decay:
        options["weight_decay"] = trainer.weight_decay
    if trainer.clipnorm:
        options["clipnorm"] = trainer.clipnorm
    if trainer.momentum:
        options["momentum"] = trainer.momentum
    if trainer.accumulate_steps > 1:
        options["gradient_accumulation_steps"] = trainer.accumulate_steps
    optimizer_class = type(keras.optimizers.get(trainer.optimizer.lower()))
    if optimizer_class is keras.optimizers.Adafactor:
        # Keras multiplies the row and column factors of a kernel's squared gradients before
        # the square root: where a row and a column both had zero gradients (inputs that are
        # always 0, as the digits' border pixels; a unit ReLU silenced), 1e-30 times 1e-30
        # is 0 in float32, and the update 0/0. The default job diverged in its first epoch,
        # as did the cat CNN and the conv autoencoder. 1e-16 squared stays a float32 number.
        options["epsilon_1"] = ADAFACTOR_EPSILON_1
    return optimizer_class(**options)


ADAFACTOR_EPSILON_1 = 1e-16  # Keras' default 1e-30 (the paper's) is added to each squared gradient


def learning_rate_schedule(trainer, steps_per_epoch: int):
    """``trainer.learning_rate`` shaped by ``trainer.lr_schedule`` and ``warmup_steps``, as
    a function of the optimizer's step count (batches trained, accumulated or not); a plain
    rate when it is constant."""
    if trainer.lr_schedule == "constant" and not trainer.warmup_steps:
        return float(trainer.learning_rate)
    return Schedule(
        kind=trainer.lr_schedule,
        learning_rate=float(trainer.learning_rate),
        warmup_steps=int(trainer.warmup_steps),
        total_steps=max(1, trainer.epochs * steps_per_epoch - int(trainer.warmup_steps)),
        decay_steps=max(1.0, trainer.decay_epochs * steps_per_epoch),
        decay_rate=float(trainer.decay_rate),
        min_learning_rate=float(trainer.min_learning_rate),
    )


def warm_up_past_the_end(trainer, steps_per_epoch: int) -> Optional[str]:
    """What a warm-up as long as the run or longer leaves of the learning rate (the run
    trains on, quietly at a fraction of its rate, as a short test of a long run's settings
    does), or None."""
    total = trainer.epochs * steps_per_epoch
    if not trainer.warmup_steps or trainer.warmup_steps < total:
        return None
    peak = trainer.learning_rate * total / trainer.warmup_steps
    after = "" if trainer.lr_schedule == "constant" else f", and its {trainer.lr_schedule} schedule never starts"
    return (
        f"trainer.warmup_steps={trainer.warmup_steps} is not shorter than the {total} steps the run trains: the learning "
        f"rate rises to {peak:.3g} at most, never to trainer.learning_rate={trainer.learning_rate:g}{after}"
    )


def settings_without_effect(trainer) -> list[str]:
    """``trainer.*`` settings given other values than their defaults where what they steer is
    off (``plateau.patience`` with a constant schedule, ``pruning.frequency`` without a
    sparsity): they had been passed over unsaid, as if the run used them."""
    import dataclasses

    from zoo.config import TrainerConfig

    default = TrainerConfig()
    steered = [  # (settings, on, what turns it on)
        (["decay_rate", "decay_epochs"], trainer.lr_schedule in ("exponential", "step"), "trainer.lr_schedule=exponential or step"),
        (["min_learning_rate"], trainer.lr_schedule == "cosine", "trainer.lr_schedule=cosine"),
        ([f"plateau.{f.name}" for f in dataclasses.fields(trainer.plateau)], trainer.lr_schedule == "plateau", "trainer.lr_schedule=plateau"),
        ([f"early_stopping.{f.name}" for f in dataclasses.fields(trainer.early_stopping) if f.name != "patience"],
         trainer.early_stopping.patience > 0, "trainer.early_stopping.patience above 0"),
        ([f"pruning.{f.name}" for f in dataclasses.fields(trainer.pruning) if f.name != "sparsity"],
         trainer.pruning.sparsity > 0, "trainer.pruning.sparsity above 0"),
        ([f"distillation.{f.name}" for f in dataclasses.fields(trainer.distillation) if f.name != "teacher"],
         bool(trainer.distillation.teacher), "a trainer.distillation.teacher"),
    ]  # fmt: skip

    def value(config, key: str):
        for part in key.split("."):
            config = getattr(config, part)
        return config

    unused = []
    for keys, on, switch in steered:
        changed = [f"trainer.{key}={value(trainer, key)}" for key in keys if not on and value(trainer, key) != value(default, key)]
        if changed:
            unused.append(f"{', '.join(changed)} {'have' if len(changed) > 1 else 'has'} no effect without {switch}")
    return unused


@keras.saving.register_keras_serializable(package="zoo")
class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over ``warmup_steps``, then ``kind``: ``cosine`` down to
    ``min_learning_rate`` over ``total_steps``, ``exponential`` or ``step`` (times
    ``decay_rate`` every ``decay_steps``, smoothly or at once), ``constant`` or ``plateau``
    (flat); all times ``scale``, a variable the plateau callback lowers (and keeps in its
    checkpointed state)."""

    def __init__(self, kind, learning_rate, warmup_steps, total_steps, decay_steps, decay_rate, min_learning_rate):
        self.kind, self.learning_rate, self.warmup_steps = kind, learning_rate, warmup_steps
        self.total_steps, self.decay_steps, self.decay_rate = total_steps, decay_steps, decay_rate
        self.min_learning_rate = min_learning_rate
        self.scale = keras.Variable(1.0, dtype="float32", trainable=False, name="lr_scale")

    def __call__(self, step):
        from keras import ops

        step = ops.cast(step, "float32")
        after = ops.maximum(step - self.warmup_steps, 0.0)
        base = self.learning_rate
        if self.kind == "cosine":
            progress = ops.minimum(after / self.total_steps, 1.0)
            floor = self.min_learning_rate
            rate = floor + (base - floor) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.kind == "exponential":
            rate = base * ops.power(self.decay_rate, after / self.decay_steps)
        elif self.kind == "step":
            rate = base * ops.power(self.decay_rate, ops.floor(after / self.decay_steps))
        else:  # constant, plateau
            rate = ops.convert_to_tensor(base, "float32")
        if self.warmup_steps:  # the first step takes 1/warmup_steps of the rate
            rate = rate * ops.minimum((step + 1.0) / self.warmup_steps, 1.0)
        return rate * self.scale

    def get_config(self):
        return {
            "kind": self.kind, "learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps, "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
            "min_learning_rate": self.min_learning_rate,
        }  # fmt: skip


def loss_function(loss: Any, spec, label_smoothing: float):
    """``loss`` (a Keras name, object, or ``None`` for a model's own), with the targets
    smoothed by ``label_smoothing`` for the zoo's standard classification losses."""
    if not label_smoothing or loss not in ("binary_crossentropy", "sparse_categorical_crossentropy"):
        return loss
    if loss == "binary_crossentropy":
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    from keras import ops

    classes = spec.num_classes

    def smoothed_sparse_categorical_crossentropy(y_true, y_pred):
        # Keras' sparse loss has no smoothing: one-hot the labels for the categorical one.
        labels = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), classes)
        return keras.losses.categorical_crossentropy(labels, y_pred, label_smoothing=label_smoothing)

    return smoothed_sparse_categorical_crossentropy


def class_weights(trainer, spec, labels: Callable[[], Any]) -> Optional[list[float]]:
    """One weight per class, or ``None``: ``balanced`` weighs each class by
    ``n / (classes * count)`` (scikit-learn's rule) over the training ``labels()``."""
    import numpy as np

    setting = trainer.class_weight
    if setting == "none":
        return None
    classes = spec.num_classes
    if setting == "balanced":
        counts = np.bincount(np.asarray(labels()).reshape(-1).astype(int), minlength=classes)[:classes]
        if (counts == 0).any():
            raise ZooError(
                f"trainer.class_weight=balanced: class {spec.class_names[int(np.argmin(counts))] if spec.class_names else int(np.argmin(counts))} "
                "has no training example; give the weights as a list instead"
            )
        weights = counts.sum() / (classes * counts)
    else:
        weights = np.asarray(setting, dtype=float)
        if len(weights) != classes:
            raise ZooError(f"trainer.class_weight has {len(weights)} weights; the dataset has {classes} classes")
    log.info("class weights %s", ", ".join(f"{w:.4g}" for w in weights))
    return [float(w) for w in weights]


def training_labels(tf, split) -> Any:
    """The labels of a training split (arrays, or an unbatched ``tf.data.Dataset``)."""
    import numpy as np

    if isinstance(split, tf.data.Dataset):
        return np.concatenate([np.reshape(y, (-1,)) for y in split.map(lambda x, y: y).batch(4096).as_numpy_iterator()])
    return np.asarray(split[1])


# --------------------------------------------------------------------------------------
# Warm start and freezing
# --------------------------------------------------------------------------------------


def leaf_layers(model) -> list:
    """Every layer that holds weights, nested models looked into."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(leaf_layers(layer))
        elif layer.weights:
            found.append(layer)
    return found


def start_from(model, trainer, parent_weights: Optional[dict[str, list]]) -> dict[str, Any]:
    """Give ``model`` the weights of ``trainer.init_from`` (``parent_weights``, by layer
    name) and freeze ``trainer.freeze``; returns what ``training.json`` records of it."""
    from zoo.artifacts import MODEL, file_digest

    record: dict[str, Any] = {}
    if parent_weights is not None:
        parent = Path(trainer.init_from)
        record["init_from"] = {
            "run": trainer.init_from,
            "weights_sha256": file_digest(parent / MODEL),
            **warm_start(model, parent_weights, parent),
        }
    if trainer.freeze:
        record["frozen"] = freeze(model, list(trainer.freeze))
    return record


def layer_weights(model) -> dict[str, list]:
    """Each weight-holding layer's weights (NumPy arrays), by layer name."""
    return {layer.name: layer.get_weights() for layer in leaf_layers(model)}


def warm_start(model, saved: dict[str, list], parent: Path) -> dict[str, Any]:
    """Copy the ``saved`` weights of the finished run ``parent`` into ``model`` where layer
    name and every weight's shape match; returns what was copied and what was not."""
    copied, unmatched = [], []
    for layer in leaf_layers(model):
        weights = saved.get(layer.name)
        if weights is not None and [tuple(w.shape) for w in weights] == [tuple(v.shape) for v in layer.weights]:
            layer.set_weights(weights)
            copied.append(layer.name)
        else:
            unmatched.append(layer.name)
    if not copied:
        raise ZooError(
            f"trainer.init_from={parent}: no layer of this model matches one of that run's by name and shape "
            f"(this model's: {', '.join(layer.name for layer in leaf_layers(model))}; that run's: {', '.join(saved)})"
        )
    if unmatched:
        log.warning("init_from: these layers start untrained (no match by name and shape): %s", ", ".join(unmatched))
    return {"copied": copied, "unmatched": unmatched}


def freeze(model, patterns: list[str]) -> list[str]:
    """Keep the layers whose names match any of ``patterns`` fixed; returns their names."""
    frozen = []
    for pattern in patterns:
        matched = [layer for layer in leaf_layers(model) if fnmatch.fnmatchcase(layer.name, pattern)]
        if not matched:
            names = ", ".join(layer.name for layer in leaf_layers(model))
            raise ZooError(f"trainer.freeze: {pattern!r} matches no layer with weights; the model's are: {names}")
        for layer in matched:
            layer.trainable = False
            frozen.append(layer.name)
    if not model.trainable_weights:  # Keras would only warn, and the run train nothing at all
        raise ZooError(f"trainer.freeze={patterns} freezes every layer with weights; nothing would train: leave some out")
    return sorted(set(frozen))
