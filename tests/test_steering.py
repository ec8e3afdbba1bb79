"""Training you can steer: early stopping, schedules, optimizer options, class weights,
label smoothing, warm start, callbacks and loggers, and the run's records."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import error_lines, run_zoo

SMALL = ["model.filters=8", "model.dense_units=16"]  # cnn_classifier on digits, quick


def history(run_dir: Path) -> list[dict]:
    with (run_dir / "history.csv").open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def train(tmp_path: Path, name: str, *args: str, env: dict | None = None) -> Path:
    run_dir = tmp_path / name
    result = run_zoo("train", *args, f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_early_stopping_stops_and_keeps_the_best_epochs_weights(tmp_path):
    run_dir = train(tmp_path, "stopped", *SMALL, "trainer.epochs=200", "trainer.early_stopping.patience=3")
    rows = history(run_dir)
    record = json.loads((run_dir / "training.json").read_text())["early_stopping"]
    assert len(rows) < 200 and record["stopped_epoch"] == len(rows)
    losses = [row["val_loss"] for row in rows]
    best = int(np.argmin(losses)) + 1
    assert record["weights_from_epoch"] == record["best_epoch"] == best == len(rows) - 3
    evaluated = run_zoo("evaluate", str(run_dir), "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads(evaluated.stdout) == pytest.approx(json.loads((run_dir / "metrics.json").read_text()), abs=1e-6)


@pytest.mark.slow
def test_cosine_schedule_warms_up_then_decays_and_is_logged(tmp_path):
    # The command: 40 steps an epoch, so the 30 warm-up steps end inside epoch 1;
    # each epoch's lr is its first step's rate.
    run_dir = train(tmp_path, "cosine", *SMALL, "trainer.epochs=4", "trainer.lr_schedule=cosine", "trainer.warmup_steps=30")
    lr = [row["lr"] for row in history(run_dir)]
    assert lr[0] == pytest.approx(1e-3 / 30, rel=1e-4)  # the first step takes 1/30 of the rate
    assert lr[0] < lr[1] and lr[1] > lr[2] > lr[3], lr
    # After warm-up: half a cosine from 1e-3 to 0 over the 4 * 40 - 30 remaining steps.
    expected = [1e-3 * 0.5 * (1 + np.cos(np.pi * (40 * epoch - 30) / 130)) for epoch in (1, 2, 3)]
    assert lr[1:] == pytest.approx(expected, rel=1e-4)


def test_a_warm_up_as_long_as_the_run_is_said():
    """A warm-up of 30 steps in a run of 2 epochs of 10 steps kept the learning rate below
    2/3 of trainer.learning_rate, and the cosine after it never began, quietly."""
    from zoo.config import TrainerConfig
    from zoo.optimization import warm_up_past_the_end

    trainer = TrainerConfig(epochs=2, learning_rate=0.001, lr_schedule="cosine", warmup_steps=30)
    assert warm_up_past_the_end(trainer, steps_per_epoch=10) == (
        "trainer.warmup_steps=30 is not shorter than the 20 steps the run trains: the learning rate rises to 0.000667 at "
        "most, never to trainer.learning_rate=0.001, and its cosine schedule never starts"
    )
    assert warm_up_past_the_end(trainer, steps_per_epoch=40) is None
    assert warm_up_past_the_end(TrainerConfig(epochs=1, warmup_steps=0), steps_per_epoch=1) is None


@pytest.mark.slow
def test_plateau_schedule_lowers_the_rate_when_the_monitored_value_stalls(tmp_path):
    # val_accuracy cannot rise by 0.99: every epoch after the first is a plateau epoch; an
    # epoch's lr is the rate it trained with (lowered after it).
    run_dir = train(
        tmp_path, "plateau", *SMALL, "trainer.epochs=4", "trainer.lr_schedule=plateau", "trainer.plateau.patience=1",
        "trainer.plateau.monitor=val_accuracy", "trainer.plateau.min_delta=0.99", "trainer.plateau.factor=0.5",
    )  # fmt: skip
    assert [row["lr"] for row in history(run_dir)] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4], rel=1e-6)


def test_accumulated_steps_update_like_one_step_of_the_whole_batch():
    import keras

    from zoo.config import TrainerConfig
    from zoo.optimization import build_optimizer

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 5)).astype("float32"), rng.integers(0, 3, 24)

    def trained(accumulate: int, batch: int):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
        trainer = TrainerConfig(optimizer="sgd", learning_rate=0.5, accumulate_steps=accumulate, momentum=0.9)
        model.compile(optimizer=build_optimizer(trainer, steps_per_epoch=1), loss="sparse_categorical_crossentropy")
        for start in range(0, 24, batch):
            model.train_on_batch(x[start : start + batch], y[start : start + batch])
        return model.get_weights()

    accumulated, whole = trained(accumulate=3, batch=8), trained(accumulate=1, batch=24)
    assert not np.allclose(accumulated[0], trained(accumulate=1, batch=8)[0])  # the check can tell
    for got, expected in zip(accumulated, whole):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_adafactor_keeps_weights_whose_gradients_are_zero_finite():
    """Keras' Adafactor multiplies a kernel's row and column factors before the square root:
    with its default epsilon_1 (1e-30), weights whose row and column of gradients were both
    zero got 0/0, and the default job, the cat CNN and the conv autoencoder diverged in their
    first epoch on the advice to lower the learning rate."""
    import keras

    from zoo.config import TrainerConfig
    from zoo.optimization import build_optimizer

    rng = np.random.default_rng(0)
    x = rng.random((64, 6)).astype("float32")
    x[:, :3] = 0.0  # inputs that are always zero, as the digits' border pixels
    y = rng.integers(0, 3, 64)

    def trained(optimizer):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((6,)),
            keras.layers.Dense(4, activation="relu", bias_initializer=keras.initializers.Constant([-99, -99, 0, 0])),  # two silenced
            keras.layers.Dense(3, activation="softmax"),
        ])  # fmt: skip
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        for _ in range(3):
            model.train_on_batch(x, y)
        return model.get_weights()

    assert not all(np.isfinite(w).all() for w in trained(keras.optimizers.Adafactor(learning_rate=1e-3)))  # Keras' own
    weights = trained(build_optimizer(TrainerConfig(optimizer="adafactor"), steps_per_epoch=1))
    assert all(np.isfinite(w).all() for w in weights)
    assert not np.allclose(weights[3], 0.0)  # the output layer's bias learned


def test_settings_of_a_feature_that_is_off_are_said_to_have_no_effect(tmp_path):
    """``trainer.plateau.patience=2`` with the constant schedule, ``pruning.frequency``
    without a sparsity: passed over unsaid, as if the run used them."""
    from zoo.config import PlateauConfig, PruningConfig, TrainerConfig
    from zoo.optimization import settings_without_effect

    assert settings_without_effect(TrainerConfig()) == []
    assert settings_without_effect(TrainerConfig(lr_schedule="plateau", plateau=PlateauConfig(patience=2))) == []
    assert settings_without_effect(TrainerConfig(plateau=PlateauConfig(patience=2), pruning=PruningConfig(frequency=10))) == [
        "trainer.plateau.patience=2 has no effect without trainer.lr_schedule=plateau",
        "trainer.pruning.frequency=10 has no effect without trainer.pruning.sparsity above 0",
    ]
    assert settings_without_effect(TrainerConfig(decay_rate=0.1, lr_schedule="cosine")) == [
        "trainer.decay_rate=0.1 has no effect without trainer.lr_schedule=exponential or step"
    ]
    result = run_zoo("train", "model=mlp_classifier", "dataset=breast_cancer", "trainer.epochs=1", "trainer.early_stopping.monitor=val_accuracy",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "zoo: warning: trainer.early_stopping.monitor=val_accuracy has no effect without trainer.early_stopping.patience above 0" in result.stderr


def test_label_smoothing_matches_its_formula():
    from zoo.hookspecs import CLASSIFICATION, DataSpec
    from zoo.optimization import loss_function

    spec = DataSpec(task=CLASSIFICATION, input_shape=(4,), num_classes=3)
    loss = loss_function("sparse_categorical_crossentropy", spec, 0.1)
    y_true = np.array([0, 2, 1])
    y_pred = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]], dtype="float32")
    targets = np.eye(3)[y_true] * 0.9 + 0.1 / 3
    expected = -(targets * np.log(y_pred)).sum(axis=1)
    np.testing.assert_allclose(np.asarray(loss(y_true, y_pred)), expected, rtol=1e-5)
    binary = loss_function("binary_crossentropy", DataSpec(CLASSIFICATION, (4,), 2), 0.2)
    p, t = np.array([[0.8]], "float32"), np.array([[1.0]])
    smoothed = 0.9  # 1 * 0.8 + 0.2 / 2
    assert float(binary(t, p)) == pytest.approx(-(smoothed * np.log(0.8) + (1 - smoothed) * np.log(0.2)), rel=1e-4)


def test_balanced_class_weights_follow_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    from zoo.config import TrainerConfig
    from zoo.hookspecs import CLASSIFICATION, DataSpec
    from zoo.optimization import class_weights

    labels = np.array([0] * 30 + [1] * 10 + [2] * 5)
    spec = DataSpec(CLASSIFICATION, (2,), 3)
    got = class_weights(TrainerConfig(class_weight="balanced"), spec, lambda: labels)
    np.testing.assert_allclose(got, compute_class_weight("balanced", classes=np.arange(3), y=labels))
    assert class_weights(TrainerConfig(class_weight=[1, 2, 3]), spec, lambda: labels) == [1.0, 2.0, 3.0]
    assert class_weights(TrainerConfig(), spec, lambda: labels) is None


@pytest.mark.slow
def test_class_weights_and_label_smoothing_train_a_run(tmp_path):
    run_dir = train(
        tmp_path, "weighted", "model=mlp_classifier", "dataset=breast_cancer", "trainer.epochs=2",
        "trainer.class_weight=balanced", "trainer.label_smoothing=0.1", "trainer.weight_decay=0.01", "trainer.clipnorm=1.0",
    )  # fmt: skip
    assert "class weights" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / "metrics.json").read_text())["accuracy"] > 0.8


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.lr_schedule=cosin", "did you mean 'cosine'"),
        ("trainer.momentum=0.9", "momentum applies to sgd and rmsprop"),
        ("trainer.optimizer=sgd trainer.momentum=1.5", "trainer.momentum must be below 1"),  # Keras' ValueError as it started
        ("trainer.class_weight=[1,2]", "2 weights; the dataset has 10 classes"),
        ("trainer.early_stopping.mode=up", "early_stopping.mode='up' is not supported"),
        ("trainer.init_from=/nonexistent/run", "trainer.init_from=/nonexistent/run does not exist (moved or deleted?)"),
        ("trainer.init_from=/tmp", "trainer.init_from=/tmp is not a run directory (it has no config.yaml)"),
        ("device=multi_worker trainer.early_stopping.patience=2", "is not available with device=multi_worker"),
        ("model=autoencoder trainer.label_smoothing=0.1", "trainer.label_smoothing applies to classifiers"),
        ("trainer.freeze=[*]", "trainer.freeze=['*'] freezes every layer with weights; nothing would train"),
    ],
)
def test_bad_trainer_controls_fail_in_one_line(tmp_path, override, message):
    result = run_zoo("train", *override.split(), "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert message in error_lines(result.stderr)[0], result.stderr[-2000:]


@pytest.mark.parametrize("key", ["trainer.init_from", "trainer.distillation.teacher"])
def test_a_run_built_on_a_run_of_a_plugin_not_installed_fails_before_tensorflow(tmp_path, key):
    """It had loaded TensorFlow, printed the new run's directory, then failed on the model
    the other run names: the check is the one `zoo evaluate` makes of that run."""
    import dataclasses
    import subprocess
    import sys

    import yaml

    from zoo.config import compose, plan_run
    from zoo.run import recorded_config
    from test_registry import NO_TF_SCRIPT

    cfg = compose(["model=mlp_classifier"])
    plan = plan_run(cfg)
    recorded = recorded_config(cfg, plan)
    recorded["model"] = {"name": "retired_model", "width": 3}  # of a plugin since uninstalled
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text(yaml.safe_dump(recorded))
    (other / "spec.json").write_text(json.dumps(dataclasses.asdict(plan.spec)))
    for name in ("metrics.json", "model.keras"):
        (other / name).write_text("{}")
    result = subprocess.run(
        [sys.executable, "-c", NO_TF_SCRIPT, "train", "model=mlp_classifier", f"{key}={other}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    [line] = error_lines(result.stderr)
    assert line.startswith(f"zoo: error: the run in {other}: unknown model 'retired_model'"), line
    assert "HEAVY=\n" in result.stderr and "run directory" not in result.stdout + result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_warm_start_begins_from_the_parents_weights_and_records_it(tmp_path):
    parent = train(tmp_path, "parent", *SMALL, "trainer.epochs=6")
    parent_accuracy = history(parent)[-1]["val_accuracy"]
    child = train(
        tmp_path, "child", *SMALL, f"trainer.init_from={parent}", "trainer.optimizer=sgd", "trainer.epochs=1",
        "trainer.freeze=[conv]",
    )  # fmt: skip
    fresh = train(tmp_path, "fresh", *SMALL, "trainer.optimizer=sgd", "trainer.epochs=1")
    # After an epoch of SGD at 1e-3 (which moves little), the child scores as its parent did.
    assert history(child)[0]["val_accuracy"] >= parent_accuracy - 0.05 > history(fresh)[0]["val_accuracy"] + 0.3
    record = json.loads((child / "training.json").read_text())["init_from"]
    assert record["run"] == str(parent.resolve()) and len(record["weights_sha256"]) == 64
    assert record["unmatched"] == [] and "conv" in record["copied"]
    from zoo.optimization import layer_weights
    from zoo.run import load_trained_model

    # The frozen convolution is the parent's still.
    weights = [layer_weights(load_trained_model(run)[1])["conv"] for run in (child, parent)]
    for got, expected in zip(*weights):
        np.testing.assert_array_equal(got, expected)

    # A layer of another shape starts untrained, and says so.
    wider = train(tmp_path, "wider", "model.filters=8", "model.dense_units=32", f"trainer.init_from={parent}", "trainer.epochs=1")
    assert json.loads((wider / "training.json").read_text())["init_from"]["unmatched"] == ["hidden", "probabilities"]
    compared = run_zoo("compare", str(parent), str(child), cwd=tmp_path)
    assert compared.returncode == 0 and "parent" in compared.stdout, compared.stdout


@pytest.mark.slow
def test_a_parent_or_teacher_trained_on_this_runs_test_examples_is_named(tmp_path):
    """A warm start or a teacher trained with another seed learnt most of this run's test
    examples: its test metrics would overstate it, and nothing said so."""
    mlp = ["model=mlp_classifier", "model.hidden_units=[8]", "trainer.epochs=1"]
    parent = train(tmp_path, "parent", *mlp, "seed=1")
    result = run_zoo("train", *mlp, f"trainer.init_from={parent}", f"trainer.distillation.teacher={parent}",
                     f"hydra.run.dir={tmp_path / 'child'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("zoo: warning:")]
    for key in ("trainer.init_from", "trainer.distillation.teacher"):
        assert any(f"{key}={parent} trained on" in w and "of the 360 test examples" in w for w in warnings), warnings
    same_split = run_zoo("train", *mlp, "seed=1", f"trainer.init_from={parent}", f"hydra.run.dir={tmp_path / 'sibling'}", cwd=tmp_path)
    assert same_split.returncode == 0 and "zoo: warning:" not in same_split.stderr, same_split.stderr[-2000:]


@pytest.mark.slow
def test_a_run_whose_data_is_not_here_still_warm_starts_and_says_what_it_needs_it_for(tmp_path):
    """A run from another machine (or whose image folder moved): a warm start from it failed
    on the folder not being there (read to check it for this run's test examples), and an
    int8 export said only that, not that its calibration needs the data."""
    from conftest import tiny_overrides

    here = Path(tiny_overrides("image_folder")["path"])
    elsewhere = tmp_path / "pets"
    shutil.copytree(here, elsewhere)
    data = ["model=mlp_classifier", "model.hidden_units=[8]", "dataset=image_folder", "dataset.image_size=[8,8]", "trainer.epochs=1"]
    parent = train(tmp_path, "parent", *data, f"dataset.path={elsewhere}")
    shutil.rmtree(elsewhere)
    result = run_zoo("train", *data, f"dataset.path={here}", f"trainer.init_from={parent}", f"hydra.run.dir={tmp_path / 'child'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"zoo: warning: trainer.init_from={parent}: whether it trained on this run's test examples is not known" in result.stderr
    exported = run_zoo("export", str(parent), "--format", "tflite", "--quantize", "int8", "--output", str(tmp_path / "q.tflite"))
    assert exported.returncode == 2 and not (tmp_path / "q.tflite").exists()
    [line] = error_lines(exported.stderr)
    assert "--quantize int8 calibrates on the run's training examples, which cannot be loaded here" in line, line


@pytest.mark.slow
def test_warm_start_with_nothing_in_common_fails_in_one_line(tmp_path):
    parent = train(tmp_path, "parent", "model=mlp_classifier", "model.hidden_units=[7]", "trainer.epochs=1")
    result = run_zoo("train", *SMALL, f"trainer.init_from={parent}", f"hydra.run.dir={tmp_path / 'child'}", cwd=tmp_path)
    assert result.returncode != 0 and "no layer of this model matches" in error_lines(result.stderr)[0]


def test_every_run_records_its_environment(default_run):
    run_dir, _ = default_run
    environment = json.loads((run_dir / "env.json").read_text())
    import keras

    assert environment["libraries"]["keras"] == keras.__version__
    assert environment["plugins"]["keras-zoo"] and environment["replicas"] == 1


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_the_commit_is_recorded_without_running_programs_the_repository_names(tmp_path, monkeypatch):
    """env.json records the working directory's commit and whether it has changes, asked of
    git; a downloaded project's .git/config can name programs for `git status` to run (an
    fsmonitor, a filter's clean command): none of them runs, and the answer is still right."""
    import subprocess
    from types import SimpleNamespace

    from zoo import records

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitattributes").write_text("* filter=sneaky\n")
    (tmp_path / "train.py").write_text("print(1)\n")
    git("add", ".")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "first")
    ran = tmp_path.parent / f"{tmp_path.name}-ran"
    git("config", "filter.sneaky.clean", f"sh -c 'touch {ran}; cat'")
    git("config", "core.fsmonitor", f"touch {ran}; false")
    monkeypatch.chdir(tmp_path)
    placement = SimpleNamespace(description="cpu", kind="cpu", strategy=SimpleNamespace(num_replicas_in_sync=1))
    os.utime(tmp_path / "train.py", (1, 1))  # its stat changed: git would compare contents through the filter
    clean = records.environment(placement)["git"]
    (tmp_path / "train.py").write_text("print(2)\n")
    changed = records.environment(placement)["git"]
    assert len(clean["commit"]) == 40 and clean["dirty"] is False and changed["dirty"] is True
    assert not ran.exists()


@pytest.mark.slow
def test_loggers_hand_every_history_value_to_mlflow_and_tensorboard(tmp_path):
    from zoo.hookspecs import RunInfo
    from zoo_plugins.loggers import MLflowConfig, TensorBoardConfig, read_mlflow, read_tensorboard

    run_dir = train(tmp_path, "tracked", *SMALL, "trainer.epochs=3", "loggers=[tensorboard,mlflow]")
    rows = history(run_dir)
    info = RunInfo(run_dir=run_dir, name=run_dir.name, params={}, spec=None, seed=0)
    tracked = read_mlflow(MLflowConfig(), info)
    for name in rows[0]:
        if name != "epoch":
            assert tracked[name] == [row[name] for row in rows], name
    logged = read_tensorboard(TensorBoardConfig(), info)
    for name in rows[0]:
        if name != "epoch":
            assert logged[name] == pytest.approx([row[name] for row in rows], rel=1e-6), name

    from mlflow.tracking import MlflowClient

    record = json.loads((run_dir / "mlflow.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    run = client.get_run(record["run_id"])
    assert run.data.params["trainer.epochs"] == "3" and run.info.status == "FINISHED"
    assert run.data.metrics["test_accuracy"] == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["accuracy"])
    assert {f.path for f in client.list_artifacts(record["run_id"])} >= {"model.keras", "config.yaml", "plots"}
    assert record["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.mark.slow
def test_a_failing_logger_warns_once_and_the_run_goes_on(tmp_path):
    # Nothing listens on port 9 of the loopback: every call to this tracker fails.
    run_dir = tmp_path / "untracked"
    result = run_zoo(
        "train", *SMALL, "trainer.epochs=2", "loggers=[mlflow]", "loggers.mlflow.tracking_uri=http://127.0.0.1:9",
        f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "logger 'mlflow' failed" in line]
    assert len(warnings) == 1 and (run_dir / "metrics.json").is_file()


def test_mlflow_never_adds_its_tables_to_a_database_of_yours(tmp_path):
    import sqlite3

    mine = tmp_path / "app.db"
    with sqlite3.connect(mine) as database:
        database.execute("CREATE TABLE users (name TEXT)")
    before = mine.read_bytes()
    for uri in (f"sqlite:///{mine}", f"sqlite:///{tmp_path / 'notes.txt'}"):
        (tmp_path / "notes.txt").write_text("mine")
        result = run_zoo("train", "loggers=[mlflow]", f"loggers.mlflow.tracking_uri={uri}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
        assert result.returncode == 2 and not (tmp_path / "run").exists()
        assert error_lines(result.stderr) == [
            f"zoo: error: loggers.mlflow.tracking_uri={uri}: {uri.removeprefix('sqlite:///')} is not an MLflow tracking "
            "database; give a new file (or leave it empty) (logger 'mlflow')"
        ]
    assert mine.read_bytes() == before and (tmp_path / "notes.txt").read_text() == "mine"


def test_a_folder_tracking_store_that_mlflow_refuses_is_said_before_training(tmp_path):
    """MLflow 3.13 and later refuse a folder store (`tracking_uri=./mlruns`, `file:...`)
    unless MLFLOW_ALLOW_FILE_STORE=true: the run had trained to its end untracked, after a
    warning at its start. Refused before training, naming the database that would do."""
    from zoo_plugins.loggers import refuses_folder_stores

    if not refuses_folder_stores():
        pytest.skip("the MLflow installed writes folder stores")
    for uri, database in ((str(tmp_path / "mlruns"), f"sqlite:///{tmp_path / 'mlruns'}.db"), (f"file://{tmp_path / 'm'}", f"sqlite:///{tmp_path / 'm'}.db")):
        run_dir = tmp_path / "run"
        result = run_zoo("train", *SMALL, "loggers=[mlflow]", f"loggers.mlflow.tracking_uri={uri}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert result.returncode == 2 and not (run_dir / "history.csv").exists(), result.stderr[-2000:]
        [line] = error_lines(result.stderr)
        assert line.startswith(f"zoo: error: loggers.mlflow.tracking_uri={uri} is a folder store, which MLflow ") and line.endswith(
            f"no longer writes; give {database} (a database file) or a server's http://host:port, or set MLFLOW_ALLOW_FILE_STORE=true "
            "to keep the folder"
        ), line
        assert not (tmp_path / "mlruns").exists()


def test_a_tracking_database_whose_writer_was_killed_mid_write_is_still_recognised(tmp_path):
    """A run killed while MLflow (or Optuna) wrote leaves a hot journal, which a read-only
    connection cannot roll back: the zoo then refused the database as not MLflow's, and
    every later run (the killed one resumed included) with it. Seen once in the resume test."""
    import signal
    import sqlite3
    import subprocess
    import sys

    from zoo.artifacts import sqlite_tables
    from zoo_plugins.loggers import MLFLOW_TABLES, check_tracking_store

    store = tmp_path / "mlflow.db"
    with sqlite3.connect(store) as database:
        for table in sorted(MLFLOW_TABLES):
            database.execute(f"CREATE TABLE {table} (value TEXT)")
        database.executemany("INSERT INTO runs VALUES (?)", [("x" * 200,)] * 20_000)
    writer = (
        "import os, signal, sqlite3\n"
        f"database = sqlite3.connect({str(store)!r}, isolation_level=None)\n"
        "database.execute('PRAGMA cache_size=10')\n"  # the change spills into the file before the commit
        "database.execute('BEGIN')\n"
        "database.execute(\"UPDATE runs SET value = value || 'y'\")\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert subprocess.run([sys.executable, "-c", writer]).returncode == -signal.SIGKILL
    assert (tmp_path / "mlflow.db-journal").stat().st_size > 0  # the hot journal the test is about
    assert sqlite_tables(store) == MLFLOW_TABLES
    check_tracking_store(f"sqlite:///{store}")  # no ValueError
    assert (tmp_path / "mlflow.db-journal").exists(), "the check only reads"


def test_a_run_ending_early_hands_its_trackers_every_queued_row_before_it_exits():
    """An error or a signal ends a run between epochs: the rows already queued still reach
    a slow tracker, and the trackers' thread has ended (no thread may still be inside
    native code while the interpreter shuts down: that can abort the process)."""
    import time

    from zoo import callbacks as run_callbacks

    class SlowTracker:
        def __init__(self):
            self.rows = []

        def start(self):
            pass

        def log_epoch(self, epoch, logs):
            time.sleep(0.2)
            self.rows.append(epoch)

    tracker = SlowTracker()
    loggers = run_callbacks.Loggers([("slow", tracker)])
    preload = run_callbacks.Preload(("json",))
    for epoch in range(3):
        loggers.on_epoch_end(epoch, {"loss": 1.0})
        preload.on_epoch_end(epoch, {})
    run_callbacks.close_threads([loggers, preload])
    assert tracker.rows == [1, 2, 3]
    assert not loggers.worker.is_alive() and not preload.worker.is_alive()
    run_callbacks.close_threads([loggers, preload])  # closing twice is harmless


@pytest.mark.slow
def test_callbacks_are_chosen_by_name_with_typed_options(tmp_path):
    run_dir = train(tmp_path, "snapshots", *SMALL, "trainer.epochs=4", "callbacks=[snapshots]", "callbacks.snapshots.every=2")
    assert sorted(p.name for p in (run_dir / "snapshots").iterdir()) == ["epoch-0002.weights.h5", "epoch-0004.weights.h5"]
    result = run_zoo("train", "callbacks=[snapshot]", f"hydra.run.dir={tmp_path / 'x'}", cwd=tmp_path)
    assert result.returncode == 2 and "did you mean 'snapshots'" in error_lines(result.stderr)[0]
    result = run_zoo("train", "callbacks=[snapshots]", "callbacks.snapshots.every=0", f"hydra.run.dir={tmp_path / 'y'}", cwd=tmp_path)
    assert result.returncode == 2 and "every must be at least 1" in error_lines(result.stderr)[0]


@pytest.mark.slow
def test_zoo_info_shows_parameters_and_flops_and_the_trainer_keys():
    import zoo

    result = run_zoo("info", "cnn_classifier", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    cost = json.loads(result.stdout)["cost"]
    model = zoo.create_model("cnn_classifier", zoo.create_dataset("digits"))
    assert cost["parameters"] == model.count_params() and cost["dataset"] == "digits"
    # conv 8x8x64 outputs of 3x3x1 kernels, then dense 1024->128 and 128->10: multiply-adds x2.
    assert cost["flops_per_example"] >= 2 * (8 * 8 * 64 * 9 + 1024 * 128 + 128 * 10)
    shown = run_zoo("info", "cnn_classifier").stdout
    assert "133,130 parameters" in shown and "FLOPs per example" in shown
    keys = run_zoo("info", "trainer").stdout
    for key in ("early_stopping.patience", "lr_schedule", "accumulate_steps", "init_from", "plateau.factor"):
        assert key in keys


@pytest.mark.slow
def test_zoo_info_describes_a_model_whose_cost_cannot_be_counted(tmp_path):
    """Counting builds the model without the weights it would start from: offline, with an
    empty Keras cache, a backbone's parameters are counted (ImageNet's weights had been
    downloaded for it, or not counted without network); the JSON is valid; a model too big
    to build is said in one line, and model.KEY=VALUE counts it another way."""
    env = {"KERAS_HOME": str(tmp_path / "keras"), "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}  # offline
    shown = run_zoo("info", "pretrained_classifier", env=env)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "backbone" in shown.stdout and "cost on dataset 'synthetic_cats'" in shown.stdout, shown.stdout[-2000:]
    assert "Downloading" not in shown.stdout + shown.stderr and not (tmp_path / "keras" / "models").exists()
    described = run_zoo("info", "pretrained_classifier", "--json", env=env)
    assert described.returncode == 0 and json.loads(described.stdout)["name"] == "pretrained_classifier"
    counted = run_zoo("info", "pretrained_classifier", "model.backbone=mobilenet_v2", env=env)
    assert counted.returncode == 0 and "cost on dataset 'synthetic_cats'" in counted.stdout, counted.stderr[-2000:]
    huge = run_zoo("info", "mlp_classifier", "model.hidden_units=[1000000,1000000]")  # 4 TB of weights: not a traceback-like line
    assert huge.returncode == 0 and "cost: not counted: out of memory (a tensor of shape[1000000,1000000])" in huge.stdout, huge.stderr[-2000:]
    wrong = run_zoo("info", "pretrained_classifier", "trainer.epochs=3")
    assert wrong.returncode == 2 and "zoo info takes dataset=NAME and model.KEY=VALUE" in error_lines(wrong.stderr)[0]


def test_compare_shows_the_versions_runs_differ_in(tmp_path):
    from zoo.compare import comparison_table, find_runs

    runs = []
    for name, keras_version in (("a", "3.15.1"), ("b", "3.16.0")):
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text("seed: 0\n")
        (run / "metrics.json").write_text('{"accuracy": 0.9}')
        (run / "env.json").write_text(json.dumps({"python": "3.11.7", "libraries": {"keras": keras_version}, "plugins": {"zoo-x": "1.0"}}))
        runs.append(run)
    header, rows = comparison_table(find_runs(runs))
    assert header == ["run", "env.keras", "accuracy"]
    assert [row[1] for row in rows] == ["3.15.1", "3.16.0"]


def test_zoo_check_skips_a_logger_whose_optional_extra_is_missing():
    import dataclasses

    from zoo.registry import get_registry
    from zoo.testing import SKIP, check_item

    entry = get_registry().get("logger", "mlflow")
    absent = dataclasses.replace(entry, item=dataclasses.replace(entry.item, requires=("no_such_module_for_zoo",)))
    outcomes = {result.check: result.outcome for result in check_item(absent)}
    assert outcomes == {"config": "pass", "build": SKIP, "read_back": SKIP}
