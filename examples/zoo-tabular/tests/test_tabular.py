"""zoo-tabular's own behaviour, through keras-zoo's public API and its command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import zoo


def zoo_command(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args], cwd=cwd, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL
    )


def test_wine_is_standardised_with_training_statistics_only():
    splits = zoo.create_dataset("wine").load(seed=0)
    x_train, _ = splits.train
    np.testing.assert_allclose(x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(axis=0), 1, atol=1e-4)
    x_test, _ = splits.test
    assert np.abs(x_test.mean(axis=0)).max() > 0.05, "the test split was not used for the statistics"


def test_balanced_accuracy_is_not_inflated_by_a_majority_class():
    metric = zoo.create_metric("balanced_accuracy", zoo.create_dataset("wine"))
    y_true = np.array([0] * 8 + [1, 2])
    always_first = np.tile(np.eye(3, dtype="float32")[0], (10, 1))
    metric.update_state(y_true, always_first)
    assert float(metric.result()) == pytest.approx(1 / 3)  # plain accuracy: 0.8


def test_preset_trains_predicts_and_the_model_reloads_with_plain_keras(tmp_path):
    run_dir = tmp_path / "run"
    trained = zoo_command("train", "+experiment=wine_residual_mlp", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9 and metrics["balanced_accuracy"] >= 0.9, metrics

    # Raw measurements in, standardised by the dataset's `prepare` as in training.
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    rows = tmp_path / "wines.csv"
    rows.write_text("\n".join(",".join(map(str, row)) for row in x[::10]) + "\n")
    predicted = zoo_command("predict", str(run_dir), str(rows), "--csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    classes = [line.split(",")[1] for line in predicted.stdout.splitlines()[1:]]
    assert np.mean([c == f"cultivar_{label}" for c, label in zip(classes, y[::10])]) >= 0.85

    # The custom layer is registered under zoo_tabular: importing it is all Keras needs.
    reload = "import sys, keras, zoo_tabular.layers; print(type(keras.saving.load_model(sys.argv[1]).get_layer('block0')).__name__)"
    loaded = subprocess.run([sys.executable, "-c", reload, str(run_dir / "model.keras")], capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0 and loaded.stdout.split()[-1] == "ResidualDense", loaded.stderr[-2000:]
