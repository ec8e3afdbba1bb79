"""Keras implementations of the classification metrics (imports Keras: load lazily).

Predictions follow :class:`zoo.DataSpec`: for two classes, ``y_pred`` is the probability
of class 1 (shape ``(n,)`` or ``(n, 1)``); for more, one probability column per class.
Labels are integer class indices (one-hot labels are accepted too).

Both metrics keep exact sufficient statistics instead of Keras' fixed-threshold
approximations, so their results agree with scikit-learn on the same predictions:
per-class counts for accuracy/precision/recall/F1, and fine score histograms for the
ROC AUC and the average precision. A step's cost grows with its batch, not with the
statistics kept (a histogram of millions of bins for thousands of classes).
"""

from __future__ import annotations

import keras
from keras import ops

STATISTICS = ("accuracy", "precision", "recall", "f1")
AVERAGES = ("macro", "weighted", "micro")


def _labels_and_scores(y_true, y_pred, num_classes: int):
    """Integer labels ``(n,)`` and scores: ``(n,)`` for binary, ``(n, classes)`` otherwise."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    if num_classes == 2:
        scores = ops.reshape(y_pred, (-1,))
        labels = ops.reshape(y_true, (-1,))
    else:
        scores = ops.reshape(y_pred, (-1, num_classes))
        if len(y_true.shape) >= 2 and y_true.shape[-1] == num_classes:
            labels = ops.argmax(y_true, axis=-1)
        else:
            labels = ops.reshape(y_true, (-1,))
    return ops.cast(labels, "int32"), ops.cast(scores, "float32")


def _weights(sample_weight, n):
    if sample_weight is None:
        return ops.ones((n,), dtype="float64")
    return ops.cast(ops.reshape(sample_weight, (-1,)), "float64")


def _add_at(variable, index, values) -> None:
    """``variable[index[i]] += values[i]`` for a 1-D variable, repeated places summed.

    In place on one device: the work is the batch's (1-D: a scatter of n-dimensional indices
    took four times as long). TensorFlow then copies the variable on every read (Keras'
    training step reads each metric's result, even where nobody uses it), which is why
    histograms are bounded (HistogramCurveArea.MAX_BINS). A metric variable replicated over
    devices (a mirrored strategy keeps one per replica, summed when read) has no scatter:
    there the values are summed into a dense update (segment_sum with a fixed count, which
    XLA compiles, not bincount)."""
    import tensorflow as tf

    target = variable.value
    values = ops.cast(values, variable.dtype)
    if isinstance(target, tf.Variable) and not isinstance(target, tf.distribute.DistributedValues):
        target.scatter_add(tf.IndexedSlices(values, index))
    else:
        variable.assign_add(ops.segment_sum(values, index, num_segments=variable.shape[0]))


@keras.saving.register_keras_serializable(package="zoo")
class ConfusionMatrixMetric(keras.metrics.Metric):
    """Accuracy, precision, recall or F1 from what a streaming confusion matrix gives them:
    per class, the true positives, the examples of it and the examples predicted as it
    (the matrix's diagonal and its sums; the n x n matrix itself, 200 MB for 5,000 classes,
    is never needed).

    Args:
        num_classes: number of classes (2 means binary, scored on the positive class 1).
        statistic: one of ``accuracy``, ``precision``, ``recall``, ``f1``.
        average: for more than two classes, ``macro`` (unweighted mean over the classes
            present in the labels or predictions), ``weighted`` (by class support) or
            ``micro``; scikit-learn's definitions, with 0 where a ratio is undefined.
        threshold: for two classes, the probability from which class 1 is predicted.
    """

    def __init__(self, num_classes, statistic, average="macro", threshold=0.5, name=None, dtype=None):
        super().__init__(name=name or statistic, dtype=dtype)
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
        self.num_classes = int(num_classes)
        self.statistic = statistic
        self.average = average
        self.threshold = float(threshold)
        # Per class, the true positives, then per class the examples of it, then per class the
        # examples predicted as it. float64: counts stay exact far beyond float32's 2**24.
        self.counts = self.add_variable(shape=(3 * self.num_classes,), initializer="zeros", dtype="float64", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, scores = _labels_and_scores(y_true, y_pred, self.num_classes)
        if self.num_classes == 2:
            predicted = ops.cast(scores >= self.threshold, "int32")
        else:
            predicted = ops.cast(ops.argmax(scores, axis=-1), "int32")
        weights = _weights(sample_weight, ops.shape(labels)[0])
        right = weights * ops.cast(labels == predicted, "float64")
        index = ops.concatenate([labels, labels + self.num_classes, predicted + 2 * self.num_classes])
        _add_at(self.counts, index, ops.concatenate([right, weights, weights]))

    def result(self):
        true_positive, actual, predicted = ops.split(self.counts, 3)
        total = ops.sum(actual)
        if self.statistic == "accuracy":
            return ops.cast(ops.divide_no_nan(ops.sum(true_positive), total), self.dtype)
        if self.statistic == "precision":
            per_class = ops.divide_no_nan(true_positive, predicted)
        elif self.statistic == "recall":
            per_class = ops.divide_no_nan(true_positive, actual)
        else:
            per_class = ops.divide_no_nan(2.0 * true_positive, actual + predicted)
        if self.num_classes == 2:
            value = per_class[1]
        elif self.average == "micro":
            # Every example is one true and one predicted label: all three equal accuracy.
            value = ops.divide_no_nan(ops.sum(true_positive), total)
        elif self.average == "weighted":
            value = ops.divide_no_nan(ops.sum(per_class * actual), ops.sum(actual))
        else:
            present = ops.cast((actual + predicted) > 0, "float64")
            value = ops.divide_no_nan(ops.sum(per_class * present), ops.sum(present))
        return ops.cast(value, self.dtype)

    def reset_state(self):
        self.counts.assign(ops.zeros_like(self.counts))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "statistic": self.statistic,
            "average": self.average,
            "threshold": self.threshold,
        }


CURVES = ("roc", "pr")


@keras.saving.register_keras_serializable(package="zoo")
class HistogramCurveArea(keras.metrics.Metric):
    """Area under the ROC curve, or average precision, from fine histograms of the scores.

    Scores are binned on the logit scale, where a sigmoid or softmax spends its
    resolution, so a confident model's scores near 0 and 1 stay apart. Examples in the
    same bin count as tied scores, the only difference from the exact computation: with
    the default 16,384 bins the ROC AUC agrees with scikit-learn to about 1e-4, the average
    precision to about 1e-3 (a tie near the top of the ranking moves a precision step that
    weighs a lot). Beyond 64 classes each gets fewer bins, ``MAX_BINS`` in all (16 MB of
    counts), so that a step's cost stays small: 1,048 bins each for 1,000 classes (ROC AUC
    within 1e-5 of scikit-learn's on random predictions), 209 for 5,000 (5e-4; the average
    precision 2e-3).

    Args:
        num_classes: 2 for binary scores, more for one column per class.
        curve: ``roc`` for the ROC AUC (scikit-learn's ``roc_auc_score``), ``pr`` for the
            average precision, the area under the precision-recall curve as a step
            function (``average_precision_score``).
        num_bins: histogram bins per class (at most ``MAX_BINS // num_classes``).

    For more than two classes the result is the one-vs-rest value averaged over the
    classes where it is defined (ROC: with positives and negatives; PR: with positives),
    as scikit-learn's ``average="macro"``.
    """

    LOGIT_RANGE = 16.5  # float32 probabilities saturate just above |logit| = 16
    MAX_BINS = 2**20

    def __init__(self, num_classes, curve="roc", num_bins=16384, name=None, dtype=None):
        super().__init__(name=name or {"roc": "auc", "pr": "pr_auc"}.get(curve, curve), dtype=dtype)
        if curve not in CURVES:
            raise ValueError(f"curve must be one of {CURVES}, got {curve!r}")
        self.curve = curve
        self.num_classes = int(num_classes)
        self.curves = 1 if self.num_classes == 2 else self.num_classes
        self.num_bins = max(2, min(int(num_bins), self.MAX_BINS // self.curves))
        # Examples per class and bin, then positives: an example adds to the first in every
        # class's histogram, to the second only in its own class's.
        shape = (2 * self.curves * self.num_bins,)
        self.histograms = self.add_variable(shape=shape, initializer="zeros", dtype="float64", name="histograms")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, scores = _labels_and_scores(y_true, y_pred, self.num_classes)
        n = ops.shape(labels)[0]
        scores = ops.reshape(scores, (n, self.curves))
        p = ops.clip(scores, 1e-7, 1.0 - 1e-7)
        logit = ops.clip(ops.log(p) - ops.log1p(-p), -self.LOGIT_RANGE, self.LOGIT_RANGE)
        # A diverged model's NaN scores still fall in a bin: as an integer, NaN had indexed
        # outside the histograms, failing the step in TensorFlow's words before the run could
        # stop on its NaN loss and say so.
        logit = ops.where(ops.isnan(logit), ops.zeros_like(logit), logit)
        bins = ops.cast((logit + self.LOGIT_RANGE) * ((self.num_bins - 1) / (2 * self.LOGIT_RANGE)), "int32")
        index = bins + ops.arange(self.curves, dtype="int32")[None, :] * self.num_bins  # (n, curves)
        weights = _weights(sample_weight, n)
        if self.num_classes == 2:  # one histogram: the positives are the examples of class 1
            positive_index, positive_weights = index[:, 0], weights * ops.cast(labels == 1, "float64")
        else:  # an example is a positive of its own class's histogram only
            positive_index, positive_weights = ops.take_along_axis(index, labels[:, None], axis=1)[:, 0], weights
        every = ops.reshape(ops.broadcast_to(weights[:, None], (n, self.curves)), (-1,))
        _add_at(
            self.histograms,
            ops.concatenate([ops.reshape(index, (-1,)), positive_index + self.curves * self.num_bins]),
            ops.concatenate([every, positive_weights]),
        )

    def result(self):
        hist = ops.reshape(self.histograms, (2, self.curves, self.num_bins))
        positives = hist[1]
        negatives = hist[0] - positives
        if self.curve == "roc":
            # Mann-Whitney: positive-negative pairs ranked right, ties counting half.
            negatives_below = ops.cumsum(negatives, axis=1) - negatives
            pairs_won = ops.sum(positives * (negatives_below + 0.5 * negatives), axis=1)
            total_pairs = ops.sum(positives, axis=1) * ops.sum(negatives, axis=1)
            per_curve = ops.divide_no_nan(pairs_won, total_pairs)
            defined = ops.cast(total_pairs > 0, "float64")
        else:
            # Each bin is a threshold (predict positive at or above it); the precision there
            # is weighted by the recall it adds, i.e. by the positives in the bin.
            def at_or_above(counts):
                return ops.flip(ops.cumsum(ops.flip(counts, axis=1), axis=1), axis=1)

            true_pos, false_pos = at_or_above(positives), at_or_above(negatives)
            precision = ops.divide_no_nan(true_pos, true_pos + false_pos)
            total_positives = ops.sum(positives, axis=1)
            per_curve = ops.divide_no_nan(ops.sum(positives * precision, axis=1), total_positives)
            defined = ops.cast(total_positives > 0, "float64")
        # No curve defined (the labels hold one class only): undefined, as scikit-learn refuses it, not 0
        area = ops.where(ops.sum(defined) > 0, ops.divide_no_nan(ops.sum(per_curve * defined), ops.sum(defined)), float("nan"))
        return ops.cast(area, self.dtype)

    def reset_state(self):
        self.histograms.assign(ops.zeros_like(self.histograms))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "curve": self.curve, "num_bins": self.num_bins}


@keras.saving.register_keras_serializable(package="zoo")
class ReconstructionError(keras.metrics.Mean):
    """Squared error per example, summed over its values (pixels), averaged over examples.

    Unlike ``mse`` (the mean over every value), it does not shrink as inputs grow: it is
    the reconstruction term of a VAE's loss under a Gaussian decoder, up to constants.
    """

    def __init__(self, name="reconstruction_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
        per_example = ops.sum(ops.reshape(ops.square(y_true - y_pred), (ops.shape(y_true)[0], -1)), axis=1)
        return super().update_state(per_example, sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="zoo")
class Perplexity(keras.metrics.Metric):
    """``exp`` of the mean cross-entropy per token, from predicted next-token probabilities.

    ``y_true``: integer token ids ``(batch, steps)``; ``y_pred``: probabilities
    ``(batch, steps, vocabulary)``. Totals are kept (not a mean of batch perplexities),
    so streaming in batches gives the exact corpus perplexity.
    """

    def __init__(self, name="perplexity", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float64", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float64", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
        labels = ops.cast(ops.reshape(ops.convert_to_tensor(y_true), (-1,)), "int32")
        probs = ops.reshape(y_pred, (-1, ops.shape(y_pred)[-1]))
        picked = ops.take_along_axis(probs, ops.expand_dims(labels, 1), axis=1)[:, 0]
        nll = -ops.log(ops.maximum(picked, 1e-12))
        self.total.assign_add(ops.cast(ops.sum(nll), "float64"))
        self.count.assign_add(ops.cast(ops.shape(labels)[0], "float64"))

    def result(self):
        return ops.cast(ops.exp(ops.divide_no_nan(self.total, self.count)), self.dtype)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)
