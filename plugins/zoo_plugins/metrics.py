"""Metrics, each with a reference computation (scikit-learn or NumPy) the tests hold it to.

Classification metrics:

Binary tasks (two classes) score the positive class, label 1, with the prediction
``probability >= threshold``. Multi-class tasks predict the arg-max class; precision,
recall and F1 are averaged as ``average`` says (``macro`` by default: the unweighted mean
over the classes present in the labels or the predictions, as scikit-learn does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import zoo


def check_threshold(threshold: float) -> None:
    # A probability: beyond [0, 1] every example is predicted one class, unsaid (threshold=-1 scored 0.37).
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a probability, from 0 to 1; got {threshold}")


@dataclass
class AccuracyConfig:
    threshold: float = field(default=0.5, metadata={"help": "Binary tasks: probability from which class 1 is predicted."})

    def __post_init__(self) -> None:
        check_threshold(self.threshold)


@dataclass
class AveragedConfig:
    average: str = field(
        default="macro",
        metadata={"help": "Multi-class averaging: macro, weighted or micro (binary tasks score class 1)."},
    )
    threshold: float = field(default=0.5, metadata={"help": "Binary tasks: probability from which class 1 is predicted."})

    def __post_init__(self) -> None:
        if self.average not in ("macro", "weighted", "micro"):
            raise ValueError(f"average={self.average!r} is not supported; choose macro, weighted or micro")
        check_threshold(self.threshold)


@dataclass
class AUCConfig:
    num_bins: int = field(
        default=16384, metadata={"help": "Score histogram bins per class (logit scale; 2^20 at most in all); more is closer to exact."}
    )

    def __post_init__(self) -> None:
        if self.num_bins < 2:
            raise ValueError(f"num_bins must be at least 2, got {self.num_bins}")


def predicted_labels(y_prob, spec: zoo.DataSpec, threshold: float = 0.5):
    import numpy as np

    y_prob = np.asarray(y_prob)
    if spec.binary:
        return (y_prob.reshape(-1) >= threshold).astype(int)
    return y_prob.reshape(len(y_prob), -1).argmax(axis=1)


def _confusion_metric(statistic: str):
    def factory(config, spec: zoo.DataSpec):
        from zoo_plugins.keras_metrics import ConfusionMatrixMetric

        return ConfusionMatrixMetric(
            num_classes=spec.num_classes,
            statistic=statistic,
            average=getattr(config, "average", "macro"),
            threshold=config.threshold,
            name=statistic,
        )

    return factory


def _sklearn_reference(statistic: str):
    def reference(y_true, y_prob, spec: zoo.DataSpec, config) -> float:
        from sklearn import metrics

        y_pred = predicted_labels(y_prob, spec, config.threshold)
        if statistic == "accuracy":
            return float(metrics.accuracy_score(y_true, y_pred))
        score = {"precision": metrics.precision_score, "recall": metrics.recall_score, "f1": metrics.f1_score}
        average = "binary" if spec.binary else config.average
        return float(score[statistic](y_true, y_pred, average=average, zero_division=0))

    return reference


def _curve_metric(curve: str, name: str):
    def factory(config: AUCConfig, spec: zoo.DataSpec):
        from zoo_plugins.keras_metrics import HistogramCurveArea

        return HistogramCurveArea(num_classes=spec.num_classes, curve=curve, num_bins=config.num_bins, name=name)

    return factory


def auc_reference(y_true, y_prob, spec: zoo.DataSpec, config) -> float:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    y_prob = np.asarray(y_prob, dtype=np.float64)
    if spec.binary:
        return float(roc_auc_score(y_true, y_prob.reshape(-1)))
    return float(roc_auc_score(y_true, y_prob, multi_class="ovr", average="macro", labels=np.arange(spec.num_classes)))


def pr_auc_reference(y_true, y_prob, spec: zoo.DataSpec, config) -> float:
    import numpy as np
    from sklearn.metrics import average_precision_score

    y_true = np.asarray(y_true).reshape(-1)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if spec.binary:
        return float(average_precision_score(y_true, y_prob.reshape(-1)))
    present = [c for c in range(spec.num_classes) if np.any(y_true == c)]
    return float(np.mean([average_precision_score(y_true == c, y_prob[:, c]) for c in present]))


@dataclass
class NoOptions:
    """This metric has no options."""


def _keras_mean_error(class_name: str, name: str):
    def factory(config: NoOptions, spec: zoo.DataSpec):
        import keras

        return getattr(keras.metrics, class_name)(name=name)

    return factory


def mse_reference(y_true, y_pred, spec: zoo.DataSpec, config) -> float:
    from sklearn.metrics import mean_squared_error

    return float(mean_squared_error(_flat(y_true), _flat(y_pred)))


def mae_reference(y_true, y_pred, spec: zoo.DataSpec, config) -> float:
    from sklearn.metrics import mean_absolute_error

    return float(mean_absolute_error(_flat(y_true), _flat(y_pred)))


def reconstruction_error_reference(y_true, y_pred, spec: zoo.DataSpec, config) -> float:
    import numpy as np

    return float(np.mean(np.sum(np.square(_flat(y_true) - _flat(y_pred)), axis=1)))


def perplexity_reference(y_true, y_prob, spec: zoo.DataSpec, config) -> float:
    import numpy as np

    y_prob = np.asarray(y_prob, dtype=np.float64)
    labels = np.asarray(y_true).reshape(-1)
    picked = y_prob.reshape(-1, y_prob.shape[-1])[np.arange(len(labels)), labels]
    return float(np.exp(-np.mean(np.log(np.maximum(picked, 1e-12)))))


def _zoo_metric(class_name: str):
    def factory(config: NoOptions, spec: zoo.DataSpec):
        from zoo_plugins import keras_metrics

        return getattr(keras_metrics, class_name)()

    return factory


def _flat(values):
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    return values.reshape(len(values), -1)


@zoo.hookimpl
def register_metrics():
    return [
        zoo.MetricPlugin(
            name="accuracy",
            summary="Share of examples whose predicted class is the true class.",
            config=AccuracyConfig,
            factory=_confusion_metric("accuracy"),
            reference=_sklearn_reference("accuracy"),
            default=True,
            greater_is_better=True,
        ),
        zoo.MetricPlugin(
            name="precision",
            summary="Of the examples predicted as a class, the share truly in it (macro-averaged).",
            config=AveragedConfig,
            factory=_confusion_metric("precision"),
            reference=_sklearn_reference("precision"),
            default=True,
            greater_is_better=True,
        ),
        zoo.MetricPlugin(
            name="recall",
            summary="Of the examples in a class, the share predicted as it (macro-averaged).",
            config=AveragedConfig,
            factory=_confusion_metric("recall"),
            reference=_sklearn_reference("recall"),
            default=True,
            greater_is_better=True,
        ),
        zoo.MetricPlugin(
            name="f1",
            summary="Harmonic mean of precision and recall (macro-averaged).",
            config=AveragedConfig,
            factory=_confusion_metric("f1"),
            reference=_sklearn_reference("f1"),
            default=True,
            greater_is_better=True,
        ),
        zoo.MetricPlugin(
            name="auc",
            summary="Area under the ROC curve (one-vs-rest, macro-averaged, for many classes).",
            config=AUCConfig,
            factory=_curve_metric("roc", "auc"),
            reference=auc_reference,
            tolerance=2e-4,  # scores tied within one histogram bin
            default=True,
            greater_is_better=True,
        ),
        zoo.MetricPlugin(
            name="pr_auc",
            summary="Average precision: area under the precision-recall curve (macro over classes).",
            config=AUCConfig,
            factory=_curve_metric("pr", "pr_auc"),
            reference=pr_auc_reference,
            tolerance=1e-3,  # one bin moves average precision more than ROC AUC
            greater_is_better=True,
        ),
        zoo.MetricPlugin(
            name="mse",
            summary="Mean squared error over every output value (of reconstructions, say).",
            config=NoOptions,
            factory=_keras_mean_error("MeanSquaredError", "mse"),
            objectives=(zoo.RECONSTRUCTION,),
            reference=mse_reference,
            default=True,
            greater_is_better=False,
        ),
        zoo.MetricPlugin(
            name="mae",
            summary="Mean absolute error over every output value.",
            config=NoOptions,
            factory=_keras_mean_error("MeanAbsoluteError", "mae"),
            objectives=(zoo.RECONSTRUCTION,),
            reference=mae_reference,
            default=True,
            greater_is_better=False,
        ),
        zoo.MetricPlugin(
            name="reconstruction_error",
            summary="Squared error summed over each example's values, averaged over examples.",
            config=NoOptions,
            factory=_zoo_metric("ReconstructionError"),
            objectives=(zoo.RECONSTRUCTION,),
            reference=reconstruction_error_reference,
            tolerance=1e-5,  # float32 sums
            default=True,
            greater_is_better=False,
        ),
        zoo.MetricPlugin(
            name="perplexity",
            summary="exp of the mean next-token cross-entropy: how many tokens the model hesitates between.",
            config=NoOptions,
            factory=_zoo_metric("Perplexity"),
            objectives=(zoo.LANGUAGE_MODELING,),
            reference=perplexity_reference,
            tolerance=1e-5,  # float32 sums
            default=True,
            greater_is_better=False,
        ),
    ]
