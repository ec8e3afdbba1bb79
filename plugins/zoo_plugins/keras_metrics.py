"""Keras implementations of the classification metrics (imports Keras: load lazily).

Predictions follow :class:`zoo.DataSpec`: for two classes, ``y_pred`` is the probability
of class 1 (shape ``(n,)`` or ``(n, 1)``); for more, one probability column per class.
Labels are integer class indices (one-hot labels are accepted too).

Both metrics keep exact sufficient statistics instead of Keras' fixed-threshold
approximations, so their results agree with scikit-learn on the same predictions:
a confusion matrix for accuracy/precision/recall/F1, and fine score histograms for the
ROC AUC and the average precision.
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


@keras.saving.register_keras_serializable(package="zoo")
class ConfusionMatrixMetric(keras.metrics.Metric):
    """Accuracy, precision, recall or F1 from a streaming confusion matrix.

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
        # float64: counts stay exact far beyond float32's 2**24.
        self.matrix = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros", dtype="float64", name="matrix"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, scores = _labels_and_scores(y_true, y_pred, self.num_classes)
        if self.num_classes == 2:
            predicted = ops.cast(scores >= self.threshold, "int32")
        else:
            predicted = ops.cast(ops.argmax(scores, axis=-1), "int32")
        weights = _weights(sample_weight, ops.shape(labels)[0])
        true_onehot = ops.one_hot(labels, self.num_classes, dtype="float64") * weights[:, None]
        pred_onehot = ops.one_hot(predicted, self.num_classes, dtype="float64")
        self.matrix.assign_add(ops.matmul(ops.transpose(true_onehot), pred_onehot))

    def result(self):
        m = self.matrix
        total = ops.sum(m)
        true_positive = ops.diagonal(m)
        actual = ops.sum(m, axis=1)  # per true class
        predicted = ops.sum(m, axis=0)  # per predicted class
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
        self.matrix.assign(ops.zeros_like(self.matrix))

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
    weighs a lot).

    Args:
        num_classes: 2 for binary scores, more for one column per class.
        curve: ``roc`` for the ROC AUC (scikit-learn's ``roc_auc_score``), ``pr`` for the
            average precision, the area under the precision-recall curve as a step
            function (``average_precision_score``).
        num_bins: histogram bins per class.

    For more than two classes the result is the one-vs-rest value averaged over the
    classes where it is defined (ROC: with positives and negatives; PR: with positives),
    as scikit-learn's ``average="macro"``.
    """

    LOGIT_RANGE = 16.5  # float32 probabilities saturate just above |logit| = 16

    def __init__(self, num_classes, curve="roc", num_bins=16384, name=None, dtype=None):
        super().__init__(name=name or {"roc": "auc", "pr": "pr_auc"}.get(curve, curve), dtype=dtype)
        if curve not in CURVES:
            raise ValueError(f"curve must be one of {CURVES}, got {curve!r}")
        self.curve = curve
        self.num_classes = int(num_classes)
        self.num_bins = int(num_bins)
        self.curves = 1 if self.num_classes == 2 else self.num_classes
        shape = (2, self.curves * self.num_bins)  # [negatives, positives] per class and bin
        self.histograms = self.add_variable(shape=shape, initializer="zeros", dtype="float64", name="histograms")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, scores = _labels_and_scores(y_true, y_pred, self.num_classes)
        n = ops.shape(labels)[0]
        if self.num_classes == 2:
            positive = ops.cast(ops.reshape(labels, (-1, 1)) == 1, "float64")
            scores = ops.reshape(scores, (-1, 1))
        else:
            positive = ops.one_hot(labels, self.num_classes, dtype="float64")
        p = ops.clip(scores, 1e-7, 1.0 - 1e-7)
        logit = ops.clip(ops.log(p) - ops.log1p(-p), -self.LOGIT_RANGE, self.LOGIT_RANGE)
        bins = ops.cast((logit + self.LOGIT_RANGE) * ((self.num_bins - 1) / (2 * self.LOGIT_RANGE)), "int32")
        index = ops.reshape(bins + ops.arange(self.curves, dtype="int32")[None, :] * self.num_bins, (-1,))
        weights = ops.reshape(positive * _weights(sample_weight, n)[:, None], (-1,))
        all_weights = ops.reshape(ops.ones_like(positive) * _weights(sample_weight, n)[:, None], (-1,))
        length = self.curves * self.num_bins
        # segment_sum with a fixed number of segments, not bincount: XLA can compile it.
        positives = ops.segment_sum(weights, index, num_segments=length)
        totals = ops.segment_sum(all_weights, index, num_segments=length)
        self.histograms.assign_add(ops.stack([totals - positives, ops.cast(positives, "float64")]))

    def result(self):
        hist = ops.reshape(self.histograms, (2, self.curves, self.num_bins))
        negatives, positives = hist[0], hist[1]
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
