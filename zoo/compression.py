"""Cheaper models from training: magnitude pruning, and knowledge distillation from a
finished run's model.

Pruning (``trainer.pruning.*``) zeroes the smallest kernel weights on a polynomial
schedule, as TensorFlow Model Optimization does (Zhu and Gupta 2017), written on Keras 3
itself because that library does not support it (tensorflow/model-optimization#1119).
Each pruned kernel gets a mask that a variable constraint applies after every optimizer
update, so masked weights stay zero between the mask's updates; the masks are the
callback's checkpointed state, so a resumed run continues exactly.

Distillation (``trainer.distillation.*``) trains a classifier on
``alpha * task loss + (1 - alpha) * T^2 * KL(teacher_T || student_T)`` (Hinton et al.
2015), the teacher a finished run's model that takes no part in the student's saved
model: the student's ``model.keras`` is the student alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import keras

from zoo.errors import ZooError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------


def prunable_kernels(model) -> list:
    """The trainable kernels of the model's layers (dense, convolution, recurrent), nested
    models looked into; biases, normalisation and embeddings are left whole."""
    from zoo.optimization import leaf_layers

    return [v for layer in leaf_layers(model) for v in layer.trainable_weights if v.path.endswith("kernel")]


def polynomial_sparsity(target: float, step: int, begin: int, end: int) -> float:
    """The sparsity due at ``step``: none before ``begin``, then rising as
    ``target * (1 - (1 - progress)^3)``, fast at first, to ``target`` at ``end``."""
    if step < begin:
        return 0.0
    progress = min(1.0, (step - begin) / max(1, end - begin))
    return target * (1.0 - (1.0 - progress) ** 3)


def magnitude_masks(kernels: list, sparsity: float, scope: str) -> list:
    """Masks (0/1 arrays shaped as ``kernels``) zeroing exactly ``round(sparsity * n)`` of
    the smallest-magnitude weights: per kernel (``layer``) or over all of them (``global``).
    Ties go to the earlier weight, so weights already zero stay pruned."""
    import numpy as np

    def lowest(values, count: int):
        mask = np.ones(values.size, dtype=bool)
        mask[np.argsort(values, kind="stable")[:count]] = False
        return mask

    magnitudes = [np.abs(k).ravel() for k in kernels]
    if scope == "global":
        flat = np.concatenate(magnitudes)
        kept = lowest(flat, round(sparsity * flat.size))
        pieces = np.split(kept, np.cumsum([m.size for m in magnitudes])[:-1])
    else:
        pieces = [lowest(m, round(sparsity * m.size)) for m in magnitudes]
    return [piece.reshape(k.shape) for piece, k in zip(pieces, kernels)]


class KeepMasked:
    """A variable constraint: the kernel times its mask, after each optimizer update."""

    def __init__(self, mask):
        self.mask = mask

    def __call__(self, kernel):
        return kernel * keras.ops.cast(self.mask, kernel.dtype)


class Pruning(keras.callbacks.Callback):
    """``trainer.pruning``: every ``frequency`` steps from ``begin_step``, the masks are set
    to the schedule's sparsity by weight magnitude; at ``end_step`` (and at the end of
    training, whatever stopped it) to the target itself."""

    record_key = "pruning"  # its outcome() goes to training.json under this key

    def __init__(self, config, steps_per_epoch: int, epochs: int):
        super().__init__()
        self.config, self.steps_per_epoch = config, steps_per_epoch
        self.end = config.end_step or epochs * steps_per_epoch
        self.next_update: Optional[int] = config.begin_step
        self.sparsity = 0.0
        self.epoch = 0
        self.kernels: list = []
        self.masks: list = []

    def on_train_begin(self, logs=None):
        if self.kernels:
            return
        self.kernels = prunable_kernels(self.model)
        if not self.kernels:
            raise ZooError(f"trainer.pruning: model {self.model.name!r} has no trainable kernel weights to prune")
        with self.model.distribute_strategy.scope():  # mirrored like the kernels they mask
            self.masks = [
                keras.Variable(keras.ops.ones(k.shape, "bool"), trainable=False, name=f"{k.path.replace('/', '_')}_mask")
                for k in self.kernels
            ]
        for kernel, mask in zip(self.kernels, self.masks):
            kernel.constraint = KeepMasked(mask)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.epoch * self.steps_per_epoch + batch + 1
        if self.next_update is None or step < self.next_update:
            return
        self.prune(polynomial_sparsity(self.config.sparsity, step, self.config.begin_step, self.end))
        if step >= self.end:
            self.next_update = None
        else:  # the next multiple of frequency after begin_step, and end_step itself
            due = step - (step - self.config.begin_step) % self.config.frequency + self.config.frequency
            self.next_update = min(due, self.end)

    def on_train_end(self, logs=None):
        if self.next_update is not None:
            log.warning(
                "pruning: training ended before trainer.pruning.end_step=%d; pruned to %.0f%% at the end, with no "
                "steps left to recover", self.end, 100 * self.config.sparsity,
            )  # fmt: skip
        # Also after early stopping restored an earlier epoch's (less sparse) weights.
        self.prune(self.config.sparsity)
        self.next_update = None

    def prune(self, sparsity: float) -> None:
        import numpy as np

        weights = [keras.ops.convert_to_numpy(k.value) for k in self.kernels]
        for kernel, mask, kept, w in zip(self.kernels, self.masks, magnitude_masks(weights, sparsity, self.config.scope), weights):
            mask.assign(kept)
            kernel.assign(np.where(kept, w, 0).astype(w.dtype))
        self.sparsity = sparsity
        log.debug("pruning: %.4f of the kernel weights are zero", sparsity)

    def outcome(self) -> dict[str, Any]:
        """The share of zero weights per kernel and in all: ``training.json``'s record."""
        import numpy as np

        weights = {k.path: keras.ops.convert_to_numpy(k.value) for k in self.kernels}
        zeros = sum(int((w == 0).sum()) for w in weights.values())
        return {
            "sparsity": self.config.sparsity,
            "scope": self.config.scope,
            "begin_step": self.config.begin_step,
            "end_step": self.end,
            "zero_kernel_weights": zeros / sum(w.size for w in weights.values()),
            "kernels": {path: float(np.mean(w == 0)) for path, w in weights.items()},
        }

    def get_state(self) -> dict:
        masks = [keras.ops.convert_to_numpy(m.value) for m in self.masks]
        return {"next_update": self.next_update, "sparsity": self.sparsity, "masks": masks}

    def set_state(self, state: dict) -> None:
        self.next_update, self.sparsity = state["next_update"], state["sparsity"]
        for mask, saved in zip(self.masks, state.get("masks", [])):
            mask.assign(saved)


# --------------------------------------------------------------------------------------
# Distillation
# --------------------------------------------------------------------------------------


def soft_log_probabilities(probabilities, temperature: float):
    """Log-probabilities softened by ``temperature``, from a classifier's output
    probabilities (softmax, or one sigmoid unit read as two classes): ``log p`` is the
    logits up to a constant, which the softmax ignores."""
    from keras import ops

    p = ops.cast(probabilities, "float32")
    if p.shape[-1] == 1:
        p = ops.concatenate([1.0 - p, p], axis=-1)
    logits = ops.log(ops.clip(p, 1e-7, 1.0))
    return ops.log_softmax(logits / temperature, axis=-1)


def distillation_loss(teacher_probabilities, student_probabilities, temperature: float):
    """``T^2 * KL(teacher_T || student_T)``, averaged over the batch (the T^2 keeps the
    soft targets' gradients on the scale of the hard ones')."""
    from keras import ops

    teacher = soft_log_probabilities(teacher_probabilities, temperature)
    student = soft_log_probabilities(student_probabilities, temperature)
    divergence = ops.sum(ops.exp(teacher) * (teacher - student), axis=-1)
    return temperature**2 * ops.mean(divergence)


def distill(student, teacher, alpha: float, temperature: float) -> None:
    """Make the compiled ``student`` train on ``alpha`` of its own loss and ``1 - alpha`` of
    the distillation loss against ``teacher``'s outputs for the same inputs. Evaluation
    (``training=False``) keeps the task loss alone, comparable with any other run's."""
    from keras import ops

    if type(student).train_step is not keras.Model.train_step:
        raise ZooError(
            f"trainer.distillation: model {student.name!r} trains with a train_step of its own, which does not call "
            "compute_loss; distillation needs Keras' standard step"
        )
    task_loss = student.compute_loss  # the compiled loss, regularisation included

    def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = task_loss(x, y, y_pred, sample_weight, training=training)
        if not training:
            return loss
        soft_targets = ops.stop_gradient(teacher(x, training=False))
        return alpha * loss + (1.0 - alpha) * distillation_loss(soft_targets, y_pred, temperature)

    # An instance attribute, not a subclass: the saved model stays the plugin's own model.
    student.compute_loss = compute_loss


def teacher_record(distillation) -> dict[str, Any]:
    """What ``training.json`` records of ``trainer.distillation``: the teacher and its weights' digest."""
    from zoo.artifacts import MODEL, file_digest

    return {
        "teacher": distillation.teacher, "weights_sha256": file_digest(Path(distillation.teacher) / MODEL),
        "alpha": distillation.alpha, "temperature": distillation.temperature,
    }  # fmt: skip

