"""Cross-validation (`cv.folds=K`): folds that are disjoint, cover the training data and
keep the classes' shares; a run that reports each fold and the mean and spread of every
metric; a kill mid-fold resumed at that fold's step; the objective of a search."""

from __future__ import annotations

import json

import numpy as np
import pytest

import zoo

from conftest import error_lines, run_zoo
from test_resume import checkpoint_steps, kill_when, resumed_from, start_zoo

CANCER = ["+experiment=breast_cancer_mlp", "trainer.epochs=2", "trainer.progress=off", "loggers=none"]


def test_folds_are_disjoint_cover_the_training_data_and_keep_class_shares():
    from zoo.config import compose, plan_run
    from zoo.crossval import fold_indices, fold_splits, pooled

    plan = plan_run(compose(["+experiment=breast_cancer_mlp", "cv.folds=5", "cv.fold=2"]))
    splits = zoo.create_dataset("breast_cancer").load(plan.seed)
    x, y = pooled(splits, "breast_cancer")
    assert len(y) == len(splits.train[1]) + len(splits.validation[1])  # the test split is left out
    held = fold_indices(y, 5, plan.seed, stratified=True)
    together = np.concatenate(held)
    assert len(together) == len(y) and len(np.unique(together)) == len(y)  # disjoint, and each index once
    for fold in held:
        assert abs(len(fold) - len(y) / 5) <= 1
        assert abs(y[fold].mean() - y.mean()) < 0.02  # stratified: each fold keeps the share of malignant
    assert [list(f) for f in fold_indices(y, 5, plan.seed, True)] == [list(f) for f in held]  # the seed fixes them
    two = fold_splits(splits, plan)
    np.testing.assert_array_equal(two.validation[0], x[held[1]])
    np.testing.assert_array_equal(two.test[1], y[held[1]])
    assert len(two.train[1]) + len(held[1]) == len(y)
    assert not {row.tobytes() for row in two.train[0]} & {row.tobytes() for row in two.validation[0]}


def test_a_cross_validated_run_reports_each_fold_and_every_metrics_mean_and_spread(tmp_path):
    run_dir = tmp_path / "cv"
    result = run_zoo("train", *CANCER, "cv.folds=3", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    folds = metrics["folds"]
    assert list(folds) == ["1", "2", "3"]
    for name in ("loss", "accuracy", "auc", "f1", "precision", "recall"):
        values = [folds[k][name] for k in folds]
        assert metrics[name] == pytest.approx(np.mean(values))
        assert metrics[f"{name}_std"] == pytest.approx(np.std(values))
    assignment = json.loads((run_dir / "folds.json").read_text())
    for k in folds:  # each fold's run: scored on its held-out fold, its history, its model
        fold_dir = run_dir / "folds" / k
        assert json.loads((fold_dir / "metrics.json").read_text()) == folds[k]
        assert len((fold_dir / "history.csv").read_text().splitlines()) == 3
        assert (fold_dir / "model.keras").is_file()
        assert json.loads((fold_dir / "data.json").read_text())["held_out_examples"] == len(assignment["held_out"][int(k) - 1])
    assert "METRIC (HELD-OUT FOLD)" in result.stdout and "FOLD 3" in result.stdout
    # A fold's run is a run: it evaluates; the parent, with no model of its own, says which to name.
    assert run_zoo("evaluate", str(run_dir / "folds" / "1")).returncode == 0
    refused = run_zoo("evaluate", str(run_dir))
    assert refused.returncode != 0 and "is a cross-validation run" in error_lines(refused.stderr)[0]
    compared = run_zoo("compare", str(run_dir), "--csv")
    assert compared.returncode == 0 and "accuracy_std" in compared.stdout.splitlines()[0]


@pytest.mark.parametrize(
    "override, message",
    [("cv.folds=1", "cv.folds"), ("cv.fold=4", "fold must be one of 1..folds=3")],
)
def test_impossible_folds_fail_in_one_line(override, message, tmp_path):
    args = [*CANCER, "cv.folds=3", override] if override != "cv.folds=1" else [*CANCER, override]
    result = run_zoo("train", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0 and len(error_lines(result.stderr)) == 1 and message in result.stderr
    assert not (tmp_path / "run" / "folds").exists()


@pytest.mark.slow
def test_a_cross_validation_killed_mid_fold_resumes_at_that_folds_step(tmp_path):
    args = [*CANCER, "trainer.epochs=4", "trainer.checkpoint_every=3", "trainer.deterministic=true", "cv.folds=3"]
    whole = run_zoo("train", *args, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]

    run_dir = tmp_path / "killed"
    first = start_zoo([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    kill_when([first], lambda: len(checkpoint_steps(run_dir / "folds" / "2")) >= 2)
    done_before = (run_dir / "folds" / "1" / "metrics.json").stat().st_mtime_ns
    again = run_zoo("train", *args, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (run_dir / "folds" / "1" / "metrics.json").stat().st_mtime_ns == done_before  # not trained again
    assert resumed_from(run_dir) > 0  # fold 2, from its checkpoint (the folds log to the run's train.log)
    # Exact resume, fold by fold: the same numbers as the run never killed.
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads((tmp_path / "whole" / "metrics.json").read_text())
