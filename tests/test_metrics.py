"""Metrics against their references (scikit-learn) beyond the conformance checks: many
classes, averaging options, degenerate and confident predictions."""

from __future__ import annotations

import numpy as np
import pytest

import zoo
from zoo.testing import streamed
from zoo.testing import synthetic_predictions as random_predictions

from conftest import entries

SPECS = {
    "binary": zoo.DataSpec(zoo.CLASSIFICATION, (4,), num_classes=2),
    "10-class": zoo.DataSpec(zoo.CLASSIFICATION, (4,), num_classes=10),
}


def metric_cases():
    """Every classification metric on 10 classes; the conformance checks
    (tests/test_conformance.py) cover binary, 3-class, image and text predictions."""
    return [pytest.param(entry, id=entry.name) for entry in entries("metric") if zoo.CLASSIFICATION in entry.item.objectives]


@pytest.mark.parametrize("entry", metric_cases())
@pytest.mark.parametrize("seed", [0, 1])
def test_metric_matches_reference_on_many_classes(entry, seed):
    spec, objective = SPECS["10-class"], zoo.CLASSIFICATION
    config = entry.item.config()
    metric = zoo.create_metric(entry.name, spec)
    assert metric.name == entry.name
    y_true, y_prob = random_predictions(spec, n=997, seed=seed, objective=objective)
    expected = entry.item.reference(y_true, y_prob, spec, config)
    assert streamed(metric, y_true, y_prob) == pytest.approx(expected, abs=entry.item.tolerance)
    # reset_state really forgets: a second stream of other data gives its own value.
    y_true2, y_prob2 = random_predictions(spec, n=300, seed=seed + 100, objective=objective)
    expected2 = entry.item.reference(y_true2, y_prob2, spec, config)
    assert streamed(metric, y_true2, y_prob2) == pytest.approx(expected2, abs=entry.item.tolerance)


@pytest.mark.parametrize("average", ["macro", "weighted", "micro"])
@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
def test_averaging_options_match_scikit_learn(name, average):
    spec = SPECS["10-class"]
    entry = zoo.get_registry().get("metric", name)
    y_true, y_prob = random_predictions(spec, n=500, seed=3)
    metric = zoo.create_metric(name, spec, average=average)
    expected = entry.item.reference(y_true, y_prob, spec, entry.item.config(average=average))
    assert streamed(metric, y_true, y_prob) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", ["precision", "recall", "f1", "accuracy"])
def test_degenerate_predictions_match_scikit_learn(name):
    """A model that predicts one class only: undefined ratios count as 0, classes never
    seen in labels or predictions are left out of the macro average (as scikit-learn)."""
    spec = SPECS["10-class"]
    entry = zoo.get_registry().get("metric", name)
    y_true = np.array([0, 1, 1, 2, 2, 2])
    y_prob = np.tile(np.eye(10, dtype=np.float32)[2], (6, 1))
    metric = zoo.create_metric(name, spec)
    expected = entry.item.reference(y_true, y_prob, spec, entry.item.config())
    assert streamed(metric, y_true, y_prob, batches=2) == pytest.approx(expected, abs=1e-6)


def test_curve_areas_resolve_confident_scores():
    """Scores crowded near 0 and 1 (a confident model) still rank correctly."""
    spec = SPECS["binary"]
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 2, size=2000)
    logits = rng.normal(loc=np.where(y_true == 1, 9.0, -9.0), scale=3.0)
    y_prob = (1 / (1 + np.exp(-logits))).astype(np.float32).reshape(-1, 1)
    for name in ("auc", "pr_auc"):
        entry = zoo.get_registry().get("metric", name)
        expected = entry.item.reference(y_true, y_prob, spec, entry.item.config())
        assert streamed(zoo.create_metric(name, spec), y_true, y_prob) == pytest.approx(expected, abs=entry.item.tolerance)


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_the_roc_auc_of_labels_of_one_class_is_undefined_not_zero(spec):
    """A test split without the rare class: no positive-negative pair to rank. scikit-learn
    scores it NaN with a warning (or refuses it); the metric had said 0.0, a perfectly wrong
    model."""
    import warnings

    from sklearn.metrics import roc_auc_score

    y_true = np.zeros(8, dtype=int)
    _, y_prob = random_predictions(spec, n=8, seed=0)
    assert np.isnan(streamed(zoo.create_metric("auc", spec), y_true, y_prob))
    assert np.isnan(streamed(zoo.create_metric("pr_auc", SPECS["binary"]), y_true, y_prob[:, :1].clip(0, 1)))  # no positives
    if spec.binary:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                assert np.isnan(roc_auc_score(y_true, y_prob.reshape(-1)))
            except ValueError as refused:  # scikit-learn before 1.4
                assert "Only one class present" in str(refused)


@pytest.mark.parametrize("entry", metric_cases())
@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_nan_predictions_of_a_diverged_model_update_every_metric(entry, spec):
    """A model that diverges predicts NaN before its loss is seen to be NaN: the curve areas
    binned a NaN score outside their histograms, and the training step failed in
    TensorFlow's words ("ResourceScatterAdd ... out of range") where the run stops on the NaN
    loss and says so."""
    y_true, y_prob = random_predictions(spec, n=16, seed=0)
    y_prob = np.array(y_prob, dtype="float32")
    y_prob[::3] = np.nan
    result = streamed(zoo.create_metric(entry.name, spec), y_true, y_prob)
    assert isinstance(result, float)


def test_a_test_split_without_a_class_is_warned_about_by_name():
    from zoo.errors import InputWarning
    from zoo.run import warn_of_absent_classes

    with pytest.warns(InputWarning, match=r"the test split \(3 examples\) holds no example of class 'rare': its recall and F1"):
        warn_of_absent_classes(np.array([0, 0, 1]), ("cat", "dog", "rare"))
    with pytest.warns(InputWarning, match="holds no example of classes 'dog', 'rare': their recall"):
        warn_of_absent_classes(np.eye(3)[[0, 0]], ("cat", "dog", "rare"))  # one-hot labels
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_of_absent_classes(np.array([[0], [1]]), ("benign", "malignant"))  # binary labels as a column


@pytest.mark.parametrize("entry", metric_cases())
def test_totals_kept_per_replica_give_what_one_device_gives(entry):
    """Under a mirrored strategy the totals are replica variables, which TensorFlow cannot
    update in place (a dense update is summed instead): both ways must agree."""
    import tensorflow as tf

    spec = SPECS["10-class"]
    y_true, y_prob = random_predictions(spec, n=300, seed=5)
    one_device = streamed(zoo.create_metric(entry.name, spec), y_true, y_prob)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        replicated = zoo.create_metric(entry.name, spec)
    assert isinstance(replicated.variables[0].value, tf.distribute.DistributedValues)
    for part in np.array_split(np.arange(len(y_true)), 3):
        strategy.run(tf.function(replicated.update_state), args=(y_true[part], y_prob[part]))
    assert float(replicated.result()) == pytest.approx(one_device, abs=1e-9)


def test_a_thousand_classes_keep_small_totals_that_still_match_scikit_learn():
    """Per class, precision and recall need three counts, not a row of a confusion matrix
    (200 MB of them at 5,000 classes), and the ROC AUC's histograms share a bounded number
    of bins (its per-step update had written all 16,384 x classes of them: 0.8 s a step
    at 2,000 classes)."""
    from sklearn.metrics import f1_score, roc_auc_score

    from zoo_plugins.keras_metrics import HistogramCurveArea

    classes = 1000
    spec = zoo.DataSpec(zoo.CLASSIFICATION, (4,), num_classes=classes)
    y_true, y_prob = random_predictions(spec, n=4000, seed=2)
    f1, auc = zoo.create_metric("f1", spec), zoo.create_metric("auc", spec)
    assert sum(int(np.prod(v.shape)) for v in f1.variables) == 3 * classes
    assert auc.num_bins == HistogramCurveArea.MAX_BINS // classes < 16384
    assert sum(int(np.prod(v.shape)) for v in auc.variables) == 2 * auc.num_bins * classes
    assert streamed(f1, y_true, y_prob) == pytest.approx(f1_score(y_true, y_prob.argmax(1), average="macro"), abs=1e-9)
    present = np.unique(y_true)  # the classes with positives; every class has negatives
    expected = np.mean([roc_auc_score(y_true == c, y_prob[:, c]) for c in present])
    assert streamed(auc, y_true, y_prob) == pytest.approx(expected, abs=2e-4)
